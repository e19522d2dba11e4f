"""alignkit: data-efficient preference alignment (DEFT, ULMA, PLE, REAL) on the Hugging Face stack.

The public API, one name per stage of the flow (imported on first use, so `import alignkit`
stays cheap and the CLI starts fast)::

    from alignkit import load_records, TrainConfig, Trainer
    records, summary = load_records(["pairs.jsonl"])
    Trainer(TrainConfig(method="dpo", data=["pairs.jsonl"], output="runs/dpo")).run()
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "AlignkitError": "alignkit.errors",
    "DataError": "alignkit.errors",
    "load_records": "alignkit.data.loading",
    "Pair": "alignkit.data.records",
    "Point": "alignkit.data.records",
    "Multi": "alignkit.data.records",
    "resolve_model_spec": "alignkit.runs",
    "load_causal_lm": "alignkit.models",
    "load_tokenizer": "alignkit.models",
    "METHODS": "alignkit.objectives.registry",
    "compute_loss": "alignkit.objectives.registry",
    "TrainConfig": "alignkit.train.config",
    "Trainer": "alignkit.train.trainer",
    "RewardTrainConfig": "alignkit.rewards.config",
    "RewardTrainer": "alignkit.rewards.training",
    "load_reward_model": "alignkit.rewards.loading",
    "generate": "alignkit.inference.generation",
    "EvalConfig": "alignkit.evaluation.config",
    "run_eval": "alignkit.evaluation.runner",
    "OnlineTrainer": "alignkit.online.loop",
    "PLEConfig": "alignkit.online.config",
    "RAFTConfig": "alignkit.online.config",
    "RRHFOnlineConfig": "alignkit.online.config",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'alignkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
