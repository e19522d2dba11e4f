"""Objectives: pure losses on hand-computed numbers (Bradley-Terry included), the registry,
masking and stability."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from alignkit.errors import AlignkitError
from alignkit.objectives import (
    METHODS,
    ObjectiveBatch,
    ObjectiveConfig,
    SeqLogps,
    compute_loss,
    get_method,
)
from alignkit.objectives import losses as L
from alignkit.objectives.losses import bradley_terry_loss
from alignkit.objectives.registry import BRADLEY_TERRY


def t(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float32)


def approx(x: Tensor | float, expected: float) -> None:
    value = float(x.detach()) if isinstance(x, Tensor) else x
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------- batch builders


def seqs(sums: list, counts: list | None = None, **kw) -> SeqLogps:
    s = torch.tensor(sums, dtype=torch.float32, requires_grad=True)
    c = torch.ones_like(s) if counts is None else torch.tensor(counts, dtype=torch.float32)
    return SeqLogps(s, c, **kw)


def point_batch(
    logps: list[float],
    labels: list[float],
    ref: list[float] | None = None,
    hq: list[bool] | None = None,
    binary: list[bool] | None = None,
    mask: list[bool] | None = None,
    counts: list[float] | None = None,
    tokens: Tensor | None = None,
    r_q: list[float] | None = None,
) -> ObjectiveBatch:
    """B points (K=1); high_quality defaults to label == 1, binary and mask to all True."""
    col = [[v] for v in logps]
    lab = torch.tensor([[v] for v in labels])
    policy = seqs(col, None if counts is None else [[c] for c in counts], tokens=tokens)
    if r_q is not None:
        policy.r_q = torch.tensor([[v] for v in r_q])
    n = len(logps)
    return ObjectiveBatch(
        kind="point",
        policy=policy,
        labels=lab,
        binary=torch.tensor(binary if binary is not None else [True] * n),
        high_quality=lab == 1 if hq is None else torch.tensor([[h] for h in hq]),
        mask=torch.tensor([[m] for m in (mask if mask is not None else [True] * n)]),
        ref=None if ref is None else seqs([[v] for v in ref]),
    )


def pair_batch(policy: list, ref: list | None, mask: list | None = None, **kw) -> ObjectiveBatch:
    b = len(policy)
    return ObjectiveBatch(
        kind="pair",
        policy=seqs(policy, **kw),
        labels=torch.tensor([[1.0, 0.0]] * b),
        binary=torch.ones(b, dtype=torch.bool),
        high_quality=torch.tensor([[True, False]] * b),
        mask=torch.ones(b, 2, dtype=torch.bool) if mask is None else torch.tensor(mask),
        ref=None if ref is None else seqs(ref),
    )


def multi_batch(sums: list, counts: list, scores: list, mask: list) -> ObjectiveBatch:
    sc = torch.tensor(scores)
    m = torch.tensor(mask)
    best = torch.where(m, sc, float("-inf")).argmax(1, keepdim=True)
    return ObjectiveBatch(
        kind="multi",
        policy=seqs(sums, counts),
        labels=sc,
        binary=torch.ones(len(sums), dtype=torch.bool),
        high_quality=torch.zeros_like(m).scatter(1, best, True),
        mask=m,
    )


# ---------------------------------------------------------------- pure losses


def test_sft_loss_is_negative_logp() -> None:
    assert torch.equal(L.sft_loss(t(-2.0, -0.5)), t(2.0, 0.5))


def test_dpo_loss_hand_computed() -> None:
    # log-ratios: chosen -1 - -2 = 1, rejected -3 - -2 = -1; beta * (1 - -1) = 0.2
    # loss = -logsigmoid(0.2) = log(1 + e^-0.2) = 0.5981388694
    losses, chosen, rejected = L.dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.1)
    approx(losses[0], 0.5981388694)
    approx(chosen[0], 0.1)  # 0.1 * 1
    approx(rejected[0], -0.1)  # 0.1 * -1


def test_dpo_rewards_are_detached() -> None:
    pc = t(-1.0).requires_grad_()
    _, chosen, rejected = L.dpo_loss(pc, t(-3.0), t(-2.0), t(-2.0), beta=0.1)
    assert not chosen.requires_grad and not rejected.requires_grad


def test_pointwise_dpo_both_labels() -> None:
    # u = 0.1 * (-1 - -2) = 0.1
    # z=1: -logsigmoid(0.1) = log(1 + e^-0.1) = 0.6443966601
    # z=0: -logsigmoid(-0.1) = log(1 + e^0.1) = 0.7443966601 (= z=1 value + u)
    losses = L.pointwise_dpo_loss(t(-1.0, -1.0), t(-2.0, -2.0), t(1.0, 0.0), beta=0.1)
    approx(losses[0], 0.6443966601)
    approx(losses[1], 0.7443966601)


def test_pointwise_dpo_logz_shifts_u() -> None:
    # u = 0.1 * 1 + 0.5 = 0.6; -logsigmoid(0.6) = log(1 + e^-0.6) = 0.4374879505
    loss = L.pointwise_dpo_loss(t(-1.0), t(-2.0), t(1.0), beta=0.1, logz=0.5)
    approx(loss[0], 0.4374879505)


def test_pointwise_mse() -> None:
    # u = 0.5 * (-1 - -3) = 1; (2 - 1)^2 = 1; with logz 0.5: u = 1.5, (2 - 1.5)^2 = 0.25
    approx(L.pointwise_mse_loss(t(-1.0), t(-3.0), t(2.0), beta=0.5)[0], 1.0)
    approx(L.pointwise_mse_loss(t(-1.0), t(-3.0), t(2.0), beta=0.5, logz=0.5)[0], 0.25)


def test_ulma_all_positive_batch_has_zero_negative_term() -> None:
    # positives get SFT: mean(2, 4) = 3; no negatives -> negative term 0
    policy = t(-2.0, -4.0).requires_grad_()
    loss, pos, neg = L.ulma_loss(policy, t(0.0, 0.0), torch.tensor([True, True]), 0.1)
    approx(loss, 3.0)
    approx(pos, 3.0)
    approx(neg, 0.0)
    loss.backward()  # the empty negative part does not break the graph
    assert torch.equal(policy.grad, t(-0.5, -0.5))  # d mean(-logp_i) / d logp_i = -1/2


def test_ulma_mixed_batch() -> None:
    # positive: SFT 2 (no ref, no beta); negative: u = 0.1*(-1 - -2) = 0.1,
    # -logsigmoid(-0.1) = 0.7443966601; total 2.7443966601
    positive = torch.tensor([True, False])
    loss, pos, neg = L.ulma_loss(t(-2.0, -1.0), t(-9.0, -2.0), positive, 0.1)
    approx(pos, 2.0)
    approx(neg, 0.7443966601)
    approx(loss, 2.7443966601)


def test_ulma_each_term_is_averaged_over_its_own_part() -> None:
    # SFT over 1 positive = 2 (not 2/3); negatives u = 0 -> log 2 each, mean log 2
    positive = torch.tensor([True, False, False])
    loss, _, _ = L.ulma_loss(t(-2.0, -1.0, -1.0), t(0.0, -1.0, -1.0), positive, 0.1)
    approx(loss, 2.0 + math.log(2.0))


def test_ulma_continuous() -> None:
    # u = 0.1*(-2 - -2) = 0 and 0.1*(-1 - -2) = 0.1
    # mse = ((1 - 0)^2 + (0.5 - 0.1)^2) / 2 = (1 + 0.16) / 2 = 0.58; SFT on hq = 2
    hq = torch.tensor([True, False])
    loss, sft, mse = L.ulma_continuous_loss(t(-2.0, -1.0), t(-2.0, -2.0), t(1.0, 0.5), hq, 0.1)
    approx(sft, 2.0)
    approx(mse, 0.58)
    approx(loss, 2.58)


def test_unlearning_is_plus_logp() -> None:
    assert torch.equal(L.unlearning_loss(t(-3.0, -5.0)), t(-3.0, -5.0))


def test_unlikelihood_token_known_p() -> None:
    # p = 0.5, 0.9: -log(0.5) - log(0.1) = 0.6931471806 + 2.3025850930 = 2.9957322736
    # third position is padding (masked out)
    logp = torch.log(t(0.5, 0.9, 0.7)).unsqueeze(0)
    mask = torch.tensor([[True, True, False]])
    approx(L.unlikelihood_token_loss(logp, mask, "sum")[0], 2.9957322736)
    approx(L.unlikelihood_token_loss(logp, mask, "mean")[0], 2.9957322736 / 2)


def test_unlikelihood_token_extremes_are_bounded() -> None:
    # p = 1 (logp 0): 1 - p clamped to 1e-6 -> -log(1e-6) = 13.8155105580
    # p = e^-1e4: -log(1 - 0) = 0
    logp = t(0.0, -1e4).unsqueeze(1).requires_grad_()
    mask = torch.ones(2, 1, dtype=torch.bool)
    losses = L.unlikelihood_token_loss(logp, mask, "sum")
    approx(losses[0], 13.8155105580)
    approx(losses[1], 0.0)
    losses.sum().backward()
    assert torch.isfinite(logp.grad).all()


def test_unlikelihood_paper_form() -> None:
    # SFT on the positive: 2; unlearning on the negatives: mean(-3, -5) = -4; total -2
    loss, pos, neg = L.unlikelihood_loss(t(-2.0), L.unlearning_loss(t(-3.0, -5.0)))
    approx(pos, 2.0)
    approx(neg, -4.0)
    approx(loss, -2.0)


def test_rrhf_three_responses() -> None:
    # p = (-1, -2, -0.5), r = (1, 2, 3). Pairs with r_i < r_j:
    # (0,1): max(0, -1 - -2) = 1; (0,2): max(0, -1 - -0.5) = 0; (1,2): max(0, -2 - -0.5) = 0
    # rank = 1; best = response 2, SFT = -(-3) = 3; total = 1 + 0.5 * 3 = 2.5
    p = t(-1.0, -2.0, -0.5).unsqueeze(0)
    sft = t(-4.0, -6.0, -3.0).unsqueeze(0)
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss, rank, sft_term = L.rrhf_loss(p, sft, t(1.0, 2.0, 3.0).unsqueeze(0), mask, 0.5)
    approx(rank, 1.0)
    approx(sft_term, 3.0)
    approx(loss, 2.5)


def test_rrhf_ignores_masked_responses() -> None:
    # a masked 4th response with the lowest score and a high log-prob would add
    # max(0, 5 - p_j) to three pairs if it counted; NaNs there must not leak either
    p = torch.tensor([[-1.0, -2.0, -0.5, 5.0]])
    sft = torch.tensor([[-4.0, -6.0, -3.0, float("nan")]], requires_grad=True)
    scores = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, rank, _ = L.rrhf_loss(p, sft, scores, mask, 1.0)
    approx(rank, 1.0)
    approx(loss, 4.0)  # 1 + 3
    loss.backward()
    assert torch.isfinite(sft.grad).all()


def test_ple_rank_loss_forms() -> None:
    # y scores -1, y_p -2 per token: paper = -1 - -2 = 1, hinge = max(0, 1) = 1
    # y_p already better (-2 vs -1): paper = -1 (keeps pushing), hinge = 0
    paper = L.ple_rank_loss(t(-1.0, -2.0), t(-2.0, -1.0), "paper")
    hinge = L.ple_rank_loss(t(-1.0, -2.0), t(-2.0, -1.0), "hinge")
    assert torch.equal(paper, t(1.0, -1.0))
    assert torch.equal(hinge, t(1.0, 0.0))
    with pytest.raises(ValueError):
        L.ple_rank_loss(t(0.0), t(0.0), "margin")  # type: ignore[arg-type]


def test_ple_weights() -> None:
    # s=1, s_p=0: w = 2e/(e+1) - 1 = (e-1)/(e+1) = 0.4621171573; w_p = -w
    w, w_p = L.ple_weights(t(1.0), t(0.0))
    approx(w[0], 0.4621171573)
    approx(w_p[0], -0.4621171573)
    # exp(1000) overflows; the tanh form gives the limit 1
    w, w_p = L.ple_weights(t(1000.0), t(-1000.0))
    approx(w[0], 1.0)
    approx(w_p[0], -1.0)


def test_ple_weighted_sft() -> None:
    # -(0.5 * -2 + -0.5 * -4) = -(-1 + 2) = -1
    approx(L.ple_weighted_sft_loss(t(-2.0), t(-4.0), t(0.5), t(-0.5))[0], -1.0)


def test_deft_guidance() -> None:
    approx(L.deft_guidance(t(1.0, 3.0), 0.1), -0.2)  # -0.1 * mean(1, 3)
    approx(L.deft_guidance(torch.empty(0), 0.1), 0.0)


# ---------------------------------------------------------------- registry


def test_method_names() -> None:
    assert set(METHODS) == {
        "sft",
        "dpo",
        "pointwise-dpo",
        "pointwise-mse",
        "ulma",
        "unlearning",
        "unlikelihood",
        "positive-dpo",
        "negative-dpo",
        "rrhf",
    }
    assert all(m.description and "\n" not in m.description for m in METHODS.values())


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(AlignkitError, match="unknown method 'ppo'.*pointwise-dpo"):
        get_method("ppo")


def test_needs_tokens_only_for_token_unlikelihood() -> None:
    token_cfg = ObjectiveConfig(unlikelihood_form="token")
    assert get_method("unlikelihood").needs_tokens(token_cfg)
    assert not get_method("unlikelihood").needs_tokens(ObjectiveConfig())
    assert not any(m.needs_tokens(token_cfg) for m in METHODS.values() if m.name != "unlikelihood")


def test_registry_dpo_and_trl_metrics() -> None:
    # row 1 as in test_dpo_loss_hand_computed (0.5981388694, margin 0.2, correct);
    # row 2 swapped: beta * (-1 - 1) = -0.2 -> log(1 + e^0.2) = 0.7981388694, wrong order
    batch = pair_batch([[-1.0, -3.0], [-3.0, -1.0]], [[-2.0, -2.0], [-2.0, -2.0]])
    loss, m = compute_loss("dpo", batch, ObjectiveConfig(beta=0.1))
    approx(loss, (0.5981388694 + 0.7981388694) / 2)
    approx(m["logps/chosen"], -2.0)
    approx(m["logps/rejected"], -2.0)
    approx(m["rewards/chosen"], 0.0)  # mean(0.1, -0.1)
    approx(m["rewards/margins"], 0.0)  # mean(0.2, -0.2)
    approx(m["rewards/accuracies"], 0.5)
    approx(m["loss"], loss.item())
    assert all(not v.requires_grad and v.dim() == 0 for v in m.values())


def test_sum_vs_mean_reduction() -> None:
    # one demonstration with log p = -6 over 3 tokens: sum -> 6, mean -> 2
    batch = point_batch([-6.0], [1.0], counts=[3.0])
    approx(compute_loss("sft", batch, ObjectiveConfig(reduction="sum"))[0], 6.0)
    approx(compute_loss("sft", batch, ObjectiveConfig(reduction="mean"))[0], 2.0)


def test_reduction_also_applies_to_the_reference() -> None:
    # mean: policy -6/3 = -2, ref -3/3 = -1; u = 0.1*(-2 - -1) = -0.1 -> -logsigmoid(-0.1)
    batch = point_batch([-6.0], [1.0], ref=[-3.0], counts=[3.0])
    batch.ref.count = torch.tensor([[3.0]])
    loss, _ = compute_loss("pointwise-dpo", batch, ObjectiveConfig(reduction="mean"))
    approx(loss, 0.7443966601)


def test_registry_ulma_binary_and_metrics() -> None:
    # as test_ulma_mixed_batch: 2 + 0.7443966601
    batch = point_batch([-2.0, -1.0], [1.0, 0.0], ref=[-9.0, -2.0])
    loss, m = compute_loss("ulma", batch, ObjectiveConfig(beta=0.1))
    approx(loss, 2.7443966601)
    approx(m["loss/positive"], 2.0)
    approx(m["loss/negative"], 0.7443966601)
    approx(m["logps/positive"], -2.0)
    approx(m["rewards/negative"], 0.1)  # 0.1 * (-1 - -2)


def test_registry_ulma_all_positive_omits_negative_metrics() -> None:
    batch = point_batch([-2.0, -4.0], [1.0, 1.0], ref=[0.0, 0.0])
    loss, m = compute_loss("ulma", batch, ObjectiveConfig())
    approx(loss, 3.0)
    assert "loss/negative" not in m and "logps/negative" not in m and "rewards/negative" not in m


def test_registry_ulma_continuous_on_score_labels() -> None:
    # as test_ulma_continuous: 2 + 0.58 (the 0/1 label of a demonstration is a score 1 here,
    # turned into one for the whole run by alignkit.data.labels.as_scores)
    batch = point_batch(
        [-2.0, -1.0], [1.0, 0.5], ref=[-2.0, -2.0], hq=[True, False], binary=[False, False]
    )
    loss, m = compute_loss("ulma", batch, ObjectiveConfig(beta=0.1))
    approx(loss, 2.58)
    approx(m["loss/mse"], 0.58)
    approx(m["loss/positive"], 2.0)


def test_registry_ulma_refuses_a_batch_mixing_binary_and_score_labels() -> None:
    # the old registry picked the variant per batch: this batch silently trained the
    # continuous variant while an all-binary batch of the same run trained the binary one
    batch = point_batch(
        [-2.0, -1.0], [1.0, 0.5], ref=[-2.0, -2.0], hq=[True, False], binary=[True, False]
    )
    with pytest.raises(AlignkitError, match="mixes binary and real-valued labels"):
        compute_loss("ulma", batch, ObjectiveConfig(beta=0.1))


@pytest.mark.parametrize(
    ("method", "grad"),
    [
        # one binary point, label 1, whose high_quality flag says False; logp = ref = -2,
        # beta 0.1, so u = 0. The label decides: it is a positive.
        ("ulma", -1.0),  # SFT term -logp: d/dlogp = -1 (old: negative, +beta*sigma(0) = +0.05)
        ("unlikelihood", -1.0),  # SFT term (old: unlearning term +logp, +1)
        ("sft", -1.0),  # (old: no positive, 0)
        ("unlearning", 0.0),  # no negative (old: +1)
        ("positive-dpo", -0.05),  # -logsig(u): -beta*sigma(-u) = -0.05 (old: 0)
        ("negative-dpo", 0.0),  # no negative (old: +0.05)
    ],
)
def test_binary_label_decides_positive_not_high_quality(method: str, grad: float) -> None:
    batch = point_batch([-2.0], [1.0], ref=[-2.0], hq=[False])
    loss, _ = compute_loss(method, batch, ObjectiveConfig(beta=0.1))
    loss.backward()
    approx(batch.policy.sum.grad[0, 0], grad)
    # and label 0 with high_quality True is a negative: ulma pushes it down (+beta*sigma(0))
    negative = point_batch([-2.0], [0.0], ref=[-2.0], hq=[True])
    compute_loss("ulma", negative, ObjectiveConfig(beta=0.1))[0].backward()
    approx(negative.policy.sum.grad[0, 0], 0.05)


def red_team_batch(ratings: list[float], transform: str, rule: str, drift: float):
    """Points rated 0 (failed attack, best) .. 4 through the data layer's label options;
    every policy log-prob is `drift` above the reference (-10)."""
    from alignkit.data import Point
    from alignkit.data.labels import (
        apply_label_options,
        parse_high_quality_rule,
        parse_label_transform,
    )

    points = [
        Point(f"attack {i}", "reply", r, False, False, f"r:{i}") for i, r in enumerate(ratings)
    ]
    records, _ = apply_label_options(
        points,
        parse_label_transform(transform) if transform else None,
        parse_high_quality_rule(rule) if rule else None,
    )
    n = len(records)
    return point_batch(
        [-10.0 + drift] * n,
        [r.label for r in records],
        ref=[-10.0] * n,
        hq=[r.high_quality for r in records],
        binary=[False] * n,
    )


def test_red_team_direction_of_the_ulma_gradient() -> None:
    # ratings 0 (best) and 4 (worst), --label-transform "4 - z", --high-quality-if "z == 0":
    # labels z' = 4 and 0, the rating-0 point is high quality. With the policy 2 nats above
    # the reference, u = 0.1 * 2 = 0.2 for both; N = 2, one high-quality point:
    #   loss = -logp_0 + mean_i (z'_i - u_i)^2
    #   d/dlogp_0 = -1 + (2/2) * (u - 4) * 0.1 = -1 - 0.38 = -1.38 (descent: pushed up)
    #   d/dlogp_4 =      (2/2) * (u - 0) * 0.1 = +0.02           (descent: pushed down)
    cfg = ObjectiveConfig(beta=0.1)
    batch = red_team_batch([0.0, 4.0], "4 - z", "z == 0", drift=2.0)
    loss, m = compute_loss("ulma", batch, cfg)
    # mse: ((4 - 0.2)^2 + 0.2^2) / 2 = (14.44 + 0.04) / 2 = 7.24; sft: 8
    approx(m["loss/mse"], 7.24)
    approx(m["loss/positive"], 8.0)
    loss.backward()
    grad = batch.policy.sum.grad[:, 0]
    approx(grad[0], -1.38)
    approx(grad[1], 0.02)
    # one SGD step (lr 1) moves the best answer's log-prob up and the worst one's down
    stepped = batch.policy.sum.detach()[:, 0] - grad
    assert stepped[0] > -8.0 > stepped[1]
    # the ratings as they are (no transform, no rule) train the opposite way
    raw = red_team_batch([0.0, 4.0], "", "", drift=2.0)
    compute_loss("ulma", raw, cfg)[0].backward()
    approx(raw.policy.sum.grad[0, 0], 0.02)  # (0.2 - 0) * 0.1: the best answer pushed down
    approx(raw.policy.sum.grad[1, 0], -0.38)  # (0.2 - 4) * 0.1: the worst pushed up


def test_registry_pointwise_methods() -> None:
    # both points: u = 0.1 * (-1 - -2) = 0.1; z=1 -> 0.6443966601, z=0 -> 0.7443966601
    batch = point_batch([-1.0, -1.0], [1.0, 0.0], ref=[-2.0, -2.0])
    cfg = ObjectiveConfig(beta=0.1)
    approx(compute_loss("pointwise-dpo", batch, cfg)[0], (0.6443966601 + 0.7443966601) / 2)
    approx(compute_loss("positive-dpo", batch, cfg)[0], 0.6443966601)
    approx(compute_loss("negative-dpo", batch, cfg)[0], 0.7443966601)
    # mse: (1 - 0.1)^2 = 0.81, (0 - 0.1)^2 = 0.01 -> mean 0.41
    approx(compute_loss("pointwise-mse", batch, cfg)[0], 0.41)


def test_pointwise_dpo_rejects_real_scores() -> None:
    batch = point_batch([-1.0], [3.0], ref=[-2.0], binary=[False])
    with pytest.raises(AlignkitError, match="binary"):
        compute_loss("pointwise-dpo", batch, ObjectiveConfig())


def test_registry_unlearning_and_unlikelihood() -> None:
    batch = point_batch([-2.0, -3.0, -5.0], [1.0, 0.0, 0.0])
    # unlearning: mean(-3, -5) = -4 (the positive is ignored)
    approx(compute_loss("unlearning", batch, ObjectiveConfig())[0], -4.0)
    # unlikelihood (paper): SFT 2 + unlearning -4 = -2
    loss, m = compute_loss("unlikelihood", batch, ObjectiveConfig())
    approx(loss, -2.0)
    approx(m["loss/negative"], -4.0)


def test_registry_unlikelihood_token_form() -> None:
    # positive: SFT 2 (sum reduction); negative: tokens p = 0.5, 0.9 -> 2.9957322736
    tokens = torch.log(torch.tensor([[[0.1, 0.1]], [[0.5, 0.9]]]))
    batch = point_batch([-2.0, -0.79], [1.0, 0.0], counts=[2.0, 2.0], tokens=tokens)
    loss, _ = compute_loss("unlikelihood", batch, ObjectiveConfig(unlikelihood_form="token"))
    approx(loss, 2.0 + 2.9957322736)


def test_registry_rrhf() -> None:
    # as test_rrhf_three_responses, sums/counts give p = (-2/2, -6/3, -1/2) = (-1, -2, -0.5)
    # sum reduction: SFT = 1 -> 1 + 1; mean reduction: SFT = 0.5 -> 1 + 0.5
    batch = multi_batch([[-2.0, -6.0, -1.0]], [[2.0, 3.0, 2.0]], [[1.0, 2.0, 3.0]], [[True] * 3])
    loss, m = compute_loss("rrhf", batch, ObjectiveConfig(reduction="sum"))
    approx(loss, 2.0)
    approx(m["loss/rank"], 1.0)
    approx(compute_loss("rrhf", batch, ObjectiveConfig(reduction="mean"))[0], 1.5)
    approx(compute_loss("rrhf", batch, ObjectiveConfig(rrhf_sft_weight=0.0))[0], 1.0)


def test_deft_guidance_changes_loss_by_minus_lambda_mean_rq() -> None:
    # r_q of the positives: 1 and 3 -> mean 2; the negative's r_q (100) is not used
    batch = point_batch([-2.0, -4.0, -1.0], [1.0, 1.0, 0.0], r_q=[1.0, 3.0, 100.0])
    base, m0 = compute_loss("sft", batch, ObjectiveConfig())
    guided, m1 = compute_loss("sft", batch, ObjectiveConfig(deft_lambda=0.25))
    approx(guided - base, -0.25 * 2.0)
    approx(m0["deft/r_q"], 2.0)
    approx(m1["loss"], guided.item())


def test_deft_uses_chosen_of_pairs() -> None:
    batch = pair_batch([[-1.0, -3.0]], [[-2.0, -2.0]])
    batch.policy.r_q = torch.tensor([[0.4, -7.0]])
    base, _ = compute_loss("dpo", batch, ObjectiveConfig())
    guided, _ = compute_loss("dpo", batch, ObjectiveConfig(deft_lambda=0.5))
    approx(guided - base, -0.5 * 0.4)


def test_deft_without_rq_is_an_error() -> None:
    batch = point_batch([-1.0], [1.0])
    with pytest.raises(AlignkitError, match="r_q"):
        compute_loss("sft", batch, ObjectiveConfig(deft_lambda=0.1))
    _, metrics = compute_loss("sft", batch, ObjectiveConfig())
    assert "deft/r_q" not in metrics


def test_missing_inputs_are_errors() -> None:
    with pytest.raises(AlignkitError, match="reference"):
        compute_loss("ulma", point_batch([-1.0], [1.0]), ObjectiveConfig())
    with pytest.raises(AlignkitError, match="per-token"):
        cfg = ObjectiveConfig(unlikelihood_form="token")
        compute_loss("unlikelihood", point_batch([-1.0], [0.0]), cfg)
    with pytest.raises(AlignkitError, match="pair data"):
        compute_loss("dpo", point_batch([-1.0], [1.0], ref=[-1.0]), ObjectiveConfig())


# ---------------------------------------------------------------- masking


NAN = float("nan")


def test_masked_points_contribute_nothing() -> None:
    # the masked 3rd point is NaN everywhere: loss, metrics and gradients ignore it
    cfg = ObjectiveConfig(beta=0.1)
    tokens = torch.log(torch.tensor([[[0.5]], [[0.5]], [[NAN]]]))
    full = point_batch(
        [-2.0, -1.0, NAN],
        [1.0, 0.0, 0.0],
        ref=[-9.0, -2.0, NAN],
        mask=[True, True, False],
        tokens=tokens,
        r_q=[1.0, 2.0, NAN],
    )
    small = point_batch([-2.0, -1.0], [1.0, 0.0], ref=[-9.0, -2.0], tokens=tokens[:2])
    for name in ["sft", "pointwise-dpo", "ulma", "unlearning", "negative-dpo", "pointwise-mse"]:
        loss, m = compute_loss(name, full, cfg)
        approx(loss, compute_loss(name, small, cfg)[0].item())
        assert all(torch.isfinite(v) for v in m.values())
        loss.backward()
        assert torch.isfinite(full.policy.sum.grad).all()
    token_cfg = ObjectiveConfig(unlikelihood_form="token", deft_lambda=0.1)
    loss, _ = compute_loss("unlikelihood", full, token_cfg)
    approx(loss, 2.0 + math.log(2.0) - 0.1 * 1.0)


def test_dpo_ignores_incomplete_pairs() -> None:
    batch = pair_batch(
        [[-1.0, -3.0], [NAN, NAN]],
        [[-2.0, -2.0], [NAN, NAN]],
        mask=[[True, True], [True, False]],
    )
    loss, _ = compute_loss("dpo", batch, ObjectiveConfig(beta=0.1))
    approx(loss, 0.5981388694)


def test_fully_masked_batch_gives_zero_loss_with_a_graph() -> None:
    batch = point_batch([NAN], [1.0], ref=[NAN], mask=[False])
    for name in ["sft", "ulma", "pointwise-dpo"]:
        loss, m = compute_loss(name, batch, ObjectiveConfig())
        approx(loss, 0.0)
        assert set(m) == {"loss"}
        loss.backward()


# ---------------------------------------------------------------- numerical stability


def _extreme_batch(kind: str, policy_value: float, ref_value: float) -> ObjectiveBatch:
    """A batch of `kind` with log-probs at an extreme, token log-probs p ~ 0 and p = 1."""
    tokens = torch.tensor([[[policy_value, 0.0]], [[policy_value, 0.0]]])
    if kind == "pair":
        return pair_batch([[policy_value] * 2], [[ref_value] * 2], r_q=torch.zeros(1, 2))
    if kind == "multi":
        batch = multi_batch([[policy_value] * 3], [[2.0] * 3], [[1.0, 2.0, 3.0]], [[True] * 3])
        batch.policy.r_q = torch.zeros(1, 3)
        return batch
    return point_batch(
        [policy_value, policy_value],
        [1.0, 0.0],
        ref=[ref_value, ref_value],
        counts=[2.0, 2.0],
        tokens=tokens,
        r_q=[0.0, 0.0],
    )


CASES = [(name, "paper") for name in sorted(METHODS)] + [("unlikelihood", "token")]


@pytest.mark.parametrize(("name", "form"), CASES)
@pytest.mark.parametrize("values", [(-1e4, 0.0), (0.0, -1e4), (-1e4, -1e4)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_extreme_logps_give_finite_loss_and_gradient(
    name: str, values: tuple[float, float], reduction: str, form: str
) -> None:
    method = get_method(name)
    batch = _extreme_batch(method.kind, *values)
    if batch.policy.tokens is not None:
        batch.policy.tokens.requires_grad_()
    cfg = ObjectiveConfig(reduction=reduction, unlikelihood_form=form, deft_lambda=0.1)
    loss, metrics = compute_loss(method, batch, cfg)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(batch.policy.sum.grad).all()
    if batch.policy.tokens is not None and batch.policy.tokens.grad is not None:
        assert torch.isfinite(batch.policy.tokens.grad).all()
    assert all(torch.isfinite(v) for v in metrics.values())


def test_rrhf_ragged_batch_ignores_missing_responses() -> None:
    # prompt 1 as in test_registry_rrhf: rank 1, SFT 1; prompt 2 has two responses
    # p = (-1, -1), r = (0, 1): max(0, -1 - -1) = 0, SFT on the best = 1; its 3rd is missing
    # mean over prompts: rank 0.5 + SFT 1 = 1.5
    batch = multi_batch(
        [[-2.0, -6.0, -1.0], [-1.0, -1.0, NAN]],
        [[2.0, 3.0, 2.0], [1.0, 1.0, 0.0]],
        [[1.0, 2.0, 3.0], [0.0, 1.0, NAN]],
        [[True, True, True], [True, True, False]],
    )
    loss, m = compute_loss("rrhf", batch, ObjectiveConfig())
    approx(loss, 1.5)
    approx(m["loss/rank"], 0.5)
    loss.backward()
    assert torch.isfinite(batch.policy.sum.grad).all()


# ---------------------------------------------------------------- Bradley-Terry


def test_bradley_terry_loss_by_hand():
    chosen = torch.tensor([2.0, 0.0, -1.0])
    rejected = torch.tensor([0.0, 0.0, 1.0])
    losses = bradley_terry_loss(chosen, rejected)
    for value, expected in zip(
        losses, [math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(2))], strict=True
    ):
        approx(value, expected)


def test_bradley_terry_method_metrics_and_mask():
    rewards = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, True], [True, False]])  # row 3 is no pair
    batch = ObjectiveBatch(
        kind="pair",
        policy=SeqLogps(rewards, torch.ones(3, 2)),
        labels=torch.tensor([[1.0, 0.0]] * 3),
        binary=torch.ones(3, dtype=torch.bool),
        high_quality=torch.tensor([[True, False]] * 3),
        mask=mask,
    )
    loss, metrics = compute_loss(BRADLEY_TERRY, batch, ObjectiveConfig())
    approx(loss, (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2)
    approx(metrics["rewards/chosen"], 1.0)
    approx(metrics["rewards/rejected"], 0.5)
    approx(metrics["rewards/margins"], 0.5)
    approx(metrics["rewards/accuracies"], 0.5)
    approx(metrics["loss"], float(loss))
    loss.backward()
    assert rewards.grad[2].abs().sum() == 0  # the masked row gets no gradient
