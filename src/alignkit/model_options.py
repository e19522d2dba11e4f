"""The options of loading a model that configs name, torch-free (`alignkit VERB --help`
imports no torch): the option group `ModelOptions` (--model, --trust-remote-code,
--precision: every verb that loads a model inherits it), the compute precision and the LoRA
settings. `alignkit.models` loads the models and re-exports these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.options import opt

ALL_LINEAR = "all-linear"  # peft's shorthand: every linear layer but the output head

Precision = Literal["auto", "bf16", "fp32"]

TRUST_REMOTE_CODE_HELP = "allow model code from the model repository"
CHAT_HELP = (
    "render plain-text prompts as a user chat message through the tokenizer's chat template "
    "(when it has one); --no-chat: the text as it is. Default: the format the --model run was "
    "trained with (its config.json), else the chat template. One rule for train, generate, "
    "eval and the online verbs; the run's config.json records it"
)


@dataclass(kw_only=True)  # keyword-only: verbs keep their positional order
class ModelOptions:
    """The model a verb loads: --model, --trust-remote-code (passed to every loader of the
    verb) and --precision. A verb re-declares `model` for its own help or default (it keeps
    its place in --help)."""

    model: str = opt(
        "default",
        "HF model id, local path, run directory, or 'default' (embedded SmolLM2-135M-Instruct)",
    )
    trust_remote_code: bool = opt(False, TRUST_REMOTE_CODE_HELP)
    precision: Precision = opt(
        "auto", "compute precision: bf16 autocast, fp32, or auto (bf16 where supported)"
    )


@dataclass
class LoraSettings:
    """LoRA adapter settings (peft). Defaults follow the ULMA paper: r=8, alpha=32, q/v."""

    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def peft_targets(self) -> list[str] | str:
        """`target_modules` for peft: a lone `all-linear` as peft's string shorthand (a list
        `['all-linear']` would look for modules of that name)."""
        return (
            ALL_LINEAR if list(self.target_modules) == [ALL_LINEAR] else list(self.target_modules)
        )

    def peft_config(self, task_type: str, **extra: Any):
        """The peft `LoraConfig` of these settings for `task_type` (CAUSAL_LM, SEQ_CLS)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.peft_targets(),
            task_type=task_type,
            **extra,
        )
