"""One reward-model interface used everywhere (eval, PLE, RAFT, RRHF).

A reward model maps (prompts, responses) to one float per pair. Three kinds plug in:
- a model directory or HF id of an `AutoModelForSequenceClassification` (ours from `alignkit
  train-rm`, full model or LoRA adapter, or any Hugging Face reward model or classifier), run
  batched;
- a Python callable `(prompts, responses) -> scores`, given as an object or as
  "package.module:function";
- any object with a `score(prompts, responses)` method.

Input text. A reward model trained by `alignkit train-rm` (its directory holds
`alignkit_reward.json`) is scored exactly as it was trained: the prompt tokenized like
training data (chat-message prompts rendered by the chat template with the generation prompt,
plain-text prompts as they are), the response tokens + EOS appended, the score head read at
the last response token by `RewardScorer` — so `HFReward.score` equals the reward the trainer
computed. Any other model gets the whole conversation rendered by its own chat template and
its own Hugging Face forward (plain-text prompts become one user turn); a tokenizer without a
chat template (a sentiment classifier such as a BERT) gets the prompt text followed by the
response, with its own special tokens.

Which number is the reward. A classifier checkpoint keeps its own number of outputs (labels);
only a causal LM without a classification head gets a fresh one-output head. With logits
`l` (one per label), `label` N and `output` (`--reward-label`, `--reward-output`):
`raw` = l[N] (a one-output reward model's score; PLE's IMDb reward is the positive-class
logit of a 2-class sentiment classifier: label 1, raw), `sigmoid` = sigma(l[N]), `softmax` =
softmax(l)[N] (the class probability; needs 2 or more labels).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from alignkit.data.prompts import render_conversation
from alignkit.data.records import Point, Prompt
from alignkit.errors import AlignkitError
from alignkit.models import LoraSettings, Precision, check_model_spec, is_peft, resolve_model
from alignkit.rewards.options import REWARD_OUTPUTS, RewardOutput
from alignkit.runs import resolve_model_spec
from alignkit.scoring.forward import packed_hidden_states
from alignkit.scoring.packing import PackedBatch

ScoreFn = Callable[[Sequence[Prompt], Sequence[str]], Sequence[float]]
InputFormat = Literal["auto", "alignkit", "chat"]
CLASSIFIER_SUFFIX = "ForSequenceClassification"

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


# ------------------------------------------------------------ which output is the reward


def reward_from_logits(logits: Tensor, label: int = 0, output: RewardOutput = "raw") -> Tensor:
    """(..., C) logits of a C-label head -> (...) rewards: `raw` = logits[..., label],
    `sigmoid` = sigma(logits[..., label]), `softmax` = softmax(logits)[..., label]."""
    if output == "softmax":
        return torch.softmax(logits, dim=-1)[..., label]
    picked = logits[..., label]
    if output == "sigmoid":
        return torch.sigmoid(picked)
    if output == "raw":
        return picked
    raise AlignkitError(
        f"--reward-output must be one of {', '.join(REWARD_OUTPUTS)}, got {output!r}"
    )


def _label_names(id2label: dict[Any, Any] | None, n: int) -> str:
    names = {int(k): str(v) for k, v in (id2label or {}).items()}
    if n < 2 or not names:
        return ""
    return " (" + ", ".join(f"{i} = {names.get(i, '?')}" for i in range(n)) + ")"


def check_reward_output(
    name: str,
    num_labels: int,
    label: int,
    output: RewardOutput,
    id2label: dict[Any, Any] | None = None,
) -> None:
    """A usage error unless label N exists among the model's `num_labels` outputs and
    `output` makes sense for it (softmax over a single output is always 1)."""
    if output not in REWARD_OUTPUTS:
        raise AlignkitError(
            f"--reward-output must be one of {', '.join(REWARD_OUTPUTS)}, got {output!r}"
        )
    labels = _label_names(id2label, num_labels)
    if not 0 <= label < num_labels:
        raise AlignkitError(
            f"--reward-label {label} does not exist: the reward model {name} has "
            f"{num_labels} output(s), labels 0..{num_labels - 1}{labels}"
        )
    if output == "softmax" and num_labels < 2:
        raise AlignkitError(
            f"--reward-output softmax needs a classifier with 2 or more labels; the reward "
            f"model {name} has one output (softmax of it is always 1): use raw or sigmoid"
        )


def num_labels_of(model: nn.Module) -> int:
    """The number of outputs of a sequence-classification model's head (peft-wrapped or not)."""
    base = model.get_base_model() if is_peft(model) else model
    return int(base.config.num_labels)


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
    """Wraps a scoring-head model; `forward(batch)` returns the reward of every packed response.

    The row `prompt|y_1|...|y_K` runs through the backbone once with the block attention mask
    and restarted position ids of `alignkit.scoring.forward` (each response sees the prompt and
    itself only), and the score head reads the hidden state at the last token of each
    response (its EOS), in float32; `reward_from_logits(logits, label, output)` makes it one
    number (training: label 0, raw). Returns rewards (B, K), 0 where `batch.mask` is False.
    """

    def __init__(self, model: nn.Module, label: int = 0, output: RewardOutput = "raw") -> None:
        super().__init__()
        self.model = model
        self.label = label
        self.output = output

    def forward(self, batch: PackedBatch, autocast: torch.dtype | None = None) -> Tensor:
        decoder, head = backbone_and_score(self.model)
        device = batch.input_ids.device
        b, k = batch.shape
        last = last_token_positions(batch.segments, k)  # (B, K)
        hidden = packed_hidden_states(decoder, batch, autocast)  # (B, L, d)
        rows = torch.arange(b, device=device)[:, None]
        picked = hidden[rows, last].float()  # (B, K, d)
        # the head in float32: a d -> C map costs nothing, and bf16 rewards would be coarse
        logits = head(picked).float()  # (B, K, C); weights are float32
        return reward_from_logits(logits, self.label, self.output) * batch.mask


