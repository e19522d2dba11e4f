"""Run directories and model specs: the one place that knows what `--model X` can name.

A model spec is one of
- `default`: the embedded SmolLM2-135M-Instruct (converted on first use by `alignkit.models`);
- a Hugging Face id (`HuggingFaceTB/SmolLM2-135M-Instruct`), passed through to transformers;
- a model folder (`config.json`), or a peft adapter folder (`adapter_config.json`);
- a run directory of `alignkit train`, `train-rm` or an online verb (`summary.json` + `model/`),
  which stands for its `model/` folder.

`resolve_model_spec` reads only small JSON files, so every verb calls it while it validates its
options: a bad spec fails before any model is loaded or anything is generated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text, iter_jsonl

DEFAULT_MODEL = "default"
REWARD_MARKER = "alignkit_reward.json"  # written into the model folder by `alignkit train-rm`
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from.

    `path`: the weights folder or id (a LoRA run: the adapter folder); `base`: a LoRA adapter's
    base model, or the model a full-weights run started from (None: not known);
    `run_config`: the run's `config.json` (empty outside a run); `reward_marker`: the
    `alignkit_reward.json` of a reward model trained by alignkit (None otherwise).
    """

    name: str
    path: str
    base: str | None = None
    adapter: bool = False
    run_config: dict[str, Any] = field(default_factory=dict, compare=False)
    reward_marker: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def weights(self) -> str:
        """The model whose weights are loaded first (a LoRA adapter's base)."""
        return str(self.base) if self.adapter else self.path

    @property
    def adapter_path(self) -> str | None:
        return self.path if self.adapter else None

    @property
    def tokenizer_path(self) -> str:
        """The adapter folder when it has its own tokenizer, else its base's (which may be a
        run directory or another adapter: resolved in turn)."""
        if self.adapter and not has_tokenizer(self.path):
            return resolve_model_spec(str(self.base)).tokenizer_path
        return self.path

    @property
    def root_weights(self) -> str:
        """The full-weights model at the bottom of a chain of adapters (a LoRA run trained
        from another LoRA run): the architecture an inference engine is started with."""
        if not self.adapter:
            return self.path
        return resolve_model_spec(str(self.base)).root_weights

    def describe(self) -> str:
        if self.adapter:
            return f"adapter {self.path} on base model {self.base}"
        return self.path


def read_json(path: str | Path) -> dict[str, Any]:
    """A small JSON object file; {} when absent, an error naming the file when unreadable."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AlignkitError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / name).is_file() for name in _TOKENIZER_FILES)


def is_run_dir(path: str | Path) -> bool:
    """A run directory of alignkit: `summary.json` (finished) or `metrics.jsonl` (started)."""
    return (Path(path) / "summary.json").is_file() or (Path(path) / "metrics.jsonl").is_file()


def _looks_like_path(spec: str) -> bool:
    """A spec that can only be a local path (an HF id is `name` or `org/name`)."""
    return spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1


def resolve_model_spec(spec: str) -> ModelSpec:
    """The `ModelSpec` of `--model`/`--reward-model`/`--ref` SPEC; raises `AlignkitError`
    with a fix for a folder that holds no model, a run without a saved model, or an adapter
    whose base is unknown."""
    if not spec:
        raise AlignkitError("empty model spec: give 'default', a Hugging Face id or a folder")
    if spec == DEFAULT_MODEL:
        return ModelSpec(spec, spec)
    path = Path(os.path.expanduser(spec))
    if not path.exists():
        if _looks_like_path(spec):
            raise AlignkitError(
                f"model {spec!r}: no such file or directory (give 'default', a Hugging Face "
                "id, a model folder or a run directory)"
            )
        return ModelSpec(spec, spec)
    if not path.is_dir():
        raise AlignkitError(f"model {spec!r} is a file; give its folder (with config.json)")
    if is_run_dir(path):
        if not (path / "model").is_dir():
            raise AlignkitError(
                f"{spec} is a run directory without a saved model ({path / 'model'} is "
                "missing): the run did not finish, or ran with --no-save-model"
            )
        path = path / "model"
    run = path.parent
    in_run = (run / "summary.json").is_file()
    summary = read_json(run / "summary.json") if in_run else {}
    run_config = read_json(run / "config.json") if in_run else {}
    marker = read_json(path / REWARD_MARKER) or None
    if (path / "adapter_config.json").is_file():
        base = (
            (marker or {}).get("base_model")
            or summary.get("base_model")
            or read_json(path / "adapter_config.json").get("base_model_name_or_path")
        )
        if not base:
            raise AlignkitError(
                f"{path} is a peft adapter but its base model is unknown: neither "
                f"{run / 'summary.json'} (key base_model) nor adapter_config.json "
                "(key base_model_name_or_path) names it"
            )
        return ModelSpec(spec, str(path), str(base), True, run_config, marker)
    if not (path / "config.json").is_file():
        raise AlignkitError(
            f"{path} holds no model: no config.json (a model folder), adapter_config.json (a "
            "peft adapter) or model/ (a run directory of alignkit)"
        )
    return ModelSpec(spec, str(path), summary.get("base_model"), False, run_config, marker)


def chat_format(chat: bool | None, model: str) -> bool:
    """Whether plain-text prompts are sent to `model` as a user chat message (rendered by the
    chat template, when its tokenizer has one): `chat` when given (--chat / --no-chat), else
    the format the run directory `model` was trained or sampled with (its config.json `chat`),
    else True. A run of `alignkit train` written before the format was recorded (config.json
    without `chat`) trained on plain text: False."""
    if chat is not None:
        return chat
    try:
        recorded = resolve_model_spec(model).run_config
    except AlignkitError:  # a bad --model: the verb's validation says what is wrong
        return True
    if "chat" in recorded:
        return bool(recorded["chat"])
    return "method" not in recorded  # an older `train` run: plain text


def folder_files(path: Path) -> list[Any]:
    """(name, bytes, mtime) of the files in a folder (or of one file): what tells a model
    retrained into the same folder apart."""
    items = sorted(path.iterdir()) if path.is_dir() else [path]
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in items if p.is_file()]


def digest(settings: dict[str, Any]) -> str:
    """A short stable digest of plain settings (JSON), e.g. what a checkpoint must share with
    the run that resumes it."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_fingerprint(spec: Any) -> Any:
    """A model spec (or any option value) as it enters the cache key: local models and files
    with their files' sizes and times, anything else as it is."""
    if not isinstance(spec, str) or not spec or not os.path.exists(os.path.expanduser(spec)):
        return spec
    try:
        model = resolve_model_spec(spec)
    except AlignkitError:
        return [spec, folder_files(Path(os.path.expanduser(spec)))]
    parts = (
        [spec, model.path, folder_files(Path(model.path))] if Path(model.path).exists() else [spec]
    )
    if model.base:
        parts.append(spec_fingerprint(model.base))
    return parts


# ------------------------------------------------------------------ run directories


def absolute_if_local(name: str) -> str:
    """A local model path made absolute (so run directories work from anywhere)."""
    return os.path.abspath(name) if os.path.exists(name) else name


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget logged rows past the checkpoint; on a fresh run, start empty."""
    if not path.exists():
        return
    keep = []
    if step > 0:
        keep = [row for _, row in iter_jsonl(path) if row.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in keep))


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with list values joined by commas (what trackers accept)."""
    return {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.items()}
