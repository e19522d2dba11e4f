"""The forms of DEFT's distribution reward R_Q, torch-free: configs name them
(`--deft-form`, `select deft --form`) and `alignkit VERB --help` imports no torch."""

from __future__ import annotations

from typing import Literal

RQForm = Literal["logprob", "prob"]
R_Q_FORMS: tuple[str, ...] = ("logprob", "prob")
