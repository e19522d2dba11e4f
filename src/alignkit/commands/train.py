"""`alignkit train`: align a model with any objective, from flags and/or a YAML config."""

from __future__ import annotations

import json

from alignkit.options import CONFIG_NOTE, add_config_verb
from alignkit.train.config import TrainConfig


def _methods_epilog() -> str:
    from alignkit.objectives import METHODS

    lines = ["methods (--method):"]
    lines += [f"  {m.name:<14} [{m.kind}] {m.description}" for m in METHODS.values()]
    lines += [
        "",
        "examples:",
        "  alignkit train --method dpo --data pairs.jsonl --output runs/dpo",
        "  alignkit train --method ulma --data demos.jsonl prefs.jsonl --lora --output runs/ulma",
        "  torchrun --nproc_per_node 2 -m alignkit train --config run.yaml",
    ]
    return "\n".join(lines)


def register(subparsers) -> None:
    add_config_verb(
        subparsers,
        "train",
        TrainConfig,
        run,
        help="align a model with an objective (dpo, ulma, sft, ...)",
        description=f"Train a model with one objective. {CONFIG_NOTE}",
        epilog=_methods_epilog(),
    )


def run(config: TrainConfig) -> int:
    from alignkit.objectives import get_method
    from alignkit.train.trainer import Trainer

    get_method(config.method)  # unknown method: a usage error before any loading
    trainer = Trainer(config)
    result = trainer.run()
    if not trainer.accelerator.is_main_process:
        return 0
    if result.eval_after:
        print(
            json.dumps(
                {"eval_before": result.eval_before, "eval_after": result.eval_after}, indent=2
            )
        )
    print(f"done: {result.steps} steps, run directory {result.output}")
    return 0
