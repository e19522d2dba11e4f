"""Options of the online verbs (`alignkit ple`, `raft`, `rrhf-online`), as dataclasses.

`OnlineConfig` holds what the three share; `PLEConfig`, `RAFTConfig` and `RRHFOnlineConfig`
add their own, so each verb's --help lists only flags that have an effect for it. Training
options keep the names of `alignkit train` (`TrainConfig`) and are handed to the core
`Trainer` through `train_config()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from alignkit.errors import AlignkitError
from alignkit.inference.generation import SamplingConfig
from alignkit.models import LoraSettings
from alignkit.online.generators import BACKENDS
from alignkit.online.principles import MODES
from alignkit.options import opt
from alignkit.train.config import TrainConfig

ALL_LINEAR = "all-linear"


@dataclass
class OnlineConfig:
    """Options shared by the online methods. Field help texts are the CLI's --help."""

    queries: str = opt(
        "",
        "queries file (jsonl/json/parquet): records with a 'prompt' (text or chat "
        "messages) and an optional 'category'",
        metavar="PATH",
    )
    reward_model: str = opt(
        "",
        "reward model: a sequence-classification model directory or HF id (e.g. from "
        "`alignkit train-rm`), or 'package.module:function' scoring (prompts, responses)",
        metavar="SPEC",
    )
    output: str = opt("", "run directory: generations/, metrics.jsonl, checkpoints/, model/")
    model: str = opt(
        "default", "policy: HF model id, local path, or 'default' (embedded SmolLM2-135M-Instruct)"
    )
    sft_data: list[str] = opt(
        [],
        "optional demonstrations or pairs for an initial SFT of the policy (the paper's "
        "first step; `alignkit train --method sft` into OUTPUT/sft, skipped when done)",
        metavar="PATH",
    )
    sft_epochs: float = opt(1.0, "epochs of the initial SFT on --sft-data")
    iterations: int = opt(10, "online iterations, each: sample -> score -> train")
    queries_per_iteration: int = opt(
        16, "queries per iteration, drawn from seeded passes over the query set"
    )
    max_prompt_tokens: int = opt(
        256, "drop queries longer than this many tokens, and report how many (0 = keep all)"
    )
    chat: bool = opt(
        True,
        "send plain-text queries as a user chat message when the tokenizer has a chat "
        "template (--no-chat: use the text as it is)",
    )
    max_new_tokens: int = opt(128, "tokens generated per response at most")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling: keep the smallest token set with this mass")
    top_k: int = opt(0, "sample among the k most likely tokens only (0 = off)")
    generator: str = opt(
        "auto",
        "generation backend: hf (transformers generate), vllm (needs vllm, a GPU and "
        "one process), auto (vllm when usable, else hf)",
        choices=list(BACKENDS),
    )
    generation_batch_size: int = opt(16, "prompts per generate call (hf backend)")
    vllm_gpu_memory_utilization: float = opt(
        0.3, "fraction of GPU memory the vLLM engine may reserve (vllm backend)"
    )
    reward_batch_size: int = opt(16, "responses per forward pass of a model reward")
    replay: str = opt(
        "none",
        "train each iteration on its own samples (none) or on every sample generated "
        "so far (all: the PLE paper's growing D_train)",
        choices=["none", "all"],
    )
    eval_queries: str = opt(
        "",
        "held-out queries: mean reward of greedy unguided responses before training, "
        "after it and every --eval-every iterations",
        metavar="PATH",
    )
    eval_every: int = opt(0, "evaluate --eval-queries every N iterations (0 = before and after)")
    lora: bool = opt(False, "train a LoRA adapter (peft) instead of all weights")
    lora_r: int = opt(8, "LoRA rank (PLE paper: 8)")
    lora_alpha: int = opt(16, "LoRA alpha (PLE paper: 16)")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    lora_targets: list[str] = opt(
        [ALL_LINEAR],
        "module names LoRA adapts; all-linear = every linear layer but the head",
        metavar="NAME",
    )
    lr: float = opt(1e-5, "learning rate (AdamW)")
    lr_scheduler: str = opt(
        "constant",
        "learning-rate schedule over all iterations' steps",
        choices=["cosine", "linear", "constant"],
    )
    warmup_ratio: float = opt(0.0, "fraction of steps of linear warm-up (cosine, linear)")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)")
    batch_size: int = opt(4, "queries (with all their responses) per device per micro-batch")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    max_length: int = opt(1024, "max tokens of prompt + one response when training")
    reduction: str = opt(
        "sum", "sum or mean of token log-probs in the SFT terms", choices=["sum", "mean"]
    )
    seed: int = opt(42, "random seed (query order, sampling, LoRA init)")
    resume: bool = opt(False, "continue from the newest checkpoint in --output")
    save_every: int = opt(1, "save a resumable checkpoint every N iterations (0 = off)")
    save_total_limit: int = opt(2, "checkpoints kept (oldest deleted first)")
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
        "third more compute",
    )
    save_model: bool = opt(True, "save the final policy (save_pretrained) into OUTPUT/model")

    def validate(self) -> None:
        if not self.queries:
            raise AlignkitError("no queries: give --queries PATH")
        if not self.output:
            raise AlignkitError("no run directory: give --output DIR")
        positive = {
            "iterations": self.iterations,
            "queries_per_iteration": self.queries_per_iteration,
            "max_new_tokens": self.max_new_tokens,
            "generation_batch_size": self.generation_batch_size,
            "reward_batch_size": self.reward_batch_size,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lr": self.lr,
            "temperature": self.temperature,
            "sft_epochs": self.sft_epochs,
        }
        for name, value in positive.items():
            if value <= 0:
                raise AlignkitError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if min(self.max_prompt_tokens, self.eval_every, self.save_every, self.top_k) < 0:
            raise AlignkitError(
                "--max-prompt-tokens, --eval-every, --save-every and --top-k must be >= 0"
            )
        if not 0 < self.top_p <= 1:
            raise AlignkitError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise AlignkitError("--vllm-gpu-memory-utilization must be in (0, 1]")
        if not 0 <= self.warmup_ratio < 1:
            raise AlignkitError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        self.validate_method()

    def validate_method(self) -> None:
        """Checks of the method's own options (subclasses)."""

    def sampling(self, seed: int | None = None) -> SamplingConfig:
        """How the policy samples during training iterations."""
        return SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=True,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            batch_size=self.generation_batch_size,
            seed=seed,
        )

    def lora_settings(self) -> LoraSettings | None:
        """peft settings; a lone `all-linear` is passed to peft as its string shorthand."""
        if not self.lora:
            return None
        targets: list[str] | str = list(self.lora_targets)
        if targets == [ALL_LINEAR]:
            targets = ALL_LINEAR
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, targets)  # type: ignore[arg-type]

    def train_config(self, **overrides) -> TrainConfig:
        """The core `TrainConfig` carrying every training option of the same name."""
        ours = {f.name for f in dataclasses.fields(self)}
        shared = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig) if f.name in ours
        }
        values = {"method": "sft", "data": list(self.sft_data), **shared, **overrides}
        return TrainConfig(**values)


