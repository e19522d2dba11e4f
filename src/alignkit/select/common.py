"""Pieces shared by the selection methods (DEFT, REAL)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.data.loading import REJECTED_FILE
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


def fraction_count(n: int, fraction: float, option: str) -> int:
    """round(fraction * n) (halves round up), at least 1; `option` names the flag in the
    error when `fraction` is not in (0, 1]."""
    if not 0 < fraction <= 1:
        raise AlignkitError(f"{option} must be in (0, 1], got {fraction}")
    return max(1, math.floor(fraction * n + 0.5))


def distributed_state() -> Any:
    """accelerate's PartialState; on CPU it must be told so to pick up torchrun's ranks."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def rejected_path(output: str, skip_invalid: bool, state: Any) -> Path | None:
    """OUTPUT/rejected.jsonl where --skip-invalid lists the dropped records (main process
    only; None without the flag)."""
    if not skip_invalid or not state.is_main_process:
        return None
    return Path(output) / REJECTED_FILE
