"""One reward-model interface used everywhere (eval, PLE, RAFT, RRHF).

A reward model maps (prompts, responses) to one float per pair. Three kinds plug in:
- a model directory or HF id of an `AutoModelForSequenceClassification` with one label
  (ours from `alignkit train-rm`, full model or LoRA adapter, or any Hugging Face reward
  model), run batched;
- a Python callable `(prompts, responses) -> scores`, given as an object or as
  "package.module:function";
- any object with a `score(prompts, responses)` method.

Input text. A reward model trained by `alignkit train-rm` (its directory holds
`alignkit_reward.json`) is scored exactly as it was trained: the prompt tokenized like
training data (chat-message prompts rendered by the chat template with the generation prompt,
plain-text prompts as they are), the response tokens + EOS appended, the score head read at
the last response token by `RewardScorer` — so `HFReward.score` equals the reward the trainer
computed. Any other model gets the whole conversation rendered by its own chat template and
its own Hugging Face forward (plain-text prompts become one user turn).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from alignkit.data.prompts import render_conversation
from alignkit.data.records import Point, Prompt
from alignkit.errors import AlignkitError
from alignkit.models import LoraSettings, Precision, check_model_spec, is_peft, resolve_model
from alignkit.runs import resolve_model_spec
from alignkit.scoring.forward import packed_hidden_states
from alignkit.scoring.packing import PackedBatch

ScoreFn = Callable[[Sequence[Prompt], Sequence[str]], Sequence[float]]
InputFormat = Literal["auto", "alignkit", "chat"]

MARKER_FORMAT = "alignkit-packed-v1"
HEAD_NAMES = ("score",)  # the linear head of decoder-only *ForSequenceClassification classes


class RewardModel(Protocol):
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """One scalar per (prompt, response); higher is better."""
        ...


class CallableReward:
    """Wraps a plain function `(prompts, responses) -> scores`."""

    def __init__(self, fn: ScoreFn, name: str = "callable") -> None:
        self.fn = fn
        self.name = name

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        _check_lengths(prompts, responses)
        scores = [float(s) for s in self.fn(prompts, responses)]
        if len(scores) != len(responses):
            raise AlignkitError(
                f"reward function {self.name} returned {len(scores)} scores for {len(responses)} responses"
            )
        return scores


def _check_lengths(prompts: Sequence[Prompt], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise AlignkitError(f"{len(prompts)} prompts but {len(responses)} responses")


# ------------------------------------------------------------ packed scorer


def backbone_and_score(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (returns last hidden states) and the scalar head of a
    sequence-classification model (peft-wrapped or not)."""
    base = model.get_base_model() if is_peft(model) else model
    decoder = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = next((getattr(base, n) for n in HEAD_NAMES if hasattr(base, n)), None)
    if decoder is None or head is None:
        raise AlignkitError(
            f"{type(base).__name__} has no decoder + `score` head; reward models need a "
            "decoder-only model (Llama, Qwen, Mistral, GPT-2, SmolLM, ...)"
        )
    return decoder, head


def last_token_positions(segments: Tensor, k: int) -> Tensor:
    """(B, L) segment ids -> (B, K) position of the last token of each response (0 if absent)."""
    positions = torch.arange(segments.shape[1], device=segments.device)
    last = [torch.where(segments == j + 1, positions, -1).amax(dim=1) for j in range(k)]
    return torch.stack(last, dim=1).clamp(min=0)


