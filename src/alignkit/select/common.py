"""Pieces shared by the selection methods (DEFT, REAL)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from alignkit.errors import AlignkitError
from alignkit.models import backbone_and_head


def check_vocab(model: nn.Module, tokenizer: Any) -> int:
    """Rows of the model's output layer; an error when the tokenizer has more tokens."""
    _, head = backbone_and_head(model)
    rows = int(head.weight.shape[0])
    if len(tokenizer) > rows:
        raise AlignkitError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has only "
            f"{rows}: the model and the tokenizer do not belong together (load both from the "
            "same checkpoint)"
        )
    return rows


def distributed_state() -> Any:
    """accelerate's PartialState; on CPU it must be told so to pick up torchrun's ranks."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
