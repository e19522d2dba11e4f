"""The PLE objective (PLE paper, eq. 6): ranking loss where the principle helped, reward-weighted
SFT elsewhere.

Shapes: B = examples, each with response 0 = y (sampled from x) and 1 = y_p (sampled from the
principle-guided [p, x]); `policy` holds their log-probs as `SeqLogps` of shape (B, 2) and
`scores` (B, 2) = (s, s_p), both rewards scored against x. The parts are the pure losses of
`alignkit.objectives.losses`: `ple_rank_loss`, `ple_weights`, `ple_weighted_sft_loss`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.base import RankForm, Reduction, SeqLogps
from alignkit.objectives.losses import ple_rank_loss, ple_weighted_sft_loss, ple_weights


def ple_branch(s: Tensor, s_p: Tensor, tau: float) -> Tensor:
    """(B,) bool: True where the ranking loss applies (`s_p - s > tau`), else weighted SFT.

    s, s_p: (B,) rewards. Decided on float32 tensors everywhere (records, metrics and loss), so
    they agree.
    """
    return (s_p.float() - s.float()) > tau


def ple_parts(
    s: Tensor, s_p: Tensor, tau: float, rank_loss: bool = True, weighted_sft: bool = True
) -> tuple[Tensor, Tensor]:
    """(B,) bool masks (rank, sft): the examples that get the ranking loss and those that get
    the weighted SFT. The method: rank where `s_p - s > tau`, SFT elsewhere. Ablation
    `rank_loss=False` (paper: w/o L_rank): no rank, SFT everywhere; `weighted_sft=False`
    (w/o L_weighted-sft): rank as usual, SFT nowhere."""
    if rank_loss:
        rank = ple_branch(s, s_p, tau)
    else:
        rank = torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    sft = ~rank if weighted_sft else torch.zeros_like(rank)
    return rank, sft


def ple_objective(
    policy: SeqLogps,
    scores: Tensor,
    tau: float,
    form: RankForm,
    reduction: Reduction,
    rank_loss: bool = True,
    weighted_sft: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PLE loss of B examples: policy (B, 2) log-probs of (y, y_p), scores (B, 2) = (s, s_p).

    Rank part: `ple_rank_loss` on length-normalised log-probs of the examples with
    s_p - s > tau. Weighted-SFT part: `ple_weighted_sft_loss` with `ple_weights` on
    log-probs reduced by `reduction` (the paper: sum) for the others. Each part is summed over
    its examples and divided by B, so loss = rank part + weighted-SFT part (paper eq. 6).
    `rank_loss` / `weighted_sft` False drop one part (`ple_parts`: the paper's ablations).
    Returns the scalar loss and detached scalar metrics.
    """
    s, s_p = scores[:, 0], scores[:, 1]
    rank, sft = ple_parts(s, s_p, tau, rank_loss, weighted_sft)
    avg = policy.reduced("mean")
    logps = policy.reduced(reduction)
    b = max(scores.shape[0], 1)
    rank_part = ple_rank_loss(avg[rank, 0], avg[rank, 1], form).sum() / b
    w, w_p = ple_weights(s[sft].float(), s_p[sft].float())
    sft_part = ple_weighted_sft_loss(logps[sft, 0], logps[sft, 1], w, w_p).sum() / b
    metrics = {
        "loss/rank": rank_part.detach(),
        "loss/sft": sft_part.detach(),
        "logps/y_avg": avg[:, 0].mean().detach(),
        "logps/y_p_avg": avg[:, 1].mean().detach(),
    }
    return rank_part + sft_part, metrics
