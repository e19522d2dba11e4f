"""Pure functions of RLHF with a reward model: PPO (per-token) and RLOO (per-sequence).

Shapes: S = sequences (responses), T = tokens, P = prompts, K = responses per prompt. Every
per-token tensor is right-padded: `mask` (S, T) is True on a prefix of each row (the response's
tokens) and False after it. Conventions follow TRL's PPOTrainer / RLOOTrainer (Ziegler et al.
2019; "The N+ implementation details of RLHF with PPO", Huang et al. 2024; "Back to Basics",
Ahmadian et al. 2024): the KL penalty is `logp - logp_ref` per token, the sequence reward is
added at the last token, whitening uses the unbiased variance and an epsilon of 1e-8, and the
clipped losses take the larger (pessimistic) of the clipped and unclipped terms.
"""

from __future__ import annotations

import torch
from torch import Tensor

WHITEN_EPS = 1e-8


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over the True positions of `mask` (same shape); 0 when there are none."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of `x` over the True positions of `mask` (Bessel-corrected when `unbiased`
    and there are at least 2 positions)."""
    m = mask.to(x.dtype)
    n = m.sum()
    var = masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """(x - mean) / sqrt(var + 1e-8) over the masked positions (any shape; 0 elsewhere).

    `shift_mean=False` adds the mean back: only the scale changes (TRL whitens rewards so,
    and advantages with the mean removed).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def kl_penalty_rewards(
    scores: Tensor, logps: Tensor, ref_logps: Tensor, mask: Tensor, kl_coef: float
) -> tuple[Tensor, Tensor]:
    """Per-token PPO rewards: `-kl_coef * (logp - logp_ref)` at every token, plus the reward
    model's score at the last token of each response.

    scores (S,), logps / ref_logps / mask (S, T) -> (rewards (S, T), kl (S, T)); both are 0
    outside the mask. A row without tokens gets no score.
    """
    m = mask.to(logps.dtype)
    kl = (logps - ref_logps) * m
    rewards = -kl_coef * kl
    lengths = mask.sum(1)
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards = rewards.index_put(
        (rows, last), rewards[rows, last] + scores.to(rewards.dtype) * (lengths > 0)
    )
    return rewards, kl


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded rows.

    rewards, values, mask: (S, T). delta_t = r_t + gamma * V_{t+1} - V_t (V = 0 after the last
    token), A_t = delta_t + gamma * lam * A_{t+1}. Returns (advantages, returns = A + V), both
    (S, T) and 0 outside the mask.
    """
    m = mask.to(rewards.dtype)
    rewards, values = rewards * m, values * m
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * m


def ppo_policy_loss(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor, cliprange: float
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate objective (Schulman et al. 2017), averaged over the masked tokens.

    ratio = exp(logp - old_logp); loss = mean(max(-A * ratio, -A * clip(ratio, 1 +- eps))).
    All inputs (S, T). Returns (loss, clip fraction: share of tokens where the clipped term
    was the larger one).
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logps.dtype), mask)
    return loss, clipfrac.detach()


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, cliprange_value: float
) -> tuple[Tensor, Tensor]:
    """Clipped value loss: 0.5 * mean(max((V - R)^2, (V_clipped - R)^2)) over the masked
    tokens, V_clipped = V_old + clip(V - V_old, +-cliprange_value). All inputs (S, T).
    Returns (loss, value clip fraction)."""
    clipped_values = old_values + torch.clamp(
        values - old_values, -cliprange_value, cliprange_value
    )
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(values.dtype), mask)
    return loss, clipfrac.detach()


def approx_kl(logps: Tensor, old_logps: Tensor, mask: Tensor) -> Tensor:
    """0.5 * mean((logp - old_logp)^2) over the masked tokens: how far the policy moved from
    the one that sampled (a logged statistic; TRL's `policy/approxkl`)."""
    return 0.5 * masked_mean((logps - old_logps).detach() ** 2, mask)


def policy_kl(logps: Tensor, old_logps: Tensor, mask: Tensor) -> Tensor:
    """mean(old_logp - logp) over the masked tokens: the k1 estimate of KL(pi_old || pi) on
    tokens sampled from pi_old (TRL's `policy/policykl`, the statistic its PPO early stop
    compares with 1.5 * target_kl). logps, old_logps, mask: (S, T) -> scalar (no grad)."""
    return masked_mean((old_logps - logps).detach(), mask)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns) over the masked tokens (1 = the value head
    predicts the returns, 0 = no better than their mean); NaN when the returns are constant."""
    var_returns = masked_var(returns, mask, unbiased=False)
    if var_returns == 0:
        return torch.tensor(float("nan"))
    return 1 - masked_var(returns - values, mask, unbiased=False) / var_returns


def rloo_advantages(rewards: Tensor) -> Tensor:
    """Leave-one-out advantages: (P, K) rewards -> (P, K) `r_i - mean_{j != i} r_j`.

    The baseline of each sample is the mean reward of the other K-1 samples of its prompt
    (Kool et al. 2019; Ahmadian et al. 2024), so it does not depend on the sample itself.
    """
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError(f"RLOO needs K >= 2 samples per prompt, got {k}")
    baseline = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def reinforce_loss(seq_logps: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """REINFORCE with a baseline: -mean(A_i * log pi(y_i|x)) over the present sequences.

    seq_logps (P, K) sums over tokens (with gradient), advantages (P, K) (constants), mask
    (P, K) bool -> scalar.
    """
    m = mask.to(seq_logps.dtype)
    return -(advantages.detach() * seq_logps * m).sum() / m.sum().clamp(min=1)
