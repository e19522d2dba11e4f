"""The reward options of the verbs that score with a reward model, torch-free (configs name
them and `alignkit VERB --help` imports no torch): the option group `RewardOptions`
(--reward-model, --reward-label, --reward-output), inherited by `eval`, the online verbs and
`select rm-margin`, and `RewardOutput` (how a reward model's output becomes a reward)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from alignkit.options import opt

RewardOutput = Literal["raw", "sigmoid", "softmax"]
REWARD_OUTPUTS: tuple[str, ...] = get_args(RewardOutput)


@dataclass(kw_only=True)  # keyword-only: verbs keep their positional order
class RewardOptions:
    """The reward model a verb scores with, and which of its outputs is the reward
    (`rewards.loading.check_reward_spec` checks them before anything loads)."""

    reward_model: str = opt(
        "",
        "reward model: an `alignkit train-rm` run, a sequence-classification model directory "
        "or HF id, or 'package.module:function' scoring (prompts, responses)",
        metavar="SPEC",
    )
    reward_label: int = opt(
        0,
        "output of the reward model that is the reward (e.g. 1 = the positive class of a "
        "2-label sentiment classifier, PLE's IMDb reward); checked against its labels",
    )
    reward_output: RewardOutput = opt(
        "raw",
        "reward = raw logit of --reward-label, sigmoid of it, or softmax probability of that "
        "label (needs 2+ labels)",
    )
