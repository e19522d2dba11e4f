"""Inputs every objective receives: per-sequence log-probs of K responses per prompt.

The forward pass (`alignkit.scoring.forward`) scores, for each of B prompts, K responses at once:
pair data has K=2 (index 0 = chosen, 1 = rejected), point data K=1, multi-response data
K = the largest number of responses in the batch (missing ones are masked out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where a tensor is made: configs import this module
    from torch import Tensor

Reduction = Literal["sum", "mean"]
RankForm = Literal["paper", "hinge"]  # PLE's ranking loss: the paper's form or a hinge
Kind = Literal["pair", "point", "multi"]
UnlikelihoodForm = Literal["paper", "token"]


@dataclass
class SeqLogps:
    """Log-probs of response tokens, per sequence.

    sum:    (B, K) sum over response tokens of log p(y_t | x, y_<t)
    count:  (B, K) number of response tokens (0 for a masked-out sequence)
    tokens: (B, K, T) per-token log-probs, 0 where t >= count; None when not computed
    r_q:    (B, K) DEFT distribution reward mean_t <Q_diff, logits_t>; None when DEFT is off
    """

    sum: Tensor
    count: Tensor
    tokens: Tensor | None = None
    r_q: Tensor | None = None

    def reduced(self, reduction: Reduction) -> Tensor:
        """(B, K): the sum, or the mean over response tokens (`count` clamped to >= 1)."""
        if reduction == "sum":
            return self.sum
        if reduction == "mean":
            return self.sum / self.count.clamp(min=1).to(self.sum.dtype)
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")

    def token_mask(self) -> Tensor:
        """(B, K, T) bool: True at real response tokens."""
        import torch

        assert self.tokens is not None
        t = torch.arange(self.tokens.shape[-1], device=self.tokens.device)
        return t < self.count.unsqueeze(-1)


@dataclass
class ObjectiveBatch:
    """Everything an objective may need, for B prompts x K responses.

    kind:         "pair" (K=2, 0=chosen, 1=rejected), "point" (K=1) or "multi"
    policy:       SeqLogps of the model being trained (carries gradients)
    ref:          SeqLogps of the frozen reference (sum and count only), or None
    labels:       (B, K) float: pair [1, 0]; point z (0/1 or a real score); multi the scores
    binary:       (B,) bool: the point's label is binary (pair and multi: all True)
    high_quality: (B, K) bool: receives the SFT term (pair: chosen; point: label==1 or marked;
                  multi: the best-scored response)
    mask:         (B, K) bool: the sequence exists (multi-response batches are ragged)
    """

    kind: Kind
    policy: SeqLogps
    labels: Tensor
    binary: Tensor
    high_quality: Tensor
    mask: Tensor
    ref: SeqLogps | None = None


@dataclass
class ObjectiveConfig:
    """Hyper-parameters shared by the objectives (formulas: docs/methods.md)."""

    beta: float = 0.1
    reduction: Reduction = "sum"
    logz: float = 0.0  # the constant c = beta * log Z(x) of point-wise DPO
    unlikelihood_form: UnlikelihoodForm = "paper"
    rrhf_sft_weight: float = 1.0
    deft_lambda: float = 0.0
