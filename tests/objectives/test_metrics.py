"""`alignkit.objectives.metrics`: the implicit-reward metrics of a policy against its reference
(TRL's beta-scaled ones and REAL's unscaled log-ratios) on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.objectives.metrics import implicit_reward_metrics, pair_eval_metrics


def test_implicit_reward_metrics_by_hand():
    beta = 0.5
    policy_c, policy_r = torch.tensor([-1.0, -4.0, -2.0]), torch.tensor([-3.0, -2.0, -2.0])
    ref_c, ref_r = torch.tensor([-2.0, -2.0, -2.0]), torch.tensor([-2.0, -2.0, -2.0])
    # rewards chosen [0.5, -1, 0], rejected [-0.5, 0, 0]; margins [1, -1, 0]
    out = implicit_reward_metrics(policy_c, policy_r, ref_c, ref_r, beta)
    assert out["margin"] == pytest.approx(0.0)
    assert out["accuracy"] == pytest.approx(1 / 3)  # the tie counts as wrong
    expected = [math.log1p(math.exp(-1)), math.log1p(math.exp(1)), math.log(2)]
    assert out["dpo_loss"] == pytest.approx(sum(expected) / 3)
    assert out["reward_chosen"] == pytest.approx(-0.5 / 3)
    assert out["reward_rejected"] == pytest.approx(-0.5 / 3)
    # REAL's unscaled units (Eq. 10, no beta): u = log pi - log pi_ref
    # u chosen [1, -2, 0], rejected [-1, 0, 0]; u margins [2, -2, 0]
    assert out["reward_chosen_unscaled"] == pytest.approx(-1 / 3)
    assert out["reward_rejected_unscaled"] == pytest.approx(-1 / 3)
    assert out["margin_unscaled"] == pytest.approx(0.0)
    flipped = implicit_reward_metrics(policy_r, policy_c, ref_r, ref_c, beta)
    assert flipped["margin"] == pytest.approx(0.0) and flipped["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        implicit_reward_metrics(*[torch.zeros(0)] * 4, beta)


def test_unscaled_margins_are_log_ratios_without_beta():
    """REAL Eq. 10: the margin in log pi - log pi_ref, whatever beta. Fails when the unscaled
    values carry beta (the TRL convention) or are computed from the wrong side."""
    policy_c, policy_r = torch.tensor([-1.0, -3.0]), torch.tensor([-5.0, -4.0])
    ref_c, ref_r = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    # u chosen [1, -1] (mean 0), u rejected [-3, -2] (mean -2.5); u margins [4, 1] (mean 2.5)
    for beta in (0.1, 0.5):
        out = implicit_reward_metrics(policy_c, policy_r, ref_c, ref_r, beta)
        assert out["margin_unscaled"] == pytest.approx(2.5)
        assert out["reward_chosen_unscaled"] == pytest.approx(0.0)
        assert out["reward_rejected_unscaled"] == pytest.approx(-2.5)
        assert out["margin"] == pytest.approx(beta * 2.5)  # TRL's: beta * the unscaled one
    names = pair_eval_metrics(
        torch.stack([policy_c, policy_r], 1), torch.stack([ref_c, ref_r], 1), 0.1
    )
    assert set(names) == {
        "eval/rewards/chosen",
        "eval/rewards/rejected",
        "eval/rewards/margins",
        "eval/rewards/accuracies",
        "eval/rewards/dpo_loss",
        "eval/rewards/chosen_unscaled",
        "eval/rewards/rejected_unscaled",
        "eval/rewards/margins_unscaled",
    }
    assert names["eval/rewards/margins_unscaled"] == pytest.approx(2.5)
    assert names["eval/rewards/margins"] == pytest.approx(0.25)