@dataclass
class PLEConfig(OnlineConfig):
    """PLE: progressively label enhancement."""

    replay: str = opt(
        "all",
        "train each iteration on every sample generated so far (all: Algorithm 1 of "
        "the PLE paper, D_train grows) or on the iteration's own samples only (none)",
        choices=["none", "all"],
    )
    principle: str = opt(
        "general",
        "principle p: a built-in name (general, sentiment, summarization) or a text file",
        metavar="NAME|FILE",
    )
    principle_mode: str = opt(
        "system",
        "how p is added for y_p: system (a system message; chat models) or prefix "
        "(prepended to the query text)",
        choices=list(MODES),
    )
    tau0: float = opt(0.2, "initial threshold tau on s_p - s (rank loss above, weighted SFT below)")
    alpha: float = opt(0.9, "threshold decay per iteration: tau <- alpha * tau")
    rank_form: str = opt(
        "paper",
        "ranking loss: paper (avg logp(y) - avg logp(y_p)) or hinge (RRHF's "
        "max(0, avg logp(y) - avg logp(y_p)))",
        choices=["paper", "hinge"],
    )

    def validate_method(self) -> None:
        if not 0 < self.alpha <= 1:
            raise AlignkitError(f"--alpha must be in (0, 1], got {self.alpha}")


@dataclass
class RAFTConfig(OnlineConfig):
    """RAFT: reward-ranked fine-tuning."""

    num_samples: int = opt(4, "responses sampled per query (K; the PLE paper's RAFT: 4)")
    selection: str = opt(
        "per-prompt",
        "what to fine-tune on: the best sample of each query (per-prompt) or the "
        "top --top-fraction of all samples of the iteration (global)",
        choices=["per-prompt", "global"],
    )
    top_fraction: float = opt(0.25, "fraction of all samples kept by --selection global")

    def validate_method(self) -> None:
        if self.num_samples < 1:
            raise AlignkitError(f"--num-samples must be >= 1, got {self.num_samples}")
        if not 0 < self.top_fraction <= 1:
            raise AlignkitError(f"--top-fraction must be in (0, 1], got {self.top_fraction}")


@dataclass
class RRHFOnlineConfig(OnlineConfig):
    """Online RRHF: ranking + SFT on freshly sampled, scored responses."""

    num_samples: int = opt(4, "responses sampled and scored per query (K >= 2)")
    rrhf_sft_weight: float = opt(1.0, "weight of the SFT term on the best response")

    def validate_method(self) -> None:
        if self.num_samples < 2:
            raise AlignkitError(f"--num-samples must be >= 2 for RRHF, got {self.num_samples}")
