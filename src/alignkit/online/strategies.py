"""What PLE, RAFT and online RRHF do differently inside the one online loop.

The loop (`alignkit.online.loop`) generates, scores, trains and checkpoints; a strategy says
which responses to sample for a query, which records to train on, and which loss to use:

- PLE (PLE paper): per query one unguided `y ~ pi(.|x)` and one principle-guided
  `y_p ~ pi(.|[p, x])`, both scored against `x`. Examples with `s_p - s > tau` get the ranking
  loss on length-normalised log-probs, the others the reward-weighted SFT with
  `w = 2e^s/(e^s+e^{s_p}) - 1`, `w_p = -w`; total = rank part + weighted-SFT part, each summed
  over its examples and divided by the batch size. `tau <- alpha * tau` after each iteration.
  The paper's ablations (Tables 4, 5): without the ranking loss and the principle (`y_p` is a
  second unguided sample, every example gets the weighted SFT), or without the weighted SFT
  (examples at or below tau add nothing).
- RAFT (Dong et al. 2023): K samples per query; SFT on the best one per query, or on the top
  fraction of all samples of the iteration (the core `sft` objective).
- Online RRHF (Yuan et al. 2023): K scored samples per query trained with the core `rrhf`
  objective (ranking over length-normalised log-probs + SFT on the best).

RLOO and PPO (`alignkit.online.rl`) use the hooks of `StrategyBase` that the others leave at
their defaults: their own scorer (per-token log-probs, a value head), a reference policy, a
no-gradient rollout pass over the iteration's samples before training, several epochs over it
and an early stop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from alignkit.data.prompts import prompt_json
from alignkit.data.records import Multi, Point, Prompt, Record
from alignkit.data.tokenize import Encoded
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.inference.generators import Generator
from alignkit.objectives import ObjectiveConfig, SeqLogps, compute_loss
from alignkit.objectives.base import Kind, Reduction
from alignkit.objectives.losses import ple_rank_loss, ple_weighted_sft_loss, ple_weights
from alignkit.online.principles import PrincipleMode, apply_principle
from alignkit.scoring.forward import SequenceScorer
from alignkit.scoring.packing import PackedBatch

RankForm = Literal["paper", "hinge"]
Selection = Literal["per-prompt", "global"]
Metrics = dict[str, float]


@dataclass
class Sampled:
    """One query's generations and their rewards (scored against the query without `p`).

    PLE: responses = [y, y_p]; RAFT and RRHF: the K samples. `finished[j]` is False when
    response j was cut off at max-new-tokens (it is then trained on without EOS).
    """

    prompt: Prompt
    responses: list[str]
    scores: list[float]
    finished: list[bool] = field(default_factory=list)  # [] = all finished
    # the sampled tokens of each response, when the generator returned them ([] = none)
    token_ids: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.finished:
            self.finished = [True] * len(self.responses)

    def unfinished(self, j: int) -> bool:
        return not self.finished[j]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": prompt_json(self.prompt),
            "responses": list(self.responses),
            "scores": list(self.scores),
            "finished": list(self.finished),
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Sampled:
        prompt = row["prompt"]
        prompt = prompt if isinstance(prompt, str) else tuple(dict(m) for m in prompt)
        finished = [bool(f) for f in row.get("finished", [])]
        return cls(prompt, list(row["responses"]), [float(s) for s in row["scores"]], finished)


class Strategy(Protocol):
    name: str

    def generate(
        self, prompts: Sequence[Prompt], generator: Generator, sampling: SamplingConfig
    ) -> list[list[Completion]]:
        """The responses sampled for each query (every one of them is scored and used)."""
        ...

    def examples(self, n_queries: int) -> int:
        """Training examples `build` makes from the samples of `n_queries` queries."""
        ...

    def build(self, samples: Sequence[Sampled]) -> tuple[list[Record], Metrics]:
        """Training records (prompt = the query without the principle) and their metrics."""
        ...

    def rows(self, samples: Sequence[Sampled]) -> list[dict[str, Any]]:
        """One JSON row per query for the iteration's generations file."""
        ...

    def sample_metrics(self, samples: Sequence[Sampled]) -> Metrics:
        """Reward statistics of one iteration's new samples."""
        ...

    def loss(self, policy: SeqLogps, batch: PackedBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and detached metrics of one micro-batch of `build`'s records."""
        ...

    def end_iteration(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # hooks with defaults in `StrategyBase` (only the RL methods change them)
    epochs: int

    def make_scorer(self, model: nn.Module) -> nn.Module: ...

    def attach_reference(self, scorer: nn.Module, copy: bool) -> None: ...

    def rollout(self, inputs: RolloutInputs) -> Metrics: ...

    def stop_early(self, step_metrics: Metrics) -> bool: ...

    def save_extra(self, model_dir: Path) -> None: ...

    def training_tokens(
        self, encoded: list[Encoded], samples: Sequence[Sampled], eos_ids: list[int], limit: int
    ) -> list[Encoded]: ...


@dataclass
class RolloutInputs:
    """What a strategy's rollout pass (before the optimizer steps of an iteration) scores:
    every encoded example of the iteration, in chunks of `batch_size`, this process's share
    (`rank` of `world`), with `scorer` (the policy, unwrapped from DDP) under no gradient."""

    scorer: nn.Module
    encoded: list[Encoded]
    k: int
    pad_id: int
    device: torch.device
    autocast: torch.dtype | None
    batch_size: int
    rank: int = 0
    world: int = 1


class StrategyBase:
    """Defaults of the hooks PLE, RAFT and RRHF do not need: the plain `SequenceScorer`, no
    reference, no rollout pass, one pass over the data, no early stop, nothing extra saved."""

    epochs = 1

    def make_scorer(self, model: nn.Module) -> nn.Module:
        """The module the loop trains (and `accelerate` prepares and checkpoints)."""
        return SequenceScorer(model)

    def attach_reference(self, scorer: nn.Module, copy: bool) -> None:
        """Called once with the policy before training (`copy`: freeze a copy of it)."""

    def rollout(self, inputs: RolloutInputs) -> Metrics:
        """A no-gradient pass over the iteration's examples before its optimizer steps."""
        return {}

    def stop_early(self, step_metrics: Metrics) -> bool:
        """After an optimizer step: skip the iteration's remaining steps?"""
        return False

    def save_extra(self, model_dir: Path) -> None:
        """Write extra files next to the final model (`save_pretrained`)."""

    def training_tokens(
        self, encoded: list[Encoded], samples: Sequence[Sampled], eos_ids: list[int], limit: int
    ) -> list[Encoded]:
        """The encodings the loop trains on (`build`'s records tokenized; `limit` = the
        max length of prompt + response): re-tokenized text by default."""
        return encoded


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# ----------------------------------------------------------------------------- PLE


def ple_branch(s: Tensor, s_p: Tensor, tau: float) -> Tensor:
    """(B,) bool: True where the ranking loss applies (`s_p - s > tau`), else weighted SFT.

    Decided on float32 tensors everywhere (records, metrics and loss), so they agree.
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
    """PLE loss of B examples (response 0 = y, 1 = y_p); scores (B, 2) = (s, s_p).

    Rank part: `ple_rank_loss` on length-normalised log-probs of the examples with
    s_p - s > tau. Weighted-SFT part: `ple_weighted_sft_loss` with `ple_weights` on
    log-probs reduced by `reduction` (the paper: sum) for the others. Each part is summed over
    its examples and divided by B, so loss = rank part + weighted-SFT part (paper eq. 6).
    `rank_loss` / `weighted_sft` False drop one part (`ple_parts`: the paper's ablations).
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


class PLEStrategy(StrategyBase):
    """Principle-guided sampling, reward scoring and the decaying threshold tau."""

    name = "ple"

    def __init__(
        self,
        principle: str,
        mode: PrincipleMode,
        tau0: float,
        alpha: float,
        form: RankForm,
        reduction: Reduction,
        rank_loss: bool = True,
        weighted_sft: bool = True,
    ) -> None:
        self.principle = principle
        self.mode = mode
        self.tau = tau0
        self.alpha = alpha
        self.form = form
        self.reduction = reduction
        self.rank_loss = rank_loss
        self.weighted_sft = weighted_sft

    def guided(self, prompt: Prompt) -> Prompt:
        """The prompt y_p is sampled from: [p, x] (without the ranking loss: x itself)."""
        if not self.rank_loss:
            return prompt
        return apply_principle(prompt, self.principle, self.mode)

    def generate(
        self, prompts: Sequence[Prompt], generator: Generator, sampling: SamplingConfig
    ) -> list[list[Completion]]:
        if not self.rank_loss:  # ablation w/o L_rank: no principle, two samples from x
            return [group[:2] for group in generator.generate(prompts, sampling, 2)]
        both = list(prompts) + [self.guided(p) for p in prompts]
        out = generator.generate(both, sampling, 1)
        n = len(prompts)
        return [[out[i][0], out[n + i][0]] for i in range(n)]

    def examples(self, n_queries: int) -> int:
        return n_queries

    def _parts(self, samples: Sequence[Sampled]) -> tuple[Tensor, Tensor]:
        scores = torch.tensor([x.scores for x in samples], dtype=torch.float32).view(-1, 2)
        return ple_parts(scores[:, 0], scores[:, 1], self.tau, self.rank_loss, self.weighted_sft)

    def build(self, samples: Sequence[Sampled]) -> tuple[list[Record], Metrics]:
        records: list[Record] = [
            Multi(
                x.prompt,
                (x.responses[0], x.responses[1]),
                (x.scores[0], x.scores[1]),
                unfinished=(x.unfinished(0), x.unfinished(1)),
            )
            for x in samples
        ]
        rank, sft = self._parts(samples)
        metrics = {
            "train/examples": float(len(records)),
            "train/n_rank": float(rank.sum()),
            "train/n_sft": float(sft.sum()),
        }
        return records, metrics

    def rows(self, samples: Sequence[Sampled]) -> list[dict[str, Any]]:
        rank, sft = self._parts(samples)
        out = []
        for x, in_rank, in_sft in zip(samples, rank.tolist(), sft.tolist(), strict=True):
            s, s_p = x.scores
            w, w_p = _weights(s, s_p) if in_sft else (None, None)
            branch = "rank" if in_rank else "sft" if in_sft else "none"
            out.append(
                {
                    "prompt": prompt_json(x.prompt),
                    "y": x.responses[0],
                    "y_p": x.responses[1],
                    "finished": list(x.finished),
                    "s": s,
                    "s_p": s_p,
                    "gap": s_p - s,
                    "tau": self.tau,
                    "branch": branch,
                    "w": w,
                    "w_p": w_p,
                }
            )
        return out

    def sample_metrics(self, samples: Sequence[Sampled]) -> Metrics:
        s = [x.scores[0] for x in samples]
        s_p = [x.scores[1] for x in samples]
        rank, sft = self._parts(samples)
        return {
            "reward/mean": _mean(s),
            "ple/s": _mean(s),
            "ple/s_p": _mean(s_p),
            "ple/gap": _mean(s_p) - _mean(s),
            "ple/tau": self.tau,
            "ple/n_rank": float(rank.sum()),
            "ple/n_sft": float(sft.sum()),
        }

    def loss(self, policy: SeqLogps, batch: PackedBatch) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = ple_objective(
            policy,
            batch.labels,
            self.tau,
            self.form,
            self.reduction,
            self.rank_loss,
            self.weighted_sft,
        )
        metrics["loss"] = loss.detach()
        return loss, metrics

    def end_iteration(self) -> None:
        self.tau = self.alpha * self.tau

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau = float(state["tau"])


def _weights(s: float, s_p: float) -> tuple[float, float]:
    w, w_p = ple_weights(torch.tensor([s], dtype=torch.float32), torch.tensor([s_p]))
    return float(w[0]), float(w_p[0])


# ------------------------------------------------------------------ RAFT and RRHF


class KSamples(StrategyBase):
    """Shared by RAFT, RRHF, RLOO and PPO: K unguided samples per query."""

    name = ""

    def __init__(self, k: int, objective: ObjectiveConfig) -> None:
        self.k = k
        self.objective = objective

    def generate(
        self, prompts: Sequence[Prompt], generator: Generator, sampling: SamplingConfig
    ) -> list[list[Completion]]:
        return generator.generate(prompts, sampling, self.k)

    def sample_metrics(self, samples: Sequence[Sampled]) -> Metrics:
        flat = [s for x in samples for s in x.scores]
        best = [max(x.scores) for x in samples]
        spread = [max(x.scores) - min(x.scores) for x in samples]
        return {
            "reward/mean": _mean(flat),
            f"{self.name}/best_reward": _mean(best),
            f"{self.name}/spread": _mean(spread),
        }

    def end_iteration(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def _compute(self, method: str, policy: SeqLogps, batch: PackedBatch, kind: Kind):
        return compute_loss(method, batch.objective_batch(kind, policy), self.objective)


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
        reward = _mean([samples[i].scores[j] for i, j in chosen])
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

    def loss(self, policy: SeqLogps, batch: PackedBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return self._compute("sft", policy, batch, "point")


def multi_records(samples: Sequence[Sampled]) -> list[Record]:
    """One scored K-response record per query (cut-off samples marked unfinished)."""
    return [
        Multi(
            x.prompt,
            tuple(x.responses),
            tuple(x.scores),
            unfinished=tuple(not f for f in x.finished),
        )
        for x in samples
    ]


class RRHFStrategy(KSamples):
    """Online RRHF: the core rrhf objective on K freshly scored samples per query."""

    name = "rrhf"

    def examples(self, n_queries: int) -> int:
        return n_queries

    def build(self, samples: Sequence[Sampled]) -> tuple[list[Record], Metrics]:
        records = multi_records(samples)
        return records, {"train/examples": float(len(records))}

    def rows(self, samples: Sequence[Sampled]) -> list[dict[str, Any]]:
        return [
            {**x.to_dict(), "best": max(range(len(x.scores)), key=lambda j: (x.scores[j], -j))}
            for x in samples
        ]

    def loss(self, policy: SeqLogps, batch: PackedBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return self._compute("rrhf", policy, batch, "multi")
