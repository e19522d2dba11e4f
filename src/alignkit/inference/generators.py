"""Generation backends of the online loop behind one small interface.

`Generator.generate(prompts, sampling, n)` returns `n` sampled `Completion`s (text, and
whether the model stopped by itself) per prompt and `Generator.sync(model)` makes the
backend sample from the policy's current weights.
- `HFGenerator` wraps `alignkit.inference.generation.generate_completions` (batched `model.generate`,
  left padding) on the policy module itself, so `sync` has nothing to do.
- `VLLMGenerator` runs a `vllm.LLM` next to the trained model (one GPU, one process) and
  copies the policy's weights into it after every iteration (LoRA adapters are merged first).
  vLLM is imported only when this backend is chosen.
- `EndpointGenerator` (`alignkit.inference.remote`, `--endpoint URL`) asks an OpenAI-compatible
  server; its `sync` loads the trained LoRA adapter into a vLLM server, or warns that the
  samples come from the server's fixed weights.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import nn

from alignkit.data.records import Prompt
from alignkit.data.tokenize import tokenize_prompts
from alignkit.errors import AlignkitError
from alignkit.inference.generation import (
    Completion,
    SamplingConfig,
    eos_token_ids,
    generate_completions,
    sampled_ids,
)
from alignkit.models import is_peft

BACKENDS = ("auto", "hf", "vllm")


class Generator(Protocol):
    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, n: int = 1
    ) -> list[list[Completion]]:
        """`n` responses to each prompt, in prompt order."""
        ...

    def sync(self, model: nn.Module) -> None:
        """Make later samples come from `model`'s current weights."""
        ...


def _group(flat: Sequence[Completion], n: int) -> list[list[Completion]]:
    return [list(flat[i : i + n]) for i in range(0, len(flat), n)]


class HFGenerator:
    """Samples with Hugging Face `generate` on the policy module being trained."""

    def __init__(
        self, model: nn.Module, tokenizer, autocast: torch.dtype | None, progress: bool = True
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.autocast = autocast
        self.progress = progress

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, n: int = 1
    ) -> list[list[Completion]]:
        repeated = [p for p in prompts for _ in range(n)]
        flat = generate_completions(
            self.model, self.tokenizer, repeated, sampling, self.autocast, self.progress
        )
        return _group(flat, n)

    def sync(self, model: nn.Module) -> None:
        self.model = model  # the same module object: its weights are already current


# ----------------------------------------------------------------------------- vLLM


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backend(requested: str, world: int, cuda: bool, has_vllm: bool) -> str:
    """`hf` or `vllm` for the `--generator` choice; errors if vllm cannot be used."""
    if requested == "hf":
        return "hf"
    usable = has_vllm and cuda and world == 1
    if requested == "auto":
        return "vllm" if usable else "hf"
    if requested == "vllm":
        if not usable:
            missing = [
                text
                for ok, text in (
                    (has_vllm, "the vllm package"),
                    (cuda, "a CUDA GPU"),
                    (world == 1, "a single-process run"),
                )
                if not ok
            ]
            raise AlignkitError(
                f"--generator vllm needs {', '.join(missing)}; use --generator hf (or auto)"
            )
        return "vllm"
    raise AlignkitError(
        f"--generator must be one of {', '.join(BACKENDS)} or a server URL, got {requested!r}"
    )


def sampling_params_kwargs(sampling: SamplingConfig, n: int) -> dict[str, Any]:
    """`vllm.SamplingParams` arguments equivalent to `sampling` with `n` samples per prompt.

    Greedy decoding is temperature 0 in vLLM; top_k 0 (off here) is -1 there.
    """
    kwargs: dict[str, Any] = {
        "n": n,
        "max_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
        "skip_special_tokens": True,
    }
    if sampling.do_sample:
        kwargs.update(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
        )
    else:
        kwargs.update(temperature=0.0, top_p=1.0, top_k=-1)
    return kwargs


def engine_kwargs(
    model_path: str, gpu_memory_utilization: float, seed: int, max_model_len: int
) -> dict[str, Any]:
    """`vllm.LLM` arguments: bf16 weights, prefix caching (PLE/RAFT repeat prompts)."""
    return {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": "bfloat16",
        "gpu_memory_utilization": gpu_memory_utilization,
        "seed": seed,
        "max_model_len": max_model_len,
        "enable_prefix_caching": True,
    }


def _lora_deltas(base: nn.Module) -> dict[str, torch.Tensor]:
    """Parameter name -> the active LoRA adapters' weight delta (scale * B @ A)."""
    deltas: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if not (hasattr(module, "get_delta_weight") and hasattr(module, "lora_A")):
            continue
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                key = f"{name}.weight"
                delta = module.get_delta_weight(adapter)
                deltas[key] = deltas[key] + delta if key in deltas else delta
    return deltas


@torch.no_grad()
def policy_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the policy as a plain checkpoint would name them.

    A LoRA model is yielded with its adapter merged in, under the base model's parameter
    names, without adapter tensors. The merge is computed (W + delta), never done in place,
    so the trained weights do not drift from repeated merge/unmerge rounding.
    """
    if not is_peft(model):
        yield from ((k, v.detach()) for k, v in model.state_dict().items())
        return
    base = model.get_base_model()
    deltas = _lora_deltas(base)
    for name, tensor in base.state_dict().items():
        if "lora_" in name or "modules_to_save" in name:
            continue
        clean = name.replace(".base_layer.", ".")
        yield clean, (tensor + deltas[clean].to(tensor.dtype)) if clean in deltas else tensor


def _engine_model(llm: Any) -> Any:
    """The in-process torch model of a vLLM engine (the path TRL's colocate mode uses)."""
    try:
        return llm.llm_engine.model_executor.driver_worker.model_runner.model
    except AttributeError as exc:
        raise AlignkitError(
            "cannot reach the model inside this vLLM version to update its weights; "
            "set VLLM_ENABLE_V1_MULTIPROCESSING=0 or use --generator hf"
        ) from exc


class VLLMGenerator:
    """Samples with vLLM; the policy's weights are pushed into the engine by `sync`."""

    def __init__(self, tokenizer, engine: dict[str, Any], llm: Any = None) -> None:
        self.tokenizer = tokenizer
        if llm is None:
            # the engine must live in this process for `sync` to reach its weights
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            llm = importlib.import_module("vllm").LLM(**engine)
        self.llm = llm

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, n: int = 1
    ) -> list[list[Completion]]:
        vllm = importlib.import_module("vllm")
        params = vllm.SamplingParams(**sampling_params_kwargs(sampling, n))
        # token ids, not text: the chat template already holds BOS/special tokens
        inputs = [{"prompt_token_ids": ids} for ids in tokenize_prompts(prompts, self.tokenizer)]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        eos = eos_token_ids(self.tokenizer)
        return [
            [
                Completion(
                    c.text.strip(),
                    c.finish_reason != "length",
                    sampled_ids(list(c.token_ids), eos, c.finish_reason != "length"),
                )
                for c in out.outputs
            ]
            for out in outputs
        ]

    def sync(self, model: nn.Module) -> None:
        _engine_model(self.llm).load_weights(policy_weights(model))
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()  # cached prefixes were computed with the old weights


def greedy(sampling: SamplingConfig) -> SamplingConfig:
    """The same settings, decoded greedily (held-out evaluation)."""
    return replace(sampling, do_sample=False)
