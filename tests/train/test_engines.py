"""Experiment tracking, one option group for every verb that trains (`TrackingOptions`,
`engines.tracker_setup`): the run name, the project and the folder land where configured, for
`train`, `train-rm`, an online verb and a study's cells."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate import Accelerator
from accelerate.tracking import TensorBoardTracker
from conftest import keyword_reward, pair_rows, write_jsonl
from conftest import small_online_config as small

from alignkit.cli import main
from alignkit.online.config import RAFTConfig
from alignkit.online.loop import OnlineTrainer
from alignkit.study.config import MethodEntry, parse_study
from alignkit.train.config import TrainConfig
from alignkit.train.engines import tracker_setup

TRACKING = ["--report-to", "tensorboard", "--run-name", "dpo-lr5e-4"]


@pytest.fixture
def started(monkeypatch) -> list[tuple[str, dict]]:
    """The (project, init_kwargs) of every `init_trackers` call (a mocked tracker: what a
    W&B run would be started with), the trackers themselves still started."""
    calls: list[tuple[str, dict]] = []
    original = Accelerator.init_trackers

    def init_trackers(self, project_name, config=None, init_kwargs=None):
        calls.append((project_name, dict(init_kwargs or {})))
        return original(self, project_name, config=config, init_kwargs=init_kwargs)

    monkeypatch.setattr(Accelerator, "init_trackers", init_trackers)
    return calls


def events(folder: Path) -> list[Path]:
    return [p for p in folder.glob("events.out.tfevents.*") if p.stat().st_size > 0]


def test_tracker_setup_names_the_run_and_its_folder():
    config = TrainConfig(output="runs/dpo", report_to=["tensorboard", "wandb"], run_name="a")
    config.tracker_dir = "runs/tb"
    log_with, kwargs = tracker_setup(config, config.output)
    board = log_with[0]
    assert isinstance(board, TensorBoardTracker) and log_with[1:] == ["wandb"]
    assert (board.run_name, board.logging_dir_param) == ("a", "runs/tb")
    assert kwargs["wandb"] == {"name": "a", "dir": "runs/tb"}
    assert kwargs["mlflow"] == {"run_name": "a"}
    # defaults: the output folder's name, OUTPUT/tracking; `none` starts nothing
    default = TrainConfig(output="runs/dpo/", report_to=["none"])
    assert tracker_setup(default, default.output) == (
        [],
        {"wandb": {"name": "dpo", "dir": "runs/dpo/tracking"}, "mlflow": {"run_name": "dpo"}},
    )


def test_train_logs_under_the_run_name_in_the_tracker_dir(tmp_path, tiny_model, started):
    pytest.importorskip("tensorboard")
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(8))
    board = tmp_path / "team-board"
    args = ["train", "--model", tiny_model, "--data", data, "--output", str(tmp_path / "run")]
    args += ["--max-steps", "2", "--no-save-model", "--precision", "fp32", *TRACKING]
    args += ["--tracker-dir", str(board), "--tracker-project", "team-x"]
    assert main(args) == 0
    assert events(board / "dpo-lr5e-4")
    assert not (tmp_path / "run" / "tracking").exists()
    assert started == [("team-x", started[0][1])]
    assert started[0][1]["wandb"] == {"name": "dpo-lr5e-4", "dir": str(board)}


def test_train_rm_logs_to_the_same_trackers(tmp_path, tiny_model, started):
    pytest.importorskip("tensorboard")
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(8))
    out = tmp_path / "rm"
    args = ["train-rm", "--model", tiny_model, "--data", data, "--output", str(out)]
    assert (
        main([*args, "--max-steps", "1", "--precision", "fp32", "--report-to", "tensorboard"]) == 0
    )
    assert events(out / "tracking" / "rm")  # the defaults: OUTPUT/tracking/<output name>
    assert started[0][0] == "alignkit"


def test_an_online_verb_logs_to_the_same_trackers(tmp_path, tiny_model, queries_file, started):
    pytest.importorskip("tensorboard")
    config = small(
        RAFTConfig,
        queries_file,
        tmp_path / "raft",
        tiny_model,
        iterations=1,
        report_to=["tensorboard"],
        run_name="raft-1",
        tracker_dir=str(tmp_path / "board"),
        tracker_project="team-x",
    )
    OnlineTrainer(config, reward=keyword_reward).run()
    assert events(tmp_path / "board" / "raft-1")
    assert started[0][0] == "team-x" and started[0][1]["wandb"]["name"] == "raft-1"


def test_a_study_names_each_cells_run(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(8))
    raw = {"data": data, "eval_data": data, "output": str(tmp_path / "s"), "model": tiny_model}
    raw |= {"selectors": ["random"], "budgets": [4], "methods": ["dpo"]}
    raw["train"] = {"report_to": ["tensorboard"], "run_name": "sweep", "tracker_dir": "tb"}
    study = parse_study(raw)
    cell = study.train_config(MethodEntry("dpo", "dpo"), output="s/cells/dpo-random-4-s0")
    assert (cell.report_to, cell.tracker_dir) == (["tensorboard"], "tb")
    assert cell.run_name == "sweep-dpo-random-4-s0"
    raw["train"] = {}
    plain = parse_study(raw).train_config(MethodEntry("dpo", "dpo"), output="s/cells/c1")
    assert plain.tracking_run_name(plain.output) == "c1"
