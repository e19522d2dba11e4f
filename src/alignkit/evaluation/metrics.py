"""Evaluation metrics as small pure functions of tensors, numbers and strings.

METHODS.md §5: perplexity of reference responses, implicit-reward margin / accuracy / DPO
loss on test pairs, reward-model score of generations, BLEU against the chosen response.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from alignkit.objectives.losses import dpo_loss


def perplexity(logp_sum: float | Tensor, n_tokens: int | float | Tensor) -> float:
    """exp(-sum log p / number of tokens): the exp of the mean token NLL.

    Tensor arguments (e.g. per-response sums (N,) and counts (N,)) are summed first, so
    every token weighs the same whatever response it belongs to.
    """
    total = float(torch.as_tensor(logp_sum, dtype=torch.float64).sum())
    count = float(torch.as_tensor(n_tokens, dtype=torch.float64).sum())
    if count <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(-total / count)


def implicit_reward_metrics(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
) -> dict[str, float]:
    """DPO implicit rewards r = beta * (log pi - log pi_ref) on test pairs; inputs (N,).

    margin = mean(r_chosen - r_rejected); accuracy = mean(r_chosen > r_rejected) (a tie
    counts as wrong, as in training); dpo_loss = mean(-log sigmoid(r_chosen - r_rejected));
    reward_chosen / reward_rejected = the mean rewards.
    """
    tensors = [t.double() for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    if tensors[0].numel() == 0:
        raise ValueError("implicit-reward metrics need at least one pair")
    losses, chosen, rejected = dpo_loss(*tensors, beta)
    return {
        "margin": float((chosen - rejected).mean()),
        "accuracy": float((chosen > rejected).double().mean()),
        "dpo_loss": float(losses.mean()),
        "reward_chosen": float(chosen.mean()),
        "reward_rejected": float(rejected.mean()),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, population standard deviation) of a non-empty list."""
    if not values:
        raise ValueError("mean_std of an empty list")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0..100) of hypotheses against one reference each."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