class RewardScorer(nn.Module):
    """Wraps a scalar-head model; `forward(batch)` returns the reward of every packed response.

    The row `prompt|y_1|...|y_K` runs through the backbone once with the block attention mask
    and restarted position ids of `alignkit.scoring.forward` (each response sees the prompt and
    itself only), and the score head reads the hidden state at the last token of each
    response (its EOS), in float32. Returns rewards (B, K), 0 where `batch.mask` is False.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: PackedBatch, autocast: torch.dtype | None = None) -> Tensor:
        decoder, head = backbone_and_score(self.model)
        device = batch.input_ids.device
        b, k = batch.shape
        last = last_token_positions(batch.segments, k)  # (B, K)
        hidden = packed_hidden_states(decoder, batch, autocast)  # (B, L, d)
        rows = torch.arange(b, device=device)[:, None]
        picked = hidden[rows, last].float()  # (B, K, d)
        # the head in float32: a d -> 1 map costs nothing, and bf16 rewards would be coarse
        rewards = head(picked).squeeze(-1).float()  # (B, K); weights are float32
        return rewards * batch.mask


# ------------------------------------------------------------ loading


def load_sequence_classifier(
    name: str,
    *,
    lora: LoraSettings | None = None,
    adapter: str | None = None,
    pad_token_id: int | None = None,
    trust_remote_code: bool = False,
) -> nn.Module:
    """A float32 `AutoModelForSequenceClassification` with one label (the reward).

    Any causal-LM checkpoint works as a backbone (the score head is then freshly
    initialised). `lora` adds a fresh SEQ_CLS adapter whose score head is fully trained
    (`modules_to_save`); `adapter` loads a saved one on top of `name`.
    """
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(name),
            num_labels=1,
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise AlignkitError(f"cannot load a reward model from {name!r}: {exc}") from exc
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    if adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, adapter)
    if lora is not None:
        from peft import get_peft_model

        backbone_and_score(model)  # a clear error before peft's
        model = get_peft_model(model, lora.peft_config("SEQ_CLS", modules_to_save=list(HEAD_NAMES)))
    return model


class HFReward:
    """An `AutoModelForSequenceClassification` with a single output = the reward.

    `name`: model directory (full model or peft adapter dir), HF id or "default".
    `input_format`: "alignkit" (training encoding, `RewardScorer`), "chat" (whole
    conversation through the chat template, the model's own forward) or "auto" (alignkit
    when the directory has `alignkit_reward.json`). `max_length` defaults to the training
    max_length of an alignkit reward model, else 1024. `precision` as `--precision`
    ("fp32" by default: no autocast; the alignkit scorer runs its head in float32 anyway).
    """

    def __init__(
        self,
        name: str,
        batch_size: int = 16,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        precision: Precision = "fp32",
        input_format: InputFormat = "auto",
    ) -> None:
        from alignkit.models import autocast_dtype, load_tokenizer

        spec = resolve_model_spec(name)
        marker = spec.reward_marker
        self.name = name
        self.tokenizer = load_tokenizer(name, trust_remote_code)
        self.model = load_sequence_classifier(
            spec.weights,
            adapter=spec.adapter_path,
            pad_token_id=self.tokenizer.pad_token_id,
            trust_remote_code=trust_remote_code,
        )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.scorer = RewardScorer(self.model)
        self.autocast = autocast_dtype(precision, self.device)
        self.batch_size = batch_size
        self.max_length = max_length or int((marker or {}).get("max_length", 1024))
        if input_format == "auto":
            input_format = "alignkit" if marker else "chat"
        self.input_format = input_format

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        _check_lengths(prompts, responses)
        if not responses:
            return []
        if self.input_format == "alignkit":
            return self._score_packed(prompts, responses)
        return self._score_chat(prompts, responses)

    def _score_packed(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Encoded and truncated like training data, one response per row."""
        from alignkit.data.batching import sorted_chunks
        from alignkit.data.tokenize import encode_records
        from alignkit.scoring.packing import collate

        pairs = zip(prompts, responses, strict=True)
        points = [Point(p, r, 1.0, source=f"item {i}") for i, (p, r) in enumerate(pairs)]
        encoded, _ = encode_records(points, self.tokenizer, self.max_length, "truncate")
        out = [0.0] * len(points)
        for idx in sorted_chunks([e.length for e in encoded], self.batch_size):
            batch = collate([encoded[i] for i in idx], self.tokenizer.pad_token_id, 1)
            rewards = self.scorer(batch.to(self.device), autocast=self.autocast)[:, 0]
            for i, value in zip(idx, rewards.cpu().tolist(), strict=True):
                out[encoded[i].index] = float(value)
        return out

    def _score_chat(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """The model's own forward on the chat-template-rendered conversation."""
        pairs = zip(prompts, responses, strict=True)
        texts = [render_conversation(p, r, self.tokenizer) for p, r in pairs]
        out: list[float] = []
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"  # keep the response when cutting
        enabled = self.autocast is not None
        try:
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                ).to(self.device)
                with torch.autocast(
                    self.device.type, dtype=self.autocast or torch.float32, enabled=enabled
                ):
                    logits = self.model(**enc).logits
                out.extend(logits[:, 0].float().cpu().tolist())
        finally:
            self.tokenizer.truncation_side = side
        return out


def load_reward_model(spec: str | ScoreFn | RewardModel, **kwargs: Any) -> RewardModel:
    """A reward model from a path/HF id, "module:function", a callable, or a RewardModel.

    `kwargs` go to `HFReward` (batch_size, max_length, device, precision, input_format, ...).
    """
    if hasattr(spec, "score"):
        return spec  # type: ignore[return-value]
    if callable(spec):
        return CallableReward(spec, getattr(spec, "__name__", "callable"))
    if _is_function_spec(spec):
        return CallableReward(_import_function(spec), spec)
    return HFReward(spec, **kwargs)


def check_reward_spec(spec: str) -> None:
    """Fail now, before anything is loaded or generated, on a reward spec that cannot work:
    a function that does not import, or a model spec that names no model."""
    if _is_function_spec(spec):
        _import_function(spec)
    else:
        check_model_spec(spec)


def _is_function_spec(spec: str) -> bool:
    """ "package.module:function" (not a path, URL or existing folder)."""
    return (
        ":" in spec and not spec.startswith("/") and "://" not in spec and not Path(spec).exists()
    )


def _import_function(spec: str) -> ScoreFn:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AlignkitError(f"cannot import reward function {spec!r}: {exc}") from exc
