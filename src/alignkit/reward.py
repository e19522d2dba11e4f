"""One reward-model interface used everywhere (eval, PLE, RAFT, RRHF).

A reward model maps (prompts, responses) to one float per pair. Three kinds plug in:
- a model directory or HF id of an `AutoModelForSequenceClassification` with one label
  (ours from `alignkit train-rm`, or any Hugging Face reward model), run batched with the
  reward model's own tokenizer and chat template;
- a Python callable `(prompts, responses) -> scores`, given as an object or as
  "package.module:function";
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from alignkit.data.records import Prompt
from alignkit.errors import AlignkitError

ScoreFn = Callable[[Sequence[Prompt], Sequence[str]], Sequence[float]]


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
        if len(prompts) != len(responses):
            raise AlignkitError(f"{len(prompts)} prompts but {len(responses)} responses")
        scores = [float(s) for s in self.fn(prompts, responses)]
        if len(scores) != len(responses):
            raise AlignkitError(
                f"reward function {self.name} returned {len(scores)} scores for {len(responses)} responses"
            )
        return scores


def reward_conversation(prompt: Prompt, response: str) -> list[dict[str, str]]:
    """The prompt + response as chat messages (plain-text prompts become one user turn)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return messages + [{"role": "assistant", "content": response}]


class HFReward:
    """An `AutoModelForSequenceClassification` with a single output = the reward."""

    def __init__(
        self,
        name: str,
        batch_size: int = 16,
        max_length: int = 1024,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification

        from alignkit.models import load_tokenizer, resolve_model

        path = resolve_model(name)
        self.name = name
        self.tokenizer = load_tokenizer(path, trust_remote_code)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise AlignkitError(f"cannot load a reward model from {name!r}: {exc}") from exc
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = torch.device(device) if device else torch.device("cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def _text(self, prompt: Prompt, response: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                reward_conversation(prompt, response), tokenize=False
            )
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        return text + response

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise AlignkitError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = [self._text(p, r) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"  # keep the response when cutting
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
                logits = self.model(**enc).logits
                out.extend(logits[:, 0].float().cpu().tolist())
        finally:
            self.tokenizer.truncation_side = side
        return out


def load_reward_model(spec: str | ScoreFn | RewardModel, **kwargs) -> RewardModel:
    """A reward model from a path/HF id, "module:function", a callable, or a RewardModel."""
    if hasattr(spec, "score"):
        return spec  # type: ignore[return-value]
    if callable(spec):
        return CallableReward(spec, getattr(spec, "__name__", "callable"))
    if ":" in spec and not spec.startswith("/") and "://" not in spec:
        module_name, _, attr = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise AlignkitError(f"cannot import reward function {spec!r}: {exc}") from exc
        return CallableReward(fn, spec)
    return HFReward(spec, **kwargs)
