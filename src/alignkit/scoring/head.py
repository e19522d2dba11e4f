"""The LM head as the model's own forward applies it: the linear layer, then any logit
post-processing of the model family.

Some `*ForCausalLM.forward`s change the head's output before returning it: Gemma-2/3n/4 (and
VaultGemma, NanoChat, Beam) soft-cap it, `c * tanh(logits / c)` with
`c = final_logit_softcapping`; Cohere multiplies by `logit_scale`; Granite divides by
`logits_scaling`; HyperCLOVA X multiplies by `logits_scaling`; Falcon-H1 by
`lm_head_multiplier`. alignkit applies the head itself to selected hidden states (the packed
forward of `alignkit.scoring.forward`, DEFT's R_Q in `alignkit.scoring.deft` and
`alignkit.select.deft`), so every such use goes through `decoder_and_head`, whose `LMHead`
returns the logits the model's own forward returns. A model class not in `_KNOWN` whose config
names a logit post-processing is refused (`logit_transform`), never scored silently wrong.
The table was read from transformers 5.x `modeling_*.py` (`logits = self.lm_head(...)` and the
lines after it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.errors import AlignkitError
from alignkit.models import backbone_and_head, is_peft


@dataclass(frozen=True)
class LogitTransform:
    """logits -> softcap(scale * logits), softcap(z) = c * tanh(z / c); identity by default."""

    scale: float = 1.0
    softcap: float | None = None

    @property
    def linear(self) -> bool:
        """True when the transform is a multiplication (R_Q's log-prob form needs no logits)."""
        return self.softcap is None

    def __call__(self, logits: Tensor) -> Tensor:
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


IDENTITY = LogitTransform()


def _softcap(cfg: Any) -> LogitTransform:
    cap = getattr(cfg, "final_logit_softcapping", None)
    return LogitTransform(softcap=float(cap)) if cap is not None else IDENTITY


def _times(field: str) -> Callable[[Any], LogitTransform]:
    return lambda cfg: LogitTransform(scale=float(getattr(cfg, field)))


def _divided_by(field: str) -> Callable[[Any], LogitTransform]:
    return lambda cfg: LogitTransform(scale=1.0 / float(getattr(cfg, field)))


def _identity(cfg: Any) -> LogitTransform:
    return IDENTITY


# model class -> its post-processing, read from the (text) config
_KNOWN: dict[str, Callable[[Any], LogitTransform]] = {
    **dict.fromkeys(
        (
            "Gemma2ForCausalLM",
            "Gemma3ForCausalLM",
            "Gemma3nForCausalLM",
            "Gemma3nForConditionalGeneration",
            "Gemma4ForCausalLM",
            "Gemma4ForConditionalGeneration",
            "VaultGemmaForCausalLM",
            "NanoChatForCausalLM",
            "BeamForCausalLM",
        ),
        _softcap,
    ),
    **dict.fromkeys(
        ("CohereForCausalLM", "Cohere2ForCausalLM", "Cohere2MoeForCausalLM"), _times("logit_scale")
    ),
    **dict.fromkeys(
        (
            "GraniteForCausalLM",
            "GraniteSWAForCausalLM",
            "GraniteMoeForCausalLM",
            "GraniteMoeSWAForCausalLM",
            "GraniteMoeSharedForCausalLM",
            "GraniteMoeHybridForCausalLM",
        ),
        _divided_by("logits_scaling"),
    ),
    "HyperCLOVAXForCausalLM": _times("logits_scaling"),
    "FalconH1ForCausalLM": _times("lm_head_multiplier"),
    # their forward ignores the config field of the same name: nothing to apply
    "Gemma3ForConditionalGeneration": _identity,
    "MptForCausalLM": _identity,
}

# config fields that mean "the logits are post-processed" in some family; (field, neutral value)
_POST_PROCESSING_FIELDS = (
    ("final_logit_softcapping", None),
    ("logits_soft_cap", None),
    ("logit_scale", 1.0),
    ("logits_scaling", 1.0),
    ("lm_head_multiplier", 1.0),
    ("output_multiplier", 1.0),
)


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if is_peft(model) else model


def logit_transform(model: nn.Module) -> LogitTransform:
    """What `model`'s own forward does to the LM head's output (an error where unknown)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None:  # not a transformers model (tests' hand-made modules): a plain head
        return IDENTITY
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    name = type(base).__name__
    if name in _KNOWN:
        return _KNOWN[name](cfg)
    for field, neutral in _POST_PROCESSING_FIELDS:
        value = getattr(cfg, field, None)
        if value is not None and value != neutral:
            raise AlignkitError(
                f"{name} has {field}={value} in its config: its forward post-processes the "
                "LM head's logits in a way alignkit does not know, so alignkit's log-probs "
                "(and DEFT's R_Q) would differ from the model's own. Known: Gemma-2/3/3n/4, "
                "Cohere, Granite, Falcon-H1, HyperCLOVA X (alignkit.scoring.head); please "
                "report the model"
            )
    return IDENTITY


class LMHead:
    """A causal LM's output layer plus its logit post-processing (`LogitTransform`).

    `logits(hidden)` are the float32 logits the model's own forward gives for those hidden
    states; `weight` / `bias` are the linear layer's, for the log-prob R_Q shortcut.
    """

    def __init__(self, module: nn.Module, transform: LogitTransform = IDENTITY) -> None:
        self.module = module
        self.transform = transform

    @property
    def weight(self) -> Tensor:
        return self.module.weight

    @property
    def bias(self) -> Tensor | None:
        return getattr(self.module, "bias", None)

    @property
    def rows(self) -> int:
        return int(self.module.weight.shape[0])

    def logits(self, hidden: Tensor, autocast: torch.dtype | None = None) -> Tensor:
        """(N, V) float32 post-processed logits of (N, d) hidden states (the linear layer
        under autocast when `autocast` is a dtype, the post-processing in float32)."""
        with torch.autocast(
            hidden.device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            raw = self.module(hidden)
        return self.transform(raw.float())


def decoder_and_head(
    model: nn.Module, transform: LogitTransform | None = None
) -> tuple[nn.Module, LMHead]:
    """The decoder stack (final hidden states) and the `LMHead` of a causal LM; `transform`
    when the caller already has it (`logit_transform(model)` otherwise)."""
    decoder, head = backbone_and_head(model)
    return decoder, LMHead(head, logit_transform(model) if transform is None else transform)
