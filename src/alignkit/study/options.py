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
    detect: float | None = opt(
        None,
        "a difference to the control (e.g. 0.02 accuracy) for the report's power table: the "
        "seeds a paired design needs to detect it at 80%% power, from this study as a pilot "
        "(rerun a finished study with it: finished cells are not run again); overrides the "
        "config's detect",
        metavar="D",
    )
