"""How a reward model's output becomes a reward, torch-free: configs name it (`--reward-output`)
and `alignkit VERB --help` imports no torch."""

from __future__ import annotations

from typing import Literal, get_args

RewardOutput = Literal["raw", "sigmoid", "softmax"]
REWARD_OUTPUTS: tuple[str, ...] = get_args(RewardOutput)
