"""Evaluation metrics as small pure functions of tensors, numbers and strings.

docs/methods.md, "Evaluation metrics": perplexity of reference responses and BLEU against
the chosen response (the implicit-reward metrics of test pairs are in
`alignkit.objectives.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


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