def reward_score_head(reward: object, config: Any) -> tuple[tuple[Tensor, Tensor] | None, str]:
    """The reward model's score head as a map of the hidden state it reads, for a policy of
    `config` (a transformers config) to use as its value head (PPO's --value-init).

    Returns ((weight (1, d), bias (1,)) float32 on the CPU, "") where it applies: an
    `HFReward` whose reward is the raw output `label` of a linear head, of the policy's
    `model_type` and `hidden_size`; else (None, the reason). The head (peft-wrapped or not)
    is read by applying it to 0 and to the unit vectors, so any affine head works.
    """
    if not isinstance(reward, HFReward):
        return None, "the reward is not a reward model (a function or an object)"
    if reward.output != "raw":
        return None, f"--reward-output {reward.output} is not a linear map of the hidden state"
    base = reward.model.get_base_model() if is_peft(reward.model) else reward.model
    ours = (getattr(config, "model_type", None), getattr(config, "hidden_size", None))
    theirs = (getattr(base.config, "model_type", None), getattr(base.config, "hidden_size", None))
    if ours != theirs or ours[1] is None:
        return None, (
            f"the reward model (model_type, hidden_size) {theirs} differs from the policy's {ours}"
        )
    _, head = backbone_and_score(reward.model)
    d = int(ours[1])
    weight = next(head.parameters())
    probe = torch.cat([torch.zeros(1, d), torch.eye(d)]).to(weight.device, weight.dtype)
    with torch.no_grad():
        out = head(probe)[:, reward.label].float().cpu()  # (d + 1,)
    bias = out[:1]
    return (out[1:][None, :] - bias, bias), ""


# ------------------------------------------------------------ loading


def load_sequence_classifier(
    name: str,
    *,
    lora: LoraSettings | None = None,
    adapter: str | None = None,
    pad_token_id: int | None = None,
    trust_remote_code: bool = False,
) -> nn.Module:
    """A float32 `AutoModelForSequenceClassification`.

    A sequence-classification checkpoint keeps its own head and number of labels (a reward
    model: 1; a sentiment classifier: 2, ...). Any other checkpoint (a causal LM) works as a
    backbone and gets a fresh one-output score head. `lora` adds a fresh SEQ_CLS adapter whose
    score head is fully trained (`modules_to_save`); `adapter` loads a saved one on top of
    `name`.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if not is_classifier_config(config.architectures):
            config.num_labels = 1  # a backbone: the fresh head has one output, the reward
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
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


def is_classifier_config(architectures: Sequence[str] | None) -> bool:
    """Whether a checkpoint's `architectures` name a sequence-classification head."""
    return any(str(a).endswith(CLASSIFIER_SUFFIX) for a in architectures or ())


