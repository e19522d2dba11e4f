"""DEFT's token-distribution reward R_Q: Q_pos, Q_neg, Q_diff and both forms of R_Q.

Q_pos / Q_neg are the token-frequency distributions of preferred / dispreferred responses
(policy tokenizer, response tokens only, special tokens excluded); Q_diff = Q_pos - Q_neg.

    log-prob form  R_Q(x, y) = mean_t <Q_diff, log p(. | x, y_<t)> = mean_t <Q_diff, logits_t>
    bounded form   R_Q(x, y) = mean_t <Q_diff, p(. | x, y_<t)>

The log-prob form needs no softmax because sum(Q_diff) = 0 cancels the log-partition: it is
`h_t . (W^T Q_diff)`, one d-vector per batch. Formulas: docs/methods.md, "DEFT".

Used by the packed forward (`SequenceScorer(q_diff=...)`, the trainer's `--deft-lambda`
guidance term) and by `alignkit select deft` (`alignkit.select.deft`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError

_COUNT_CHUNK = 1 << 15  # sequences flattened per bincount (bounds the temporary arrays)


# ------------------------------------------------------------------ Q_pos, Q_neg, Q_diff


def token_counts(sequences: Iterable[Sequence[int]], vocab: int) -> np.ndarray:
    """(V,) int64 number of occurrences of every token id in `sequences`.

    Counted in chunks with one C-level flatten + bincount each (no per-token Python work).
    An id outside [0, vocab) means the tokenizer does not match the vocabulary: an error.
    """
    counts = np.zeros(vocab, dtype=np.int64)
    it = iter(sequences)
    while chunk := list(itertools.islice(it, _COUNT_CHUNK)):
        flat = np.fromiter(itertools.chain.from_iterable(chunk), dtype=np.int64)
        if flat.size == 0:
            continue
        if flat.min() < 0 or flat.max() >= vocab:
            raise AlignkitError(
                f"token id {int(flat.max())} is outside the vocabulary of {vocab} tokens: "
                "the tokenizer and the model/vocabulary size do not belong together"
            )
        counts += np.bincount(flat, minlength=vocab)
    return counts


def _normalised(counts: np.ndarray, exclude: Iterable[int]) -> tuple[Tensor, int]:
    """(V,) float64 distribution with `exclude` ids zeroed, and the number of tokens kept."""
    counts = torch.from_numpy(counts).to(torch.float64)
    ex = torch.tensor(sorted(set(exclude)), dtype=torch.long)
    if len(ex):
        counts[ex[(ex >= 0) & (ex < len(counts))]] = 0
    total = int(counts.sum())
    if total == 0:
        raise AlignkitError("no response tokens to build a token distribution from")
    return counts / total, total


def token_distribution(
    sequences: Iterable[Sequence[int]], vocab: int, exclude: Iterable[int]
) -> Tensor:
    """(V,) normalised token frequencies over `sequences`, `exclude` ids removed."""
    return _normalised(token_counts(sequences, vocab), exclude)[0]


@dataclass
class TokenDistributions:
    """Q_pos, Q_neg: (V,) float64 distributions; *_tokens: tokens counted in each."""

    q_pos: Tensor
    q_neg: Tensor
    pos_tokens: int
    neg_tokens: int

    @property
    def q_diff(self) -> Tensor:
        """(V,) float32 Q_pos - Q_neg (sums to 0; > 0 = typical of preferred responses)."""
        return (self.q_pos - self.q_neg).float()


def token_distributions(
    encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]
) -> TokenDistributions:
    """Q_pos over high-quality responses (pair: chosen), Q_neg over the others."""
    special = list(special_ids)
    pos = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if hq]
    neg = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if not hq]
    if not pos or not neg:
        raise AlignkitError(
            "DEFT needs both preferred and dispreferred responses to build Q_diff "
            f"(found {len(pos)} preferred, {len(neg)} dispreferred)"
        )
    q_pos, n_pos = _normalised(token_counts(pos, vocab), special)
    q_neg, n_neg = _normalised(token_counts(neg, vocab), special)
    return TokenDistributions(q_pos, q_neg, n_pos, n_neg)


def q_diff_from_encoded(
    encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]
) -> Tensor:
    """(V,) Q_pos - Q_neg: positives are high-quality responses, negatives the others.

    Pair data: chosen vs rejected; point data: label-1 vs label-0 completions.
    """
    return token_distributions(encoded, vocab, special_ids).q_diff


def fit_q_diff(q_diff: Tensor, rows: int) -> Tensor:
    """(rows,) Q_diff over the tokenizer's vocabulary, zero-padded to the LM head's (possibly
    padded) number of rows (e.g. Qwen pads its embedding matrix beyond the tokenizer)."""
    if len(q_diff) == rows:
        return q_diff
    if len(q_diff) > rows:
        raise AlignkitError(
            f"Q_diff has {len(q_diff)} entries but the model's vocabulary only {rows}: "
            "it was built with another tokenizer"
        )
    return torch.nn.functional.pad(q_diff, (0, rows - len(q_diff)))


# ------------------------------------------------------------------------------- R_Q


def distribution_reward(
    hidden: Tensor, head: nn.Module, q_diff: Tensor, seq_id: Tensor, counts: Tensor
) -> Tensor:
    """(B, K) log-prob R_Q = mean over response positions of <Q_diff, logits_t>.

    hidden: (N, d) float hidden states of the N response positions of a packed batch;
    seq_id: (N,) their sequence b*K + k; counts: (B, K) response lengths. Computed as
    h_t . (W^T Q_diff) (+ <Q_diff, bias>): because Q_diff sums to 0 the log-partition
    cancels, so this equals mean_t sum_v Q_diff[v] log p(v | x, y_<t) without any softmax.
    """
    weight = head.weight.float()  # (V, d)
    q_diff = fit_q_diff(q_diff, weight.shape[0])
    direction = q_diff.to(weight.dtype) @ weight  # (d,)
    per_token = hidden @ direction  # (N,)
    if getattr(head, "bias", None) is not None:
        per_token = per_token + q_diff.to(weight.dtype) @ head.bias.float()
    return _per_sequence_mean(per_token, seq_id, counts)


def probability_reward(
    hidden: Tensor,
    head: nn.Module,
    q_diff: Tensor,
    seq_id: Tensor,
    counts: Tensor,
    autocast: torch.dtype | None = None,
    chunk: int = 256,
) -> Tensor:
    """(B, K) bounded R_Q = mean_t <Q_diff, softmax(logits_t)>, in [min Q_diff, max Q_diff].

    hidden: (N, d) response positions (see `distribution_reward`); the (chunk, V) logits are
    never larger than `chunk` rows at a time. `q_diff` must already fit the head (`fit_q_diff`).
    """
    device = hidden.device
    parts = []
    for part in hidden.split(chunk):
        with torch.autocast(
            device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            logits = head(part)
        parts.append(torch.softmax(logits.float(), dim=-1) @ q_diff.float())
    per_token = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)
    return _per_sequence_mean(per_token, seq_id, counts)


def _per_sequence_mean(per_token: Tensor, seq_id: Tensor, counts: Tensor) -> Tensor:
    """(B, K) mean of the (N,) per-token values over each packed response."""
    b, k = counts.shape
    sums = torch.zeros(b * k, dtype=per_token.dtype, device=per_token.device)
    sums = sums.index_add(0, seq_id, per_token).view(b, k)
    return sums / counts.clamp(min=1)
