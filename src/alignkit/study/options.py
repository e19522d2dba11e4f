"""Options of `alignkit study`: the grid file and what the command line overrides in it
(torch-free: the grid itself, `alignkit.study.config`, is read when the study runs)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.options import opt


@dataclass
class StudyOptions:
    """`--config` is the study's grid (`study.config.load_study_config` reads it); the other
    options override its keys."""

    config: str | None = opt(None, "the study's grid", metavar="YAML", required=True)
    data: list[str] | None = opt(None, "override the config's data", metavar="PATH")
    eval_data: list[str] | None = opt(None, "override the config's eval_data", metavar="PATH")
    output: str | None = opt(None, "override the config's output directory")
    dry_run: bool = opt(
        False,
        "run nothing: list the cells and the work they share, and estimate the wall time on "
        "this machine from a short calibration (a few forward passes and training steps of "
        "the study's model at its lengths)",
    )
