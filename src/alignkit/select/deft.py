"""DEFT: token-distribution reward R_Q for filtering data and guiding any objective.

Q_pos / Q_neg are the token-frequency distributions of preferred / dispreferred responses
(policy tokenizer, response tokens only, special tokens excluded); Q_diff = Q_pos - Q_neg.
R_Q(x, y) = mean_t <Q_diff, log p(. | x, y_<t)> = mean_t <Q_diff, logits_t> (sum(Q_diff) = 0),
computed in `alignkit.forward` as h_t . (W^T Q_diff) without any vocabulary-sized softmax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from alignkit.encoding import Encoded
from alignkit.errors import AlignkitError


def token_distribution(sequences: Iterable[Sequence[int]], vocab: int, exclude: Iterable[int]) -> Tensor:
    """(V,) normalised token frequencies over `sequences`, `exclude` ids removed."""
    counts = torch.zeros(vocab, dtype=torch.float64)
    flat = [t for seq in sequences for t in seq]
    if flat:
        counts += torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=vocab)[:vocab]
    ex = torch.tensor(sorted(set(exclude)), dtype=torch.long)
    if len(ex):
        counts[ex[ex < vocab]] = 0
    total = counts.sum()
    if total == 0:
        raise AlignkitError("no response tokens to build a token distribution from")
    return counts / total


def q_diff_from_encoded(encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]) -> Tensor:
    """(V,) Q_pos - Q_neg: positives are high-quality responses, negatives the others.

    Pair data: chosen vs rejected; point data: label-1 vs label-0 completions.
    """
    special = list(special_ids)
    pos = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if hq]
    neg = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if not hq]
    if not pos or not neg:
        raise AlignkitError(
            "DEFT needs both preferred and dispreferred responses to build Q_diff "
            f"(found {len(pos)} preferred, {len(neg)} dispreferred)"
        )
    q_pos = token_distribution(pos, vocab, special)
    q_neg = token_distribution(neg, vocab, special)
    return (q_pos - q_neg).float()
