"""Evaluation: metric functions (`metrics`), the `alignkit eval` orchestration (`runner`) and
the options of the verbs that measure (`config`, torch-free).

The names below are imported on first use, so that importing `alignkit.evaluation.config`
(for `alignkit eval --help`) does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "METRIC_NAMES": "alignkit.evaluation.config",
    "EvalConfig": "alignkit.evaluation.config",
    "corpus_bleu": "alignkit.evaluation.metrics",
    "mean_std": "alignkit.evaluation.metrics",
    "perplexity": "alignkit.evaluation.metrics",
    "run_eval": "alignkit.evaluation.runner",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
