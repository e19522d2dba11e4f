"""Where a study's cells run: in the study's process, in worker processes, on Ray; the
results are the serial run's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import pair_rows, write_jsonl

from alignkit.errors import AlignkitError
from alignkit.study import executors
from alignkit.study import run as study_run
from alignkit.study.config import parse_study


def _raw(pool: str, held: str, out: Path, model: str, **extra) -> dict:
    """4 LoRA DPO cells (random and length, 2 seeds), 6 pairs of 12 each."""
    return {
        "data": pool,
        "eval_data": held,
        "output": str(out),
        "model": model,
        "selectors": [{"name": "random"}, {"name": "length", "keep": "lowest"}],
        "budgets": [6],
        "seeds": [0, 1],
        "methods": [{"name": "dpo", "method": "dpo", "options": {"lora": True, "lora_r": 4}}],
        "train": {"lr": 1e-2, "batch_size": 2, "precision": "fp32", "max_length": 64},
        **extra,
    }


@pytest.fixture(scope="module")
def serial(tiny_model, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(pool, held-out, study.json) of the study run in its own process, one cell after
    another, with the threads a worker of two gets (the CPU's matrix products may round
    differently with more threads)."""
    import torch

    tmp = tmp_path_factory.mktemp("executors")
    pool = write_jsonl(tmp / "pool.jsonl", pair_rows(12))
    held = write_jsonl(tmp / "held.jsonl", pair_rows(6, seed=5))
    threads = torch.get_num_threads()
    torch.set_num_threads(executors.device_slots(2, [], threads)[0][1])
    try:
        study_run.run_study(parse_study(_raw(pool, held, tmp / "serial", tiny_model)), print)
    finally:
        torch.set_num_threads(threads)
    return Path(pool), Path(held), json.loads((tmp / "serial" / "study.json").read_text())


def _cells(report: dict) -> list[dict]:
    """The cells' rows without their timing (`eval_s`: seconds, not a result)."""
    rows = [{k: v for k, v in c.items() if k != "eval_s"} for c in report["cells"]]
    return sorted(rows, key=lambda c: c["id"])


def test_device_slots_pin_one_gpu_each_or_split_the_threads() -> None:
    assert executors.device_slots(2, ["0", "1", "2"], 8) == [("0", 0), ("1", 0)]
    assert executors.device_slots(3, ["4", "5"], 8) == [("4", 0), ("5", 0), ("4", 0)]
    assert executors.device_slots(3, [], 8) == [(None, 2)] * 3
    assert executors.device_slots(4, [], 2) == [(None, 1)] * 4
    assert executors.ray_actors({"CPU": 2.0}, 0.0, 1.0, 4) == 2
    assert executors.ray_actors({"CPU": 8.0, "GPU": 3.0}, 1.0, 1.0, 10) == 3
    assert executors.ray_actors({"CPU": 8.0, "GPU": 4.0}, 0.5, 1.0, 5) == 5


def test_two_workers_give_the_serial_results_and_resume(serial, tiny_model, tmp_path) -> None:
    pool, held, expected = serial
    out = tmp_path / "workers"
    lines: list[str] = []
    config = parse_study(_raw(str(pool), str(held), out, tiny_model, workers=2))
    study_run.run_study(config, lines.append)
    report = json.loads((out / "study.json").read_text())
    assert _cells(report) == _cells(expected)
    assert (out / study_run.SHARED_CACHE).is_file()  # the shared work the workers read
    assert len(lines) == 4 and all("ETA" in line for line in lines)
    # a killed study resumes: only the cell without cell.json runs again
    victim = report["cells"][2]["id"]
    (out / "cells" / victim.replace("/", "__") / study_run.CELL_FILE).unlink()
    lines.clear()
    study_run.run_study(config, lines.append)
    assert sum("resumed" in line for line in lines) == 3
    assert [line for line in lines if "ETA" in line][0].split()[1] == victim
    assert _cells(json.loads((out / "study.json").read_text())) == _cells(expected)


def test_bad_execution_options_are_refused(tiny_model, tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    for change, message in [
        ({"executor": "slurm"}, "executor is local or ray"),
        ({"workers": -1}, "workers must be >= 0"),
        ({"ray_gpus_per_cell": -1}, "ray_gpus_per_cell"),
    ]:
        with pytest.raises(AlignkitError, match=message):
            parse_study(_raw(data, data, tmp_path / "o", tiny_model, **change))


def test_ray_without_ray_says_how_to_install_it(monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(AlignkitError, match=r"pip install 'alignkit\[ray\]'"):
        executors._import_ray()


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (pip install 'alignkit[ray]')",
)
def test_a_local_ray_cluster_of_two_workers_gives_the_serial_results(
    serial, tiny_model, tmp_path
) -> None:
    import ray

    pool, held, expected = serial
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.cluster_resources()["CPU"] == 2  # two actors of one CPU each
        config = parse_study(_raw(str(pool), str(held), out, tiny_model, executor="ray"))
        study_run.run_study(config, print)
    finally:
        ray.shutdown()
    report = json.loads((out / "study.json").read_text())
    assert _cells(report) == _cells(expected)
