"""Options of the verbs that train, as dataclasses (also readable from a YAML file).

`TrainingOptions` holds what every training verb shares (`train`, `train-rm`, `ple`, `raft`,
`rrhf-online`): model, LoRA, optimizer, schedule, batching, precision, checkpoints.
`DataTrainingOptions` adds the options of training on a fixed dataset (`train`, `train-rm`);
`TrainConfig` adds the objective of `alignkit train`. A subclass may re-declare a field to
change its default or help text (the online verbs do); it keeps its place in `--help`.
Field help texts are the CLI's --help; `Literal` types are the flags' choices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from alignkit.data.config import DataOptions
from alignkit.data.labels import (
    HighQualityRule,
    LabelTransform,
    parse_high_quality_rule,
    parse_label_transform,
)
from alignkit.data.tokenize import Truncation
from alignkit.errors import AlignkitError
from alignkit.model_options import ALL_LINEAR, CHAT_HELP, LoraSettings, ModelOptions
from alignkit.objectives.base import ObjectiveConfig, Reduction, UnlikelihoodForm
from alignkit.options import check_ranges, opt
from alignkit.runs import chat_format, resolve_model_spec
from alignkit.scoring.forms import RQForm

Scheduler = Literal["cosine", "linear", "constant"]
LoraPreset = Literal["default", "ulma", "ple"]

# Named LoRA recipes (`--lora-preset`). A preset gives every LoRA field the user did not set
# (flag or YAML); a field set explicitly keeps its value.
LORA_PRESETS: dict[str, LoraSettings] = {
    # what current recipes use: every linear layer, rank 16, alpha 32
    "default": LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=[ALL_LINEAR]),
    # ULMA paper, sec. 5.1 "Models and Parameter Configuration": rank 8, alpha 32, dropout 0.1;
    # the paper names no modules: q_proj/v_proj is peft's default for Llama models
    "ulma": LoraSettings(r=8, alpha=32, dropout=0.1, target_modules=["q_proj", "v_proj"]),
    # PLE paper, sec. 6.1 "Implementation Details": rank 8, alpha 16, all linear modules (no
    # dropout given; 0.05 here)
    "ple": LoraSettings(r=8, alpha=16, dropout=0.05, target_modules=[ALL_LINEAR]),
}
# Default peak learning rates (`--lr` given always wins). Full fine-tuning: the DPO paper's
# 5e-6 (its reference code and TRL use 5e-7..5e-6). LoRA trains far fewer weights from B = 0
# and needs a larger step: the sweep `scripts/lr_sweep.yaml` (DPO + LoRA, 256 pairs of the
# embedded harder set, 3 seeds; docs/results.md) gave held-out DPO loss 0.680 at 2e-5, 0.626
# at 1e-4, 0.471 at 5e-4 and 0.488 at 2e-3 (one seed of 2e-3 lost accuracy: 0.63).
FULL_LR = 5e-6
LORA_LR = 5e-4

LORA_PRESET_HELP = (
    "LoRA recipe for the --lora-* values not given: default (r 16, alpha 32, dropout 0.05, "
    "all linear layers), ulma (the ULMA paper: r 8, alpha 32, dropout 0.1, q_proj v_proj), "
    "ple (the PLE paper: r 8, alpha 16, dropout 0.05, all linear layers)"
)


@dataclass
class TrackingOptions:
    """The option group of experiment tracking, shared by every verb that trains (`train`,
    `train-rm`, the online verbs, a study's cells through its `train:`/`online:` keys): which
    trackers, the run's name, the project and the folder local trackers write to."""

    report_to: list[str] = opt(
        ["none"],
        "trackers the run logs its options and metrics to: tensorboard, wandb, mlflow, or any "
        "other accelerate tracker; none = only OUTPUT/metrics.jsonl",
        metavar="NAME",
        group="tracking",
        kw_only=True,
    )
    run_name: str = opt(
        "",
        "the run's name in the trackers: the W&B / MLflow run, TensorBoard's folder under "
        "--tracker-dir (default: the name of the --output folder)",
        group="tracking",
        kw_only=True,
    )
    tracker_project: str = opt(
        "alignkit",
        "the trackers' project: the W&B project, the MLflow experiment, ...",
        group="tracking",
        kw_only=True,
    )
    tracker_dir: str = opt(
        "",
        "where local trackers write: TensorBoard events in TRACKER_DIR/RUN_NAME, W&B's files "
        "(default: OUTPUT/tracking; give one folder to every run of a team, then "
        "`tensorboard --logdir TRACKER_DIR` shows them side by side)",
        group="tracking",
        kw_only=True,
    )

    def trackers(self) -> list[str]:
        """The trackers to start (`none` dropped)."""
        return [t for t in self.report_to if t != "none"]

    def tracking_run_name(self, output: str) -> str:
        return self.run_name or os.path.basename(os.path.normpath(output)) or "alignkit"

    def tracking_dir(self, output: str) -> str:
        return self.tracker_dir or os.path.join(output, "tracking")


@dataclass
class TrainingOptions(TrackingOptions, ModelOptions):
    """Options shared by every verb that trains a model: `ModelOptions` (--model,
    --trust-remote-code, --precision), `TrackingOptions` (--report-to, --run-name,
    --tracker-project, --tracker-dir) and the training loop's."""

    output: str = opt("", "run directory: model, metrics.jsonl, checkpoints")
    lora: bool = opt(False, "train a LoRA adapter (peft) instead of all weights")
    lora_preset: LoraPreset = opt("default", LORA_PRESET_HELP)
    lora_r: int | None = opt(None, "LoRA rank (default: from --lora-preset)")
    lora_alpha: int | None = opt(None, "LoRA alpha (default: from --lora-preset)")
    lora_dropout: float | None = opt(None, "LoRA dropout (default: from --lora-preset)")
    lora_targets: list[str] | None = opt(
        None,
        f"module names LoRA adapts, or {ALL_LINEAR} (default: from --lora-preset)",
        metavar="NAME",
    )
    batch_size: int = opt(4, "examples per device per micro-batch")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    lr: float | None = opt(
        None,
        f"peak learning rate (AdamW). Default: {FULL_LR:g} for full fine-tuning, {LORA_LR:g} "
        "when a LoRA adapter is trained (--lora, or --model an adapter); config.json records "
        "the value used",
    )
    lr_scheduler: Scheduler = opt("cosine", "learning-rate schedule")
    warmup_ratio: float = opt(0.1, "fraction of steps of linear warm-up")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)")
    max_length: int = opt(1024, "max tokens of prompt + one response")
    seed: int = opt(42, "random seed (data order, init of LoRA, dropout)")
    resume: bool = opt(False, "continue from the newest checkpoint in --output")
    overwrite: bool = opt(
        False,
        "train into an --output that holds a finished run or checkpoints of other settings: "
        "the earlier run (model, summary, metrics, checkpoints) is deleted",
    )
    save_total_limit: int = opt(
        2,
        "checkpoints kept in OUTPUT/checkpoints: the oldest is deleted once a new one is fully "
        "written (at least 1)",
    )
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
        if os.path.exists(self.output) and not os.path.isdir(self.output):
            raise AlignkitError(f"--output {self.output} is a file: give a folder for the run")
        if self.resume and self.overwrite:
            raise AlignkitError("give --resume or --overwrite, not both")
        check_ranges(
            positive={
                "batch_size": self.batch_size,
                "grad_accum": self.grad_accum,
                "lr": self.lr,
                "save_total_limit": self.save_total_limit,
            }
        )
        if not 0 <= self.warmup_ratio < 1:
            raise AlignkitError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        from alignkit.models import check_model_spec

        check_model_spec(self.model)

    def __post_init__(self) -> None:
        self.apply_lora_preset()
        if self.lr is None:
            self.lr = LORA_LR if self.trains_adapter() else FULL_LR

    def trains_adapter(self) -> bool:
        """A LoRA adapter is trained: --lora, or --model is an adapter (a fresh adapter is
        trained on it, `alignkit.models.load_training_model`)."""
        if self.lora:
            return True
        try:
            return resolve_model_spec(self.model).adapter
        except AlignkitError:  # a bad --model: `validate` says what is wrong with it
            return False

    def apply_lora_preset(self) -> None:
        """Fill the LoRA fields left unset (None) from `lora_preset` (config.json then shows
        the values used)."""
        preset = LORA_PRESETS.get(self.lora_preset)
        if preset is None:
            raise AlignkitError(
                f"--lora-preset must be one of {', '.join(LORA_PRESETS)}, got {self.lora_preset!r}"
            )
        if self.lora_r is None:
            self.lora_r = preset.r
        if self.lora_alpha is None:
            self.lora_alpha = preset.alpha
        if self.lora_dropout is None:
            self.lora_dropout = preset.dropout
        if self.lora_targets is None:
            self.lora_targets = list(preset.target_modules)

    def lora_settings(self) -> LoraSettings | None:
        if not self.lora:
            return None
        self.apply_lora_preset()
        assert self.lora_r is not None and self.lora_alpha is not None
        assert self.lora_dropout is not None and self.lora_targets is not None
        return LoraSettings(
            self.lora_r, self.lora_alpha, self.lora_dropout, list(self.lora_targets)
        )


