"""The PLE objective (`alignkit.objectives.ple`) on hand-computed numbers, and its ablations."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import seq

from alignkit.objectives.ple import ple_objective


@pytest.mark.parametrize("form", ["paper", "hinge"])
def test_ple_objective_on_hand_numbers(form) -> None:
    # example 0: gap 1 > tau -> rank; example 1: gap 0.1 -> weighted SFT
    policy = seq([[-4.0, -9.0], [-6.0, -2.0]], [[2, 3], [3, 1]])
    scores = torch.tensor([[0.0, 1.0], [0.5, 0.6]])
    loss, metrics = ple_objective(policy, scores, 0.2, form, "sum")
    diff = (-4.0 / 2) - (-9.0 / 3)  # avg logp(y) - avg logp(y_p) = 1.0
    rank = diff if form == "paper" else max(diff, 0.0)
    w = math.tanh((0.5 - 0.6) / 2)
    sft = -(w * -6.0 + (-w) * -2.0)
    assert float(metrics["loss/rank"]) == pytest.approx(rank / 2)
    assert float(metrics["loss/sft"]) == pytest.approx(sft / 2, rel=1e-5)
    assert float(loss.detach()) == pytest.approx((rank + sft) / 2, rel=1e-5)
    mean_loss, _ = ple_objective(policy, scores, 0.2, form, "mean")
    sft_mean = -(w * -6.0 / 3 + (-w) * -2.0 / 1)
    assert float(mean_loss.detach()) == pytest.approx((rank + sft_mean) / 2, rel=1e-5)
    negative = seq([[-9.0, -1.0]], [[3, 1]])  # y_p already far more likely: hinge is 0
    hinge, _ = ple_objective(negative, torch.tensor([[0.0, 1.0]]), 0.2, "hinge", "sum")
    assert float(hinge.detach()) == 0.0


def test_ple_ablations_change_the_loss_as_the_paper_states() -> None:
    """Tables 4/5: 'w/o L_rank' trains every example with the weighted SFT (no rank part);
    'w/o L_weighted-sft' keeps only the rank part. Same numbers as the test above."""
    policy = seq([[-4.0, -9.0], [-6.0, -2.0]], [[2, 3], [3, 1]])
    scores = torch.tensor([[0.0, 1.0], [0.5, 0.6]])  # gaps 1.0 (> tau) and 0.1 (<= tau)
    rank0 = (-4.0 / 2) - (-9.0 / 3)  # example 0's rank loss: avg logp(y) - avg logp(y_p) = 1
    w0, w1 = math.tanh((0.0 - 1.0) / 2), math.tanh((0.5 - 0.6) / 2)  # w = tanh((s - s_p)/2)
    sft0 = -(w0 * -4.0 + (-w0) * -9.0)  # = -5 * w0 = 2.3106: y_p (better) pushed up
    sft1 = -(w1 * -6.0 + (-w1) * -2.0)  # = 4 * w1 = -0.1997

    full, _ = ple_objective(policy, scores, 0.2, "paper", "sum")
    assert float(full.detach()) == pytest.approx((rank0 + sft1) / 2, rel=1e-5)  # 0.4002

    no_rank, m = ple_objective(policy, scores, 0.2, "paper", "sum", rank_loss=False)
    assert float(m["loss/rank"]) == 0.0
    assert float(no_rank.detach()) == pytest.approx((sft0 + sft1) / 2, rel=1e-5)  # 1.0555
    assert float(no_rank.detach()) == pytest.approx(1.05547, abs=1e-4)

    no_sft, m = ple_objective(policy, scores, 0.2, "paper", "sum", weighted_sft=False)
    assert float(m["loss/sft"]) == 0.0
    assert float(no_sft.detach()) == pytest.approx(rank0 / 2)  # 0.5: example 1 adds nothing
    no_sft.backward()
    assert policy.sum.grad[1].abs().sum() == 0  # and gets no gradient
    # d/d logp(y_p) of -(avg y_p)/B with |y_p| = 3, B = 2 -> -1/6; of +(avg y)/B -> +1/4
    assert policy.sum.grad[0].tolist() == pytest.approx([1 / 4, -1 / 6])
