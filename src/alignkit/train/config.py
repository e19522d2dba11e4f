"""Options of the verbs that train, as dataclasses (also readable from a YAML file).

`TrainingOptions` holds what every training verb shares (`train`, `train-rm`, `ple`, `raft`,
`rrhf-online`): model, LoRA, optimizer, schedule, batching, precision, checkpoints.
`DataTrainingOptions` adds the options of training on a fixed dataset (`train`, `train-rm`);
`TrainConfig` adds the objective of `alignkit train`. A subclass may re-declare a field to
change its default or help text (the online verbs do); it keeps its place in `--help`.
Field help texts are the CLI's --help; `Literal` types are the flags' choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alignkit.data.formats import DataFormat
from alignkit.data.tokenize import Truncation
from alignkit.errors import AlignkitError
from alignkit.models import ALL_LINEAR, LoraSettings, Precision, check_model_spec
from alignkit.objectives.base import ObjectiveConfig, Reduction, UnlikelihoodForm
from alignkit.options import opt

Scheduler = Literal["cosine", "linear", "constant"]

# The LoRA recipe of the ULMA paper (and alignkit's default): rank 8, alpha 32, q/v projections.
ULMA_LORA_TARGETS = ["q_proj", "v_proj"]


@dataclass
class TrainingOptions:
    """Options shared by every verb that trains a model."""

    output: str = opt("", "run directory: model, metrics.jsonl, checkpoints")
    model: str = opt(
        "default",
        "HF model id, local path, run directory, or 'default' (embedded SmolLM2-135M-Instruct)",
    )
    lora: bool = opt(False, "train a LoRA adapter (peft) instead of all weights")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha")
    lora_dropout: float = opt(0.1, "LoRA dropout")
    lora_targets: list[str] = opt(
        list(ULMA_LORA_TARGETS),
        f"module names LoRA adapts, or {ALL_LINEAR}",
        metavar="NAME",
    )
    batch_size: int = opt(4, "examples per device per micro-batch")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    lr: float = opt(5e-6, "peak learning rate (AdamW)")
    lr_scheduler: Scheduler = opt("cosine", "learning-rate schedule")
    warmup_ratio: float = opt(0.1, "fraction of steps of linear warm-up")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)")
    max_length: int = opt(1024, "max tokens of prompt + one response")
    seed: int = opt(42, "random seed (data order, init of LoRA, dropout)")
    resume: bool = opt(False, "continue from the newest checkpoint in --output")
    save_total_limit: int = opt(2, "checkpoints kept (oldest deleted first)")
    precision: Precision = opt(
        "auto", "compute precision: bf16 autocast, fp32, or auto (bf16 where supported)"
    )
    report_to: list[str] = opt(
        ["none"],
        "tracking backends for accelerate (tensorboard, wandb, ...) or none",
        metavar="NAME",
    )
    trust_remote_code: bool = opt(False, "allow model code from the model repository")
    gradient_checkpointing: bool = opt(
        False,
        "recompute activations in the backward pass: much less activation memory for about a "
        "third more compute (long sequences, bigger models)",
    )
    save_model: bool = opt(True, "save the final model (save_pretrained) into --output")

    def validate_training(self) -> None:
        """Checks every training verb shares (each verb's `validate` calls it)."""
        if not self.output:
            raise AlignkitError("no run directory: give --output DIR")
        positive = {
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lr": self.lr,
        }
        for name, value in positive.items():
            if value <= 0:
                raise AlignkitError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise AlignkitError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        check_model_spec(self.model)

    def lora_settings(self) -> LoraSettings | None:
        if not self.lora:
            return None
        return LoraSettings(
            self.lora_r, self.lora_alpha, self.lora_dropout, list(self.lora_targets)
        )


@dataclass
class DataTrainingOptions(TrainingOptions):
    """`TrainingOptions` of training on fixed data files (`train`, `train-rm`)."""

    data: list[str] = opt(
        [],
        "training data files (jsonl/json/parquet/save_to_disk dirs); several allowed",
        metavar="PATH",
    )
    data_format: DataFormat = opt("auto", "format of the data files")
    eval_data: list[str] = opt(
        [],
        "held-out data evaluated before and after training (and every --eval-steps)",
        metavar="PATH",
    )
    epochs: float = opt(1.0, "passes over the data (ignored when --max-steps > 0)")
    max_steps: int = opt(0, "optimizer steps to run; 0 = derive from --epochs")
    truncation: Truncation = opt(
        "truncate",
        "over-long examples: truncate (prompt from the left, then response) or drop",
    )
    save_steps: int = opt(0, "save a resumable checkpoint every N optimizer steps (0 = off)")
    logging_steps: int = opt(1, "log metrics every N optimizer steps")
    eval_steps: int = opt(0, "evaluate --eval-data every N steps (0 = only before and after)")

    def validate(self) -> None:
        if not self.data:
            raise AlignkitError("no training data: give --data PATH (or `data:` in --config)")
        self.validate_training()
        if self.logging_steps <= 0:
            raise AlignkitError(f"--logging-steps must be > 0, got {self.logging_steps}")
        if self.max_steps < 0 or self.save_steps < 0 or self.eval_steps < 0:
            raise AlignkitError("--max-steps, --save-steps and --eval-steps must be >= 0")
        if self.max_steps == 0 and self.epochs <= 0:
            raise AlignkitError("give --max-steps > 0 or --epochs > 0")

    def objective(self) -> ObjectiveConfig:
        """The objective's hyper-parameters (defaults: an objective without options)."""
        return ObjectiveConfig()


@dataclass
class TrainConfig(DataTrainingOptions):
    """Options of one `alignkit train` run."""

    method: str = opt("dpo", "objective to train with (see `alignkit train --help` for the list)")
    beta: float = opt(0.1, "beta: strength of the KL constraint to the reference (DPO family)")
    reduction: Reduction = opt("sum", "sum or mean of token log-probs per response")
    logz: float = opt(0.0, "point-wise DPO constant c = beta*log Z(x)")
    unlikelihood_form: UnlikelihoodForm = opt(
        "paper", "unlikelihood form: paper (unbounded) or token (-log(1-p) per token)"
    )
    rrhf_sft_weight: float = opt(1.0, "weight of the SFT term on the best response (rrhf)")
    deft_lambda: float = opt(
        0.0, "DEFT guidance: add -lambda * R_Q(x, chosen) to the loss (0 = off)"
    )

    def validate(self) -> None:
        super().validate()
        if self.beta <= 0:
            raise AlignkitError(f"--beta must be > 0, got {self.beta}")

    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(
            beta=self.beta,
            reduction=self.reduction,
            logz=self.logz,
            unlikelihood_form=self.unlikelihood_form,
            rrhf_sft_weight=self.rrhf_sft_weight,
            deft_lambda=self.deft_lambda,
        )
