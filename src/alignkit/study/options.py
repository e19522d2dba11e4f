"""Options of `alignkit study`: the grid file and what the command line overrides in it
(torch-free: the grid itself, `alignkit.study.config`, is read when the study runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alignkit.options import opt


@dataclass
class StudyOptions:
    """`--config` is the study's grid (`study.config.load_study_config` reads it); the other
    options override its keys."""

    config: str | None = opt(
        None,
        "the study's grid: a YAML file, or recipe:NAME (a recipe shipped with alignkit)",
        metavar="YAML",
        required=True,
    )
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

    workers: int | None = opt(
        None,
        "cell processes: on this machine (--executor local, default 1: cells one after "
        "another in this process) each pinned to one GPU (round robin when there are fewer "
        "GPUs) or, without GPUs, to an equal share of the CPU threads; on Ray, the cell actors "
        "(default: as many as the cluster's resources hold). The shared work (tokens, "
        "reference log-probs, selector scores, held-out data) is done once before they start "
        "and written to OUTPUT/cache/shared.pt; the results are those of the serial run. "
        "Overrides the config's workers",
        metavar="N",
    )
    executor: Literal["local", "ray"] | None = opt(
        None,
        "where the cells run: local (this machine) or ray (a Ray cluster: every cell a call "
        "of a Ray actor that keeps the model loaded; needs pip install 'alignkit[ray]'). With "
        "ray, OUTPUT must be on storage every node reads and writes (NFS, a PVC, a mounted "
        "bucket): the cells write their directories there and read the shared work from it. "
        "Overrides the config's executor (default local)",
    )
    ray_address: str | None = opt(
        None,
        "the Ray cluster to run on (ray://HOST:10001 or HOST:6379); default $RAY_ADDRESS, "
        "else a Ray started on this machine",
        metavar="ADDRESS",
    )
    ray_gpus_per_cell: float | None = opt(
        None,
        "GPUs each Ray cell actor asks for (default 1 on a cluster with GPUs, else 0; "
        "fractions share a GPU)",
        metavar="G",
    )
    ray_cpus_per_cell: float | None = opt(
        None,
        "CPUs each Ray cell actor asks for (default 1; without GPUs, its torch threads)",
        metavar="C",
    )

    def overrides(self) -> dict:
        """What the flags override in the study file (a flag left unset overrides nothing)."""
        return {
            "data": self.data,
            "eval_data": self.eval_data,
            "output": self.output,
            "detect": self.detect,
            "workers": self.workers,
            "executor": self.executor,
            "ray_address": self.ray_address,
            "ray_gpus_per_cell": self.ray_gpus_per_cell,
            "ray_cpus_per_cell": self.ray_cpus_per_cell,
        }

    def config_text(self) -> str:
        """`--print-config`: the grid as the study reads it (a recipe's input paths made
        absolute, the flags' overrides applied), a file `--config` runs from anywhere."""
        import yaml

        from alignkit.errors import AlignkitError
        from alignkit.study.config import read_study_file

        if not self.config:
            raise AlignkitError("give --config YAML (or recipe:NAME) to print its grid")
        grid = read_study_file(self.config, self.overrides())
        return f"# alignkit study --config FILE (from {self.config})\n" + yaml.safe_dump(
            grid, sort_keys=False, default_flow_style=None, width=100
        )

    dry_run: bool = opt(
        False,
        "run nothing: list the cells and the work they share, and estimate the wall time on "
        "this machine from a short calibration (a few forward passes and training steps of "
        "the study's model at its lengths)",
    )
