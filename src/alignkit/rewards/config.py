"""Options of `alignkit train-rm` (torch-free once `train.config` is: `--help` loads no model
code)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.data.loading import source_exists
from alignkit.errors import AlignkitError
from alignkit.options import opt
from alignkit.train.config import DataTrainingOptions

BT_NAME = "bradley-terry"  # the name of objectives.registry.BRADLEY_TERRY


@dataclass
class RewardTrainConfig(DataTrainingOptions):
    """Options of `alignkit train-rm`: training on fixed pairs, the objective Bradley–Terry."""

    output: str = opt("", "run directory: model (the reward model), metrics.jsonl, checkpoints")
    model: str = opt(
        "default",
        "backbone: HF id, local path, run directory or 'default'; a causal LM gets a new "
        "scalar head",
    )
    lora: bool = opt(False, "train a LoRA adapter (peft, SEQ_CLS) + the full score head")
    eval_data: list[str] = opt(
        [],
        "held-out pairs: pair accuracy before and after training (and every --eval-steps)",
        metavar="PATH",
    )
    method: str = opt(BT_NAME, "always bradley-terry", cli=False)

    def validate(self) -> None:
        if self.method != BT_NAME:
            raise AlignkitError(
                f"train-rm always trains {BT_NAME}; remove method: {self.method!r} "
                "from the config (use `alignkit train` for policy objectives)"
            )
        super().validate()
        missing = [p for p in [*self.data, *self.eval_data] if not source_exists(p)]
        if missing:
            raise AlignkitError(f"data file(s) not found: {', '.join(missing)}")
