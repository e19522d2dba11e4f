"""Pure loss functions over per-sequence (or per-token) log-prob tensors.

Each function takes plain tensors, never a batch object, so it can be checked on hand-made
numbers. Shapes: B = examples, K = responses per prompt, T = tokens, N / P = a selected subset.
All of them stay finite, in value and gradient, for log-probs as low as -1e4: sigmoids go
through `F.logsigmoid`, `log(1 - p)` through `expm1` with a clamp. Notation follows
docs/methods.md: `u = beta * (logp_policy - logp_ref) + logz`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

# Smallest value of 1 - p_t kept by the token-level unlikelihood loss (Welleck et al. clamp
# it too): a token the model is certain of costs -log(1e-6) ~= 13.8, not infinity.
MIN_ONE_MINUS_P = 1e-6


def mean_or_zero(values: Tensor) -> Tensor:
    """Mean of `values` (any shape), or a 0 that still belongs to the graph when empty."""
    return values.sum() / max(values.numel(), 1)


def pointwise_logits(policy: Tensor, ref: Tensor, beta: float, logz: float = 0.0) -> Tensor:
    """u = beta * (policy - ref) + logz, all (N,) -> (N,); the implicit reward plus c."""
    return beta * (policy - ref) + logz


def sft_loss(logps: Tensor) -> Tensor:
    """Negative log-likelihood of demonstrations (supervised fine-tuning).

    logps: (N,) log p(y|x) -> (N,) losses.
    """
    return -logps


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO (Rafailov et al. 2023, eq. 7): -log sigmoid(beta * (r_chosen - r_rejected)).

    All inputs (B,). Returns (losses, chosen_rewards, rejected_rewards), each (B,); the
    rewards `beta * (policy - ref)` are detached.
    """
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return losses, beta * chosen.detach(), beta * rejected.detach()


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Bradley–Terry reward-model loss: (B,) rewards R(x, chosen), R(x, rejected) -> (B,)
    -log sigmoid(R(x, chosen) - R(x, rejected))."""
    return -F.logsigmoid(chosen - rejected)


def pointwise_dpo_loss(
    policy: Tensor, ref: Tensor, labels: Tensor, beta: float, logz: float = 0.0
) -> Tensor:
    """Point-wise DPO, binary labels (ULMA paper): -z logsig(u) - (1-z) logsig(-u).

    policy, ref, labels (N,) with labels z in {0, 1} -> (N,) losses.
    """
    u = pointwise_logits(policy, ref, beta, logz)
    return -labels * F.logsigmoid(u) - (1 - labels) * F.logsigmoid(-u)


def pointwise_mse_loss(
    policy: Tensor, ref: Tensor, labels: Tensor, beta: float, logz: float = 0.0
) -> Tensor:
    """Point-wise DPO for continuous labels (ULMA paper): (z - u)^2.

    policy, ref, labels (N,) with z a real score, higher = better -> (N,) losses.
    """
    return (labels - pointwise_logits(policy, ref, beta, logz)) ** 2


def ulma_loss(
    policy: Tensor, ref: Tensor, positive: Tensor, beta: float, logz: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """ULMA, binary labels (ULMA paper): SFT on positives + -logsig(-u) on negatives.

    policy, ref (N,); positive (N,) bool. Each term is the mean over its own part of the
    batch (an empty part contributes 0). Returns scalars (loss, positive_term, negative_term).
    """
    pos_term = mean_or_zero(sft_loss(policy[positive]))
    neg = ~positive
    u = pointwise_logits(policy[neg], ref[neg], beta, logz)
    neg_term = mean_or_zero(-F.logsigmoid(-u))
    return pos_term + neg_term, pos_term, neg_term


def ulma_continuous_loss(
    policy: Tensor,
    ref: Tensor,
    labels: Tensor,
    high_quality: Tensor,
    beta: float,
    logz: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """ULMA, continuous labels (ULMA paper): (z - u)^2 on all + SFT on high-quality.

    policy, ref, labels (N,); high_quality (N,) bool. Each term is the mean over its own
    part (an empty part contributes 0). Returns scalars (loss, sft_term, mse_term).
    """
    sft_term = mean_or_zero(sft_loss(policy[high_quality]))
    mse_term = mean_or_zero(pointwise_mse_loss(policy, ref, labels, beta, logz))
    return sft_term + mse_term, sft_term, mse_term


def unlearning_loss(neg_logps: Tensor) -> Tensor:
    """Unlearning (Jang et al. 2022, a ULMA baseline): minimise log p(y|x) of negatives.

    neg_logps: (N,) -> (N,) losses = +logp (unbounded below: gradient ascent on the NLL).
    """
    return neg_logps


def unlikelihood_token_loss(
    token_logps: Tensor, token_mask: Tensor, reduction: Literal["sum", "mean"]
) -> Tensor:
    """Token-level unlikelihood (Welleck et al. 2020): -sum_t log(1 - p_t) over a negative.

    token_logps: (N, T) log p_t; token_mask: (N, T) bool, True at real response tokens.
    Returns (N,) losses: the sum over tokens, or the mean when reduction == "mean".
    Bounded: 1 - p_t = -expm1(log p_t) is clamped to >= MIN_ONE_MINUS_P.
    """
    one_minus_p = (-torch.expm1(token_logps)).clamp(min=MIN_ONE_MINUS_P)
    per_token = torch.where(token_mask, -torch.log(one_minus_p), 0.0)
    losses = per_token.sum(-1)
    if reduction == "mean":
        losses = losses / token_mask.sum(-1).clamp(min=1)
    return losses


def unlikelihood_loss(pos_logps: Tensor, neg_losses: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Unlikelihood baseline (as in the ULMA paper's code): SFT on positives + a negative term.

    pos_logps: (P,) log p of positives; neg_losses: (N,) per-negative losses, either
    `unlearning_loss` (the paper's unbounded form) or `unlikelihood_token_loss` (bounded).
    Each term is the mean over its own part (empty -> 0). Returns scalars
    (loss, positive_term, negative_term).
    """
    pos_term = mean_or_zero(sft_loss(pos_logps))
    neg_term = mean_or_zero(neg_losses)
    return pos_term + neg_term, pos_term, neg_term


