"""`rm-margin`: choose preference pairs by a reward model's margin R(x, chosen) - R(x, rejected).

The selector registry lives in `alignkit.select.registry`, a lower layer than reward models,
so this module registers `rm-margin` into it when imported (`alignkit select` imports it).
The reward model is anything `load_reward_model` reads: a model directory or HF id of a
sequence classifier (an `alignkit train-rm` run, ...), or a scripted `module:function`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from alignkit.errors import AlignkitError
from alignkit.model_options import TRUST_REMOTE_CODE_HELP, Precision
from alignkit.options import opt
from alignkit.rewards.options import REWARD_OUTPUTS, RewardOptions
from alignkit.select.common import MARGIN_KEEPS
from alignkit.select.configs import MarginKeep
from alignkit.select.registry import ScoreRequest, SelectConfig, Selector, register


def rm_margin_scores(request: ScoreRequest) -> np.ndarray:
    """(n,) R(x, chosen) - R(x, rejected) of every pair under `options["reward_model"]`
    (output `reward_label` as `reward_output`, as `--reward-label` / `--reward-output`)."""
    from alignkit.rewards.loading import load_reward_model

    opts = request.options
    spec = str(opts.get("reward_model") or "")
    if not spec:
        raise AlignkitError("selector rm-margin needs a reward model: give --reward-model SPEC")
    model = load_reward_model(
        spec,
        label=int(opts.get("reward_label", 0)),
        output=opts.get("reward_output", "raw"),
        batch_size=request.batch_size,
        precision=request.precision,
        trust_remote_code=request.trust_remote_code,
    )
    records = request.records
    prompts = [r.prompt for r in records]
    rewards = model.score(
        prompts + prompts, [r.chosen for r in records] + [r.rejected for r in records]
    )
    values = np.asarray(rewards, dtype=np.float64)
    n = len(records)
    return values[:n] - values[n:]


@dataclass
class RmMarginConfig(MarginKeep, RewardOptions, SelectConfig):
    """Options of `alignkit select rm-margin`: `SelectConfig` and `RewardOptions`, and --keep
    with the names of the rules for a margin (`MarginKeep`)."""

    OPTIONS: ClassVar[tuple[str, ...]] = ("reward_model", "reward_label", "reward_output")

    trust_remote_code: bool = opt(False, TRUST_REMOTE_CODE_HELP)
    batch_size: int = opt(8, "pairs per forward pass of the reward model")
    precision: Precision = opt("auto", "bf16 autocast, fp32, or auto")

    def validate(self) -> None:
        from alignkit.rewards.loading import check_reward_spec

        super().validate()
        if not self.reward_model:
            raise AlignkitError("no reward model: give --reward-model SPEC")
        if self.batch_size <= 0:
            raise AlignkitError("--batch-size must be > 0")
        check_reward_spec(self.reward_model, self.reward_label, self.reward_output)


RM_MARGIN = Selector(
    "rm-margin",
    "highest",
    False,
    rm_margin_scores,
    "reward-model margin R(x, chosen) - R(x, rejected) with --reward-model; keep highest = "
    "confident (the pairs the reward model agrees with most, the default), near-zero = "
    "uncertain (the pairs it barely separates), lowest = misranked",
    options={"reward_model": "", "reward_label": 0, "reward_output": "raw"},
    choices={"reward_output": REWARD_OUTPUTS},
    depends_on=("precision",),
    config=RmMarginConfig,
    split_records=True,  # a pair's margin depends on that pair alone
    keep_names=MARGIN_KEEPS,
    reads_labels=True,
    label_use="the margin R(x, chosen) - R(x, rejected) uses which answer is chosen",
)
register(RM_MARGIN)