@dataclass
class DataTrainingOptions(DataOptions, TrainingOptions):
    """`TrainingOptions` of training on fixed data files (`train`, `train-rm`): with
    `DataOptions` (--data, --data-format, --skip-invalid)."""

    data: list[str] = opt(
        [],
        "training data files (jsonl/json/parquet/save_to_disk dirs); several allowed",
        metavar="PATH",
    )
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
    save_steps: int = opt(0, "also save a resumable checkpoint every N optimizer steps (0 = off)")
    save_minutes: float = opt(
        10.0,
        "save a resumable checkpoint (for --resume) after the first optimizer step that ends N "
        "minutes or more after the start or the last checkpoint (0 = off); a run shorter than "
        "that saves none: its final model is the result",
    )
    logging_steps: int = opt(1, "log metrics every N optimizer steps")
    eval_steps: int = opt(0, "evaluate --eval-data every N steps (0 = only before and after)")

    def validate(self) -> None:
        if not self.data:
            raise AlignkitError("no training data: give --data PATH (or `data:` in --config)")
        self.validate_training()
        check_ranges(
            positive={"logging_steps": self.logging_steps},
            non_negative={
                "max_steps": self.max_steps,
                "save_steps": self.save_steps,
                "save_minutes": self.save_minutes,
                "eval_steps": self.eval_steps,
            },
        )
        if self.max_steps == 0 and self.epochs <= 0:
            raise AlignkitError("give --max-steps > 0 or --epochs > 0")

    def objective(self) -> ObjectiveConfig:
        """The objective's hyper-parameters (defaults: an objective without options)."""
        return ObjectiveConfig()

    def label_options(self) -> tuple[LabelTransform | None, HighQualityRule | None]:
        """`--label-transform` and `--high-quality-if`, parsed (none without the options)."""
        return None, None


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
    label_transform: str = opt(
        "",
        "affine map of real-valued point labels to 'higher = better', e.g. '4 - z' for "
        "ratings 0-4 where 0 is best, 'z/4', '1 - z/4', '2*z + 1' (binary labels and pairs "
        "are not changed)",
        metavar="EXPR",
    )
    high_quality_if: str = opt(
        "",
        "rule on the real-valued score as written in the file (before --label-transform) "
        "that marks the high-quality samples (continuous ULMA's SFT term), e.g. 'z == 0', "
        "'z >= 3'; replaces the records' own high_quality",
        metavar="RULE",
    )
    q_diff: str = opt(
        "",
        "DEFT Q_diff file (OUTPUT/q_diff.safetensors of `alignkit select deft`) for the "
        "guidance term and the logged R_Q; default: counted on the training data. Implies "
        "--log-r-q",
        metavar="PATH",
    )
    log_r_q: bool = opt(
        False, "log DEFT's R_Q (deft/r_q) without gradient even when --deft-lambda is 0"
    )
    chat: bool | None = opt(None, CHAT_HELP)
    keep_dropout: bool | None = opt(
        None,
        "keep the model's dropout (and LoRA's) in training. Default: off (every dropout rate "
        "0, as the DPO reference code and TRL's disable_dropout do), so that the policy's "
        "log-probs in training match the reference's, computed without dropout; kept with "
        "--lora-preset ulma, the ULMA paper's recipe (LoRA dropout 0.1). --no-keep-dropout "
        "turns it off there too",
    )
    deft_form: RQForm = opt(
        "logprob",
        "R_Q form of the guidance term and the log: logprob = mean_t <Q_diff, log p_t>, "
        "prob = mean_t <Q_diff, p_t> (bounded)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.chat = chat_format(self.chat, self.model)
        if self.keep_dropout is None:  # the ULMA recipe trains with its LoRA dropout
            self.keep_dropout = self.lora and self.lora_preset == "ulma"

    def validate(self) -> None:
        super().validate()
        if self.beta <= 0:
            raise AlignkitError(f"--beta must be > 0, got {self.beta}")
        self.label_options()  # a bad expression fails before any loading
        if self.q_diff:
            from alignkit.scoring.deft import read_q_diff_meta

            read_q_diff_meta(self.q_diff)  # a Q_diff file of `select deft`, before any loading

    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(
            beta=self.beta,
            reduction=self.reduction,
            logz=self.logz,
            unlikelihood_form=self.unlikelihood_form,
            rrhf_sft_weight=self.rrhf_sft_weight,
            deft_lambda=self.deft_lambda,
        )

    def label_options(self) -> tuple[LabelTransform | None, HighQualityRule | None]:
        transform = parse_label_transform(self.label_transform) if self.label_transform else None
        rule = parse_high_quality_rule(self.high_quality_if) if self.high_quality_if else None
        return transform, rule
