"""Reward-model training: Bradley–Terry on preference pairs, through the shared Trainer.

`RewardTrainer` is `alignkit.train.trainer.Trainer` with two hooks replaced: `build_scorer` returns
a `RewardScorer` around an `AutoModelForSequenceClassification` (num_labels=1; any decoder
backbone, optionally LoRA with the score head trained in full), and `step_loss` computes
`-log sigmoid(R(x, chosen) - R(x, rejected))` on the rewards of one packed forward pass
(the shared prompt is encoded once). Data loading, batching, accumulation, schedules,
checkpoints/resume, held-out evaluation and saving are the Trainer's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor, nn

from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text
from alignkit.models import resolve_model
from alignkit.objectives import ObjectiveBatch, ObjectiveConfig, SeqLogps, compute_loss
from alignkit.objectives.registry import Method
from alignkit.options import opt
from alignkit.rewards.loading import (
    MARKER_FILE,
    MARKER_FORMAT,
    RewardScorer,
    load_sequence_classifier,
)
from alignkit.scoring.forward import PackedBatch
from alignkit.train.config import TrainConfig
from alignkit.train.trainer import Trainer

BRADLEY_TERRY = "bradley-terry"


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Bradley–Terry: (B,) rewards of chosen and rejected -> (B,) -log sigmoid(r_c - r_r)."""
    return -F.logsigmoid(chosen - rejected)


def _bradley_terry(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, dict]:
    """For reward models `batch.policy.sum` (B, 2) holds the rewards R(x, y), not log-probs."""
    rows = batch.mask[:, 0] & batch.mask[:, 1]
    chosen, rejected = batch.policy.sum[rows, 0], batch.policy.sum[rows, 1]
    losses = bradley_terry_loss(chosen, rejected)
    loss = losses.sum() / max(losses.numel(), 1)
    if not rows.any():
        return loss, {}
    metrics = {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).to(chosen.dtype).mean(),
    }
    return loss, {k: v.detach() for k, v in metrics.items()}


BT_METHOD = Method(
    BRADLEY_TERRY,
    "pair",
    False,
    _bradley_terry,
    "Bradley-Terry reward model: -log sigmoid(R(x, chosen) - R(x, rejected))",
)

# TrainConfig options that only concern policy objectives: hidden from `train-rm`, and an
# error when a --config file sets them to anything but their default.
_POLICY_ONLY = ("beta", "reduction", "logz", "unlikelihood_form", "rrhf_sft_weight", "deft_lambda")


def _hidden(field_name: str) -> dataclasses.Field:
    default = next(f for f in dataclasses.fields(TrainConfig) if f.name == field_name).default
    return opt(default, "not used by train-rm", cli=False)


@dataclass
class RewardTrainConfig(TrainConfig):
    """`TrainConfig` with the method fixed to Bradley–Terry (options of `alignkit train-rm`)."""

    method: str = opt(BRADLEY_TERRY, "always bradley-terry", cli=False)
    output: str = opt("", "run directory: model (the reward model), metrics.jsonl, checkpoints")
    model: str = opt(
        "default",
        "backbone: HF id, local path or 'default'; a causal LM gets a new scalar head",
    )
    eval_data: list[str] = opt(
        [],
        "held-out pairs: pair accuracy before and after training (and every --eval-steps)",
        metavar="PATH",
    )
    lora: bool = opt(False, "train a LoRA adapter (peft, SEQ_CLS) + the full score head")
    beta: float = _hidden("beta")
    reduction: str = _hidden("reduction")
    logz: float = _hidden("logz")
    unlikelihood_form: str = _hidden("unlikelihood_form")
    rrhf_sft_weight: float = _hidden("rrhf_sft_weight")
    deft_lambda: float = _hidden("deft_lambda")

    def validate(self) -> None:
        if self.method != BRADLEY_TERRY:
            raise AlignkitError(
                f"train-rm always trains {BRADLEY_TERRY}; remove method: {self.method!r} "
                "from the config (use `alignkit train` for policy objectives)"
            )
        defaults = TrainConfig()
        changed = [n for n in _POLICY_ONLY if getattr(self, n) != getattr(defaults, n)]
        if changed:
            raise AlignkitError(
                f"train-rm does not use {', '.join(changed)} (policy-objective options); "
                "remove them from the config"
            )
        super().validate()
        missing = [p for p in [*self.data, *self.eval_data] if not Path(p).exists()]
        if missing:
            raise AlignkitError(f"data file(s) not found: {', '.join(missing)}")


class RewardTrainer(Trainer):
    """Trains a scalar reward model with the Bradley–Terry loss; `run()` does the whole job.

    OUTPUT/model holds the model (or LoRA adapter incl. the score head), its tokenizer and
    `alignkit_reward.json`, and loads with `alignkit.rewards.loading.load_reward_model(OUTPUT/model)`.
    """

    def __init__(self, config: RewardTrainConfig, accelerator: Accelerator | None = None) -> None:
        super().__init__(config, accelerator, method=BT_METHOD)

    def build_scorer(self, tokenizer) -> nn.Module:
        cfg = self.config
        model = load_sequence_classifier(
            cfg.model,
            lora=cfg.lora_settings(),
            pad_token_id=tokenizer.pad_token_id,
            trust_remote_code=cfg.trust_remote_code,
        )
        return RewardScorer(model)

    def step_loss(self, scorer, batch: PackedBatch, ref_table, q_diff) -> tuple[Tensor, dict]:
        """Bradley–Terry loss and metrics of one micro-batch of pairs (K=2)."""
        rewards = scorer(batch, autocast=self.autocast)  # (B, 2)
        ob = ObjectiveBatch(
            kind="pair",
            policy=SeqLogps(sum=rewards, count=batch.counts),
            labels=batch.labels,
            binary=batch.binary,
            high_quality=batch.high_quality,
            mask=batch.mask,
        )
        return compute_loss(self.method, ob, self.objective)

    def save_extra(self, model_dir: Path) -> None:
        marker = {
            "format": MARKER_FORMAT,
            "method": BRADLEY_TERRY,
            "base_model": resolve_model(self.config.model),
            "lora": self.config.lora,
            "max_length": self.config.max_length,
        }
        atomic_write_text(model_dir / MARKER_FILE, json.dumps(marker, indent=2))


def pair_accuracy(metrics: dict[str, float]) -> float | None:
    """Held-out pair accuracy from `Trainer.evaluate` metrics (None without eval data)."""
    value = metrics.get("eval/rewards/accuracies")
    return None if value is None else float(value)