def rrhf_loss(
    rank_logps: Tensor,
    sft_logps: Tensor,
    scores: Tensor,
    mask: Tensor,
    sft_weight: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """RRHF (Yuan et al. 2023): sum_{r_i < r_j} max(0, p_i - p_j) + SFT on the best.

    rank_logps: (B, K) the p_i of the ranking term (the paper: length-normalised log-probs);
    sft_logps: (B, K) log-probs for the cross-entropy on the best-scored response;
    scores: (B, K) rewards r_i; mask: (B, K) bool, False for missing responses (ignored).
    The rank term sums over pairs within a prompt; both terms are averaged over the prompts
    with at least one response. Returns scalars (rank + sft_weight * sft, rank, sft).
    """
    p = torch.where(mask, rank_logps, 0.0)
    both = mask.unsqueeze(2) & mask.unsqueeze(1)
    worse = both & (scores.unsqueeze(2) < scores.unsqueeze(1))  # [b, i, j]: r_i < r_j
    pair_losses = F.relu(p.unsqueeze(2) - p.unsqueeze(1))  # [b, i, j]: max(0, p_i - p_j)
    rank = torch.where(worse, pair_losses, 0.0).sum((1, 2))
    best = torch.where(mask, scores, float("-inf")).argmax(1, keepdim=True)
    sft = sft_loss(sft_logps.gather(1, best).squeeze(1))
    present = mask.any(1)
    rank_term = mean_or_zero(rank[present])
    sft_term = mean_or_zero(sft[present])
    return rank_term + sft_weight * sft_term, rank_term, sft_term


def ple_rank_loss(
    avg_logp_y: Tensor, avg_logp_yp: Tensor, form: Literal["paper", "hinge"]
) -> Tensor:
    """PLE ranking loss (PLE paper): raise avg log p(y_p|x) over avg log p(y|x).

    avg_logp_y, avg_logp_yp: (B,) length-normalised log-probs of y and of the principle-guided
    y_p. form "paper": the plain difference avg_logp_y - avg_logp_yp; "hinge": RRHF's
    zero-margin max(0, avg_logp_y - avg_logp_yp). Returns (B,) losses.
    """
    diff = avg_logp_y - avg_logp_yp
    if form == "paper":
        return diff
    if form == "hinge":
        return F.relu(diff)
    raise ValueError(f"form must be 'paper' or 'hinge', got {form!r}")


def ple_weights(s: Tensor, s_p: Tensor) -> tuple[Tensor, Tensor]:
    """PLE weighted-SFT weights: w = 2e^s / (e^s + e^{s_p}) - 1, w_p = -w.

    s, s_p: (B,) reward scores of y and y_p. Computed as w = tanh((s - s_p) / 2), the same
    value without overflowing exp. Returns (w, w_p), each (B,) in (-1, 1).
    """
    w = torch.tanh((s - s_p) / 2)
    return w, -w


def ple_weighted_sft_loss(logp_y: Tensor, logp_yp: Tensor, w: Tensor, w_p: Tensor) -> Tensor:
    """PLE weighted SFT (PLE paper): -(w * logp(y|x) + w_p * logp(y_p|x)).

    All inputs (B,) -> (B,) losses; the lower-scored response gets a negative weight.
    """
    return -(w * logp_y + w_p * logp_yp)


def deft_guidance(r_q: Tensor, lam: float) -> Tensor:
    """DEFT guidance term (DEFT paper): -lambda * mean(R_Q(x, chosen)).

    r_q: (N,) distribution rewards of the preferred responses -> scalar (0 when N = 0).
    """
    return -lam * mean_or_zero(r_q)
