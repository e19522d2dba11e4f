"""What every online method shares: the scored samples of a query, the `Strategy` interface
the loop (`alignkit.online.loop`) drives, and its defaults.

The loop generates, scores, trains and checkpoints; a strategy says which responses to sample
for a query, which records to train on, what to compute before the optimizer steps (the
rollout) and which loss to use. The methods: PLE (`online/ple.py`), RAFT and online RRHF
(`online/ranked.py`), RLOO (`online/rloo.py`) and PPO (`online/ppo.py`); the last two build a
`Rollout` value (`online/rollout.py`) that their loss receives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from alignkit.data.prompts import prompt_json
from alignkit.data.records import Multi, Prompt, Record
from alignkit.data.tokenize import Encoded
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.inference.generators import Generator
from alignkit.objectives import ObjectiveConfig, SeqLogps, compute_loss
from alignkit.objectives.base import Kind
from alignkit.scoring.forward import SequenceScorer
from alignkit.scoring.packing import PackedBatch

Metrics = dict[str, float]
Loss = tuple[Tensor, dict[str, Tensor]]  # the loss and its detached metrics


@dataclass
class Sampled:
    """One query's generations and their rewards (scored against the query without `p`).

    PLE: responses = [y, y_p]; RAFT, RRHF, RLOO and PPO: the K samples. `finished[j]` is False
    when response j was cut off at max-new-tokens (it is then trained on without EOS).
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


class Strategy(Protocol):
    name: str
    epochs: int  # passes over an iteration's records (PPO: num_ppo_epochs)

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

    def rollout(self, inputs: RolloutInputs) -> tuple[Any, Metrics]:
        """A no-gradient pass over the iteration's examples before its optimizer steps: the
        value `loss` receives (RLOO, PPO: an `alignkit.online.rollout.Rollout`; the others:
        None) and its metrics."""
        ...

    def loss(
        self, scorer: nn.Module, batch: PackedBatch, rollout: Any, autocast: torch.dtype | None
    ) -> Loss:
        """One micro-batch of `build`'s records: the policy's forward call `scorer(batch)`,
        then the method's loss (with the iteration's `rollout`) and its detached metrics."""
        ...

    def stop_early(self, step_metrics: Metrics) -> bool:
        """After an optimizer step: skip the iteration's remaining steps?"""
        ...

    def end_iteration(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def make_scorer(self, model: nn.Module) -> nn.Module: ...

    def attach_reference(self, scorer: nn.Module) -> None: ...

    def init_critic(self, scorer: nn.Module, reward: Any) -> None: ...

    def param_groups(self, scorer: nn.Module) -> list[dict[str, Any]] | None: ...

    def save_extra(self, model_dir: Path) -> None: ...

    def training_tokens(
        self, encoded: list[Encoded], samples: Sequence[Sampled], eos_ids: list[int], limit: int
    ) -> list[Encoded]: ...


class StrategyBase:
    """Defaults of the hooks PLE, RAFT and RRHF do not need: the plain `SequenceScorer`, no
    reference, no rollout pass, one pass over the data, no early stop, nothing extra saved."""

    epochs = 1

    def make_scorer(self, model: nn.Module) -> nn.Module:
        """The module the loop trains (and `accelerate` prepares and checkpoints)."""
        return SequenceScorer(model)

    def attach_reference(self, scorer: nn.Module) -> None:
        """Called once with the policy before training (its starting state is the reference)."""

    def init_critic(self, scorer: nn.Module, reward: Any) -> None:
        """Called once with the policy and the loaded reward model before training (PPO:
        the value head's start)."""

    def param_groups(self, scorer: nn.Module) -> list[dict[str, Any]] | None:
        """The optimizer's parameter groups (None: one group of every trainable parameter
        at the run's learning rate)."""
        return None

    def rollout(self, inputs: RolloutInputs) -> tuple[Any, Metrics]:
        """No rollout pass: the loss receives None."""
        return None, {}

    def stop_early(self, step_metrics: Metrics) -> bool:
        return False

    def save_extra(self, model_dir: Path) -> None:
        """Write extra files next to the final model (`save_pretrained`)."""

    def training_tokens(
        self, encoded: list[Encoded], samples: Sequence[Sampled], eos_ids: list[int], limit: int
    ) -> list[Encoded]:
        """The encodings the loop trains on (`build`'s records tokenized; `limit` = the
        max length of prompt + response): re-tokenized text by default."""
        return encoded


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


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

    def examples(self, n_queries: int) -> int:
        """One training example per query: its K samples (RAFT keeps fewer)."""
        return n_queries

    def build(self, samples: Sequence[Sampled]) -> tuple[list[Record], Metrics]:
        """Every query's K scored samples as one `Multi` record (RAFT keeps fewer)."""
        records = multi_records(samples)
        return records, {"train/examples": float(len(records))}

    def sample_metrics(self, samples: Sequence[Sampled]) -> Metrics:
        flat = [s for x in samples for s in x.scores]
        best = [max(x.scores) for x in samples]
        spread = [max(x.scores) - min(x.scores) for x in samples]
        return {
            "reward/mean": mean(flat),
            f"{self.name}/best_reward": mean(best),
            f"{self.name}/spread": mean(spread),
        }

    def end_iteration(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def core_loss(self, method: str, policy: SeqLogps, batch: PackedBatch, kind: Kind) -> Loss:
        """A core objective of `alignkit train` (`compute_loss`) on the policy's log-probs."""
        return compute_loss(method, batch.objective_batch(kind, policy), self.objective)


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
