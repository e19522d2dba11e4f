"""`TrainConfig`: every option of `alignkit train` (also readable from a YAML file)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.errors import AlignkitError
from alignkit.models import LoraSettings
from alignkit.options import opt


@dataclass
class TrainConfig:
    """Options of one training run. Field help texts are the CLI's --help."""

    method: str = opt("dpo", "objective to train with (see `alignkit train --help` for the list)")
    data: list[str] = opt(
        [],
        "training data files (jsonl/json/parquet/save_to_disk dirs); several allowed",
        metavar="PATH",
    )
    output: str = opt("", "run directory: model, metrics.jsonl, checkpoints")
    model: str = opt(
        "default", "HF model id, local path, or 'default' (embedded SmolLM2-135M-Instruct)"
    )
    data_format: str = opt(
        "auto",
        "format of the data files",
        choices=["auto", "hh", "trl-pair", "point", "demonstration", "multi"],
    )
    eval_data: list[str] = opt(
        [],
        "held-out data evaluated before and after training (and every --eval-steps)",
        metavar="PATH",
    )
    lora: bool = opt(False, "train a LoRA adapter (peft) instead of all weights")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha")
    lora_dropout: float = opt(0.1, "LoRA dropout")
    lora_targets: list[str] = opt(
        ["q_proj", "v_proj"], "module names LoRA adapts, or all-linear", metavar="NAME"
    )
    beta: float = opt(0.1, "beta: strength of the KL constraint to the reference (DPO family)")
    reduction: str = opt(
        "sum", "sum or mean of token log-probs per response", choices=["sum", "mean"]
    )
    logz: float = opt(0.0, "point-wise DPO constant c = beta*log Z(x)")
    unlikelihood_form: str = opt(
        "paper",
        "unlikelihood form: paper (unbounded) or token (-log(1-p) per token)",
        choices=["paper", "token"],
    )
    rrhf_sft_weight: float = opt(1.0, "weight of the SFT term on the best response (rrhf)")
    deft_lambda: float = opt(
        0.0, "DEFT guidance: add -lambda * R_Q(x, chosen) to the loss (0 = off)"
    )
    epochs: float = opt(1.0, "passes over the data (ignored when --max-steps > 0)")
    max_steps: int = opt(0, "optimizer steps to run; 0 = derive from --epochs")
    batch_size: int = opt(4, "examples per device per micro-batch")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    lr: float = opt(5e-6, "peak learning rate (AdamW)")
    lr_scheduler: str = opt(
        "cosine", "learning-rate schedule", choices=["cosine", "linear", "constant"]
    )
    warmup_ratio: float = opt(0.1, "fraction of steps of linear warm-up")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)")
    max_length: int = opt(1024, "max tokens of prompt + one response")
    truncation: str = opt(
        "truncate",
        "over-long examples: truncate (prompt from the left, then response) or drop",
        choices=["truncate", "drop"],
    )
    seed: int = opt(42, "random seed (data order, init of LoRA, dropout)")
    resume: bool = opt(False, "continue from the newest checkpoint in --output")
    save_steps: int = opt(0, "save a resumable checkpoint every N optimizer steps (0 = off)")
    save_total_limit: int = opt(2, "checkpoints kept (oldest deleted first)")
    logging_steps: int = opt(1, "log metrics every N optimizer steps")
    eval_steps: int = opt(0, "evaluate --eval-data every N steps (0 = only before and after)")
    precision: str = opt(
        "auto",
        "compute precision: bf16 autocast, fp32, or auto (bf16 where supported)",
        choices=["auto", "bf16", "fp32"],
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

    def validate(self) -> None:
        if not self.data:
            raise AlignkitError("no training data: give --data PATH (or `data:` in --config)")
        if not self.output:
            raise AlignkitError("no run directory: give --output DIR")
        positive = {
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lr": self.lr,
            "logging_steps": self.logging_steps,
        }
        for name, value in positive.items():
            if value <= 0:
                raise AlignkitError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.max_steps < 0 or self.save_steps < 0 or self.eval_steps < 0:
            raise AlignkitError("--max-steps, --save-steps and --eval-steps must be >= 0")
        if self.max_steps == 0 and self.epochs <= 0:
            raise AlignkitError("give --max-steps > 0 or --epochs > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise AlignkitError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.beta <= 0:
            raise AlignkitError(f"--beta must be > 0, got {self.beta}")

    def lora_settings(self) -> LoraSettings | None:
        if not self.lora:
            return None
        return LoraSettings(
            self.lora_r, self.lora_alpha, self.lora_dropout, list(self.lora_targets)
        )
