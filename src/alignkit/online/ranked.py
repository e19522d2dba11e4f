"""RAFT and online RRHF: K scored samples per query, trained on by reward rank.

- RAFT (Dong et al. 2023): K samples per query; SFT on the best one per query, or on the top
  fraction of all samples of the iteration (the core `sft` objective).
- Online RRHF (Yuan et al. 2023): K scored samples per query trained with the core `rrhf`
  objective (ranking over length-normalised log-probs + SFT on the best).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from alignkit.data.records import Point, Record
from alignkit.objectives import ObjectiveConfig
from alignkit.online.config import Selection
from alignkit.online.samples import KSamples, Loss, Metrics, Sampled, mean
from alignkit.scoring.packing import PackedBatch


def n_selected(total: int, fraction: float) -> int:
    """How many of `total` samples a global top `fraction` keeps (at least one)."""
    return max(1, math.ceil(fraction * total - 1e-9))


def raft_select(scores: Sequence[Sequence[float]], selection: Selection, fraction: float):
    """(query, sample) indices kept by RAFT, in query order.

    per-prompt: the best sample of every query (first one on ties); global: the top
    `fraction` of all samples of the iteration by reward (ties: earlier first).
    """
    if selection == "per-prompt":
        return [
            (i, max(range(len(row)), key=lambda j: (row[j], -j))) for i, row in enumerate(scores)
        ]
    flat = [(i, j) for i, row in enumerate(scores) for j in range(len(row))]
    ranked = sorted(flat, key=lambda ij: (-scores[ij[0]][ij[1]], ij))
    return sorted(ranked[: n_selected(len(flat), fraction)])


class RAFTStrategy(KSamples):
    """Reward-ranked fine-tuning: SFT on the best samples."""

    name = "raft"

    def __init__(
        self, k: int, selection: Selection, fraction: float, objective: ObjectiveConfig
    ) -> None:
        super().__init__(k, objective)
        self.selection = selection
        self.fraction = fraction

    def examples(self, n_queries: int) -> int:
        if self.selection == "per-prompt":
            return n_queries
        return n_selected(n_queries * self.k, self.fraction)

    def _selected(self, samples: Sequence[Sampled]) -> list[tuple[int, int]]:
        return raft_select([x.scores for x in samples], self.selection, self.fraction)

    def build(self, samples: Sequence[Sampled]) -> tuple[list[Record], Metrics]:
        chosen = self._selected(samples)
        records: list[Record] = [
            Point(
                samples[i].prompt,
                samples[i].responses[j],
                1.0,
                binary=True,
                high_quality=True,
                unfinished=samples[i].unfinished(j),
            )
            for i, j in chosen
        ]
        reward = mean([samples[i].scores[j] for i, j in chosen])
        return records, {"train/examples": float(len(records)), "raft/selected_reward": reward}

    def rows(self, samples: Sequence[Sampled]) -> list[dict[str, Any]]:
        chosen = set(self._selected(samples))
        return [
            {
                **x.to_dict(),
                "selected": [(i, j) in chosen for j in range(len(x.responses))],
            }
            for i, x in enumerate(samples)
        ]

    def loss(
        self, scorer: nn.Module, batch: PackedBatch, rollout: None, autocast: torch.dtype | None
    ) -> Loss:
        return self.core_loss("sft", scorer(batch, autocast=autocast), batch, "point")


class RRHFStrategy(KSamples):
    """Online RRHF: the core rrhf objective on K freshly scored samples per query."""

    name = "rrhf"

    def rows(self, samples: Sequence[Sampled]) -> list[dict[str, Any]]:
        return [
            {**x.to_dict(), "best": max(range(len(x.scores)), key=lambda j: (x.scores[j], -j))}
            for x in samples
        ]

    def loss(
        self, scorer: nn.Module, batch: PackedBatch, rollout: None, autocast: torch.dtype | None
    ) -> Loss:
        return self.core_loss("rrhf", scorer(batch, autocast=autocast), batch, "multi")
