"""PLE (PLE paper): principle-guided sampling, reward scoring and a decaying threshold tau.

Per query one unguided `y ~ pi(.|x)` and one principle-guided `y_p ~ pi(.|[p, x])`, both scored
against `x`. Examples with `s_p - s > tau` get the ranking loss on length-normalised log-probs,
the others the reward-weighted SFT with `w = 2e^s/(e^s+e^{s_p}) - 1`, `w_p = -w`; total = rank
part + weighted-SFT part, each summed over its examples and divided by the batch size
(`alignkit.objectives.ple.ple_objective`). `tau <- alpha * tau` after each iteration. The
paper's ablations (Tables 4, 5): without the ranking loss and the principle (`y_p` is a second
unguided sample, every example gets the weighted SFT), or without the weighted SFT (examples
at or below tau add nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.data.prompts import prompt_json
from alignkit.data.records import Multi, Prompt, Record
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.inference.generators import Generator
from alignkit.objectives.base import RankForm, Reduction
from alignkit.objectives.losses import ple_weights
from alignkit.objectives.ple import ple_objective, ple_parts
from alignkit.online.principles import PrincipleMode, apply_principle
from alignkit.online.samples import Loss, Metrics, Sampled, StrategyBase, mean
from alignkit.scoring.packing import PackedBatch


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
            "reward/mean": mean(s),
            "ple/s": mean(s),
            "ple/s_p": mean(s_p),
            "ple/gap": mean(s_p) - mean(s),
            "ple/tau": self.tau,
            "ple/n_rank": float(rank.sum()),
            "ple/n_sft": float(sft.sum()),
        }

    def loss(
        self, scorer: nn.Module, batch: PackedBatch, rollout: None, autocast: torch.dtype | None
    ) -> Loss:
        policy = scorer(batch, autocast=autocast)  # SeqLogps (B, 2): y, y_p
        loss, metrics = ple_objective(
            policy,
            batch.labels,  # (B, 2): s, s_p
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
