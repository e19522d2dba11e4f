"""Training objectives: pure losses (`losses`) and the method registry (`registry`).

The names below are imported on first use: `objectives.base`'s option types (`Reduction`,
`ObjectiveConfig`) are then importable without torch, for `alignkit VERB --help`."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "METHODS": "alignkit.objectives.registry",
    "ObjectiveBatch": "alignkit.objectives.base",
    "ObjectiveConfig": "alignkit.objectives.base",
    "SeqLogps": "alignkit.objectives.base",
    "compute_loss": "alignkit.objectives.registry",
    "get_method": "alignkit.objectives.registry",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