def declared_labels(config: dict[str, Any]) -> tuple[int, dict[Any, Any] | None]:
    """(outputs, id2label) a checkpoint's config.json gives the loaded reward model: its own
    labels for a classifier (2 when it lists none, the transformers default), 1 otherwise."""
    if not is_classifier_config(config.get("architectures")):
        return 1, None
    id2label = config.get("id2label")
    n = config.get("num_labels") or (len(id2label) if id2label else 2)
    return int(n), id2label


class HFReward:
    """An `AutoModelForSequenceClassification` whose output `label` (raw, sigmoid or softmax
    probability, `output`) is the reward.

    `name`: model directory (full model or peft adapter dir), HF id or "default".
    `input_format`: "alignkit" (training encoding, `RewardScorer`), "chat" (whole
    conversation through the chat template, the model's own forward) or "auto" (alignkit
    when the directory has `alignkit_reward.json`). `max_length` defaults to the training
    max_length of an alignkit reward model, else 1024. `precision` as `--precision`
    ("fp32" by default: no autocast; the alignkit scorer runs its head in float32 anyway).
    `label`, `output`: which output is the reward and how (`reward_from_logits`); checked
    against the model's number of labels when it loads.
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
        label: int = 0,
        output: RewardOutput = "raw",
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
        base = self.model.get_base_model() if is_peft(self.model) else self.model
        n_labels = num_labels_of(self.model)
        check_reward_output(name, n_labels, label, output, getattr(base.config, "id2label", None))
        self.label = label
        self.output = output
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.scorer = RewardScorer(self.model, label, output)
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
        """The model's own forward on the chat-template-rendered conversation (without a chat
        template: the prompt text + response, with the tokenizer's special tokens, e.g. the
        [CLS] ... [SEP] a BERT-style classifier reads)."""
        pairs = zip(prompts, responses, strict=True)
        texts = [render_conversation(p, r, self.tokenizer) for p, r in pairs]
        templated = bool(getattr(self.tokenizer, "chat_template", None))
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
                    add_special_tokens=not templated,  # a template writes its own
                ).to(self.device)
                with torch.autocast(
                    self.device.type, dtype=self.autocast or torch.float32, enabled=enabled
                ):
                    logits = self.model(**enc).logits  # (B, C)
                rewards = reward_from_logits(logits.float(), self.label, self.output)
                out.extend(rewards.cpu().tolist())
        finally:
            self.tokenizer.truncation_side = side
        return out


def load_reward_model(
    spec: str | ScoreFn | RewardModel,
    *,
    label: int = 0,
    output: RewardOutput = "raw",
    **kwargs: Any,
) -> RewardModel:
    """A reward model from a path/HF id, "module:function", a callable, or a RewardModel.

    `label`, `output`: which output of a model is the reward (`HFReward`); a function or
    object returns its own scores and takes neither. `kwargs` go to `HFReward` (batch_size,
    max_length, device, precision, input_format, ...).
    """
    if not isinstance(spec, str) or _is_function_spec(spec):
        _no_output_options(str(getattr(spec, "__name__", spec)), label, output)
    if hasattr(spec, "score"):
        return spec  # type: ignore[return-value]
    if callable(spec):
        return CallableReward(spec, getattr(spec, "__name__", "callable"))
    if _is_function_spec(spec):
        return CallableReward(_import_function(spec), spec)
    return HFReward(spec, label=label, output=output, **kwargs)


def _no_output_options(name: str, label: int, output: str) -> None:
    if (label, output) != (0, "raw"):
        raise AlignkitError(
            f"--reward-label and --reward-output choose an output of a reward model; the "
            f"reward function {name} returns its own scores (drop them, or transform the "
            "scores in the function)"
        )


def check_reward_spec(spec: str, label: int = 0, output: RewardOutput = "raw") -> None:
    """Fail now, before anything is loaded or generated, on a reward spec that cannot work:
    a function that does not import, a model spec that names no model, or a `label` /
    `output` the model cannot give (checked here when its config.json is a local file, else
    when it loads)."""
    if _is_function_spec(spec):
        _no_output_options(spec, label, output)
        _import_function(spec)
        return
    if label < 0:
        raise AlignkitError(f"--reward-label must be >= 0, got {label}")
    model_spec = check_model_spec(spec)
    config_file = Path(resolve_model(model_spec.weights)) / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # loading the model reports it
        n_labels, id2label = declared_labels(config)
        check_reward_output(spec, n_labels, label, output, id2label)
    elif output not in REWARD_OUTPUTS:
        check_reward_output(spec, 1, 0, output)


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
