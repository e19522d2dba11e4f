"""Reward-model training: Bradley–Terry on preference pairs, through the shared Trainer.

`RewardTrainer` is `alignkit.train.trainer.Trainer` with two hooks replaced: `build_scorer` returns
a `RewardScorer` around an `AutoModelForSequenceClassification` with one output (any decoder
backbone gets a fresh one; a classifier with several labels is refused), optionally LoRA with
the score head trained in full), and `step_loss` computes
`-log sigmoid(R(x, chosen) - R(x, rejected))` on the rewards of one packed forward pass
(the shared prompt is encoded once). Data loading, batching, accumulation, schedules,
checkpoints/resume, held-out evaluation and saving are the Trainer's.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate import Accelerator
from torch import Tensor, nn

from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text
from alignkit.models import resolve_model
from alignkit.objectives import SeqLogps, compute_loss
from alignkit.objectives.registry import BRADLEY_TERRY
from alignkit.rewards.config import BT_NAME, RewardTrainConfig  # noqa: F401
from alignkit.rewards.loading import (
    MARKER_FORMAT,
    RewardScorer,
    load_sequence_classifier,
    num_labels_of,
)
from alignkit.runs import REWARD_MARKER
from alignkit.scoring.packing import PackedBatch
from alignkit.train.trainer import Trainer


class RewardTrainer(Trainer):
    """Trains a scalar reward model with the Bradley–Terry loss; `run()` does the whole job.

    OUTPUT/model holds the model (or LoRA adapter incl. the score head), its tokenizer and
    `alignkit_reward.json`, and loads with `alignkit.rewards.loading.load_reward_model(OUTPUT/model)`.
    """

    def __init__(self, config: RewardTrainConfig, accelerator: Accelerator | None = None) -> None:
        super().__init__(config, accelerator, method=BRADLEY_TERRY)

    def build_scorer(self, tokenizer) -> nn.Module:
        cfg = self.config
        model = load_sequence_classifier(
            cfg.model,
            lora=cfg.lora_settings(),
            pad_token_id=tokenizer.pad_token_id,
            trust_remote_code=cfg.trust_remote_code,
        )
        labels = num_labels_of(model)
        if labels != 1:
            raise AlignkitError(
                f"train-rm trains a reward model with one output, but {cfg.model} is a "
                f"classifier with {labels} labels; start from a causal LM (it gets a fresh "
                "one-output head) or from a one-output reward model"
            )
        return RewardScorer(model)

    def policy_scores(self, scorer, batch: PackedBatch, q_diff) -> SeqLogps:
        """The reward model's (B, 2) scores of a micro-batch of pairs, as sequence scores."""
        return SeqLogps(sum=scorer(batch, autocast=self.autocast), count=batch.counts)

    def batch_loss(self, batch: PackedBatch, policy: SeqLogps, ref_table) -> tuple[Tensor, dict]:
        """Bradley–Terry loss and metrics of one micro-batch of pairs (K=2)."""
        return compute_loss(self.method, batch.objective_batch("pair", policy), self.objective)

    def save_extra(self, model_dir: Path) -> None:
        marker = {
            "format": MARKER_FORMAT,
            "method": BT_NAME,
            "base_model": resolve_model(self.config.model),
            "lora": self.config.lora,
            "max_length": self.config.max_length,
        }
        atomic_write_text(model_dir / REWARD_MARKER, json.dumps(marker, indent=2))


def pair_accuracy(metrics: dict[str, float]) -> float | None:
    """Held-out pair accuracy from `Trainer.evaluate` metrics (None without eval data)."""
    value = metrics.get("eval/rewards/accuracies")
    return None if value is None else float(value)
