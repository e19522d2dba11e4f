"""Checkpoints and run directories: nothing read back from a checkpoint runs code, a resumed
run stays exact, and finished work in --output is never overwritten silently."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import Planted, pair_rows, write_jsonl
from safetensors.torch import load_file

from alignkit.cli import main
from alignkit.train import checkpoint
from alignkit.train.checkpoint import EXTRA_FILE, STATE_FILE
from alignkit.train.trainer import Trainer


def _train(out: Path, tiny_model: str, data: str, *extra: str) -> int:
    args = ["train", "--method", "dpo", "--data", data, "--model", tiny_model]
    args += ["--output", str(out), "--precision", "fp32", "--batch-size", "2", "--lr", "1e-3"]
    return main(args + list(extra))


def _metrics(out: Path) -> list[dict]:
    """metrics.jsonl without the clock's fields."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time" not in k and not k.endswith("_s")} for r in rows]


def test_planted_pickles_never_run_and_the_resume_stays_exact(tmp_path, tiny_model, pairs_file):
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    steps = ["--max-steps", "4", "--save-steps", "2"]
    assert _train(out, tiny_model, pairs_file, *steps) == 0  # the uninterrupted run
    whole, weights = _metrics(out), load_file(out / "model" / "model.safetensors")
    step2 = out / "checkpoints" / "step-2"
    assert not list(step2.glob("custom_checkpoint_*"))  # nothing registered with accelerate
    saved = torch.load(step2 / EXTRA_FILE, weights_only=True)
    assert saved["scheduler"]["last_epoch"] == 2  # the scheduler is alignkit's own file
    assert json.loads((step2 / STATE_FILE).read_text())["settings"]
    # what accelerate's register_for_checkpointing would unpickle with weights_only=False
    (step2 / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Planted(marker)))

    assert _train(out, tiny_model, pairs_file, *steps, "--resume") == 0  # steps 3 and 4 again
    assert not marker.exists()
    assert _metrics(out) == whole
    resumed = load_file(out / "model" / "model.safetensors")
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)

    torch.save({"scheduler": Planted(marker)}, step2 / EXTRA_FILE)  # alignkit's own file
    assert _train(out, tiny_model, pairs_file, *steps, "--resume") == 2  # refused
    assert not marker.exists()


def test_finished_work_is_never_overwritten_silently(tmp_path, tiny_model, pairs_file, capsys):
    other = write_jsonl(tmp_path / "other.jsonl", pair_rows(6, seed=3))
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("keep me")
    assert _train(not_a_dir, tiny_model, pairs_file, "--max-steps", "1") == 2
    assert "is a file" in capsys.readouterr().err and not_a_dir.read_text() == "keep me"

    out = tmp_path / "run"
    assert _train(out, tiny_model, pairs_file, "--max-steps", "2", "--save-steps", "1") == 0
    summary = (out / "summary.json").read_bytes()
    assert _train(out, tiny_model, other, "--max-steps", "1") == 2
    assert "finished run" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == summary
    # --resume with other data: the checkpoint's settings digest differs
    assert _train(out, tiny_model, other, "--max-steps", "2", "--resume") == 2
    assert "other settings" in capsys.readouterr().err
    # an unfinished run's checkpoints of other settings are refused too
    (out / "summary.json").unlink()
    shutil.rmtree(out / "model")
    assert _train(out, tiny_model, other, "--max-steps", "1") == 2
    assert "checkpoints of a run of other settings" in capsys.readouterr().err

    assert _train(out, tiny_model, other, "--max-steps", "1", "--overwrite") == 0
    assert not (out / "checkpoints").exists()  # the old run was deleted
    assert json.loads((out / "config.json").read_text())["data"] == [other]
    assert len(_metrics(out)) == 1


_TRAIN_STEP = Trainer.train_step


class _Stopped(Exception):
    """The run was stopped (as by a kill) before this step."""


def _timed_steps(monkeypatch, stop_before: int | None = None) -> None:
    """Every optimizer step takes 4 minutes on `checkpoint`'s clock; with `stop_before`, the
    run stops when it is about to run that (0-based) step."""
    now = [0.0]
    monkeypatch.setattr(checkpoint, "monotonic", lambda: now[0])
    real = _TRAIN_STEP

    def step(self, scorer, optimizer, scheduler, train, index, *rest):
        if index == stop_before:
            raise _Stopped(index)
        now[0] += 240.0
        return real(self, scorer, optimizer, scheduler, train, index, *rest)

    monkeypatch.setattr(Trainer, "train_step", step)


def _steps(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def test_a_stopped_run_resumes_from_its_default_timed_checkpoints(
    tmp_path, tiny_model, pairs_file, monkeypatch, capsys
):
    """No --save-steps: a checkpoint after the first step that ends 10 minutes (the default
    --save-minutes) after the start or the last checkpoint; the last 2 are kept. At 4 minutes
    a step: saves after steps 3, 6 and 9 of 10 (never after the last)."""
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    _timed_steps(monkeypatch)
    assert _train(full, tiny_model, pairs_file, "--max-steps", "10") == 0
    assert _steps(full) == ["step-6", "step-9"]  # step-3 deleted once step-9 was written
    whole, weights = _metrics(full), load_file(full / "model" / "model.safetensors")

    _timed_steps(monkeypatch, stop_before=7)  # stopped during step 8: nothing after step 7
    with pytest.raises(_Stopped):
        _train(stopped, tiny_model, pairs_file, "--max-steps", "10")
    assert _steps(stopped) == ["step-3", "step-6"] and not (stopped / "model").exists()

    # a damaged RNG state of the newest checkpoint: a clear error naming the file and the
    # checkpoint to fall back to (accelerate alone only logs "Could not load random states")
    rng = stopped / "checkpoints" / "step-6" / "random_states_0.pkl"
    rng.write_bytes(rng.read_bytes()[:100])
    capsys.readouterr()
    assert _train(stopped, tiny_model, pairs_file, "--max-steps", "10", "--resume") == 2
    err = capsys.readouterr().err
    assert str(rng) in err and "delete" in err and "step-3" in err
    shutil.rmtree(rng.parent)  # as the message says: resume from step 3
    _timed_steps(monkeypatch)
    assert _train(stopped, tiny_model, pairs_file, "--max-steps", "10", "--resume") == 0
    assert _metrics(stopped) == whole
    resumed = load_file(stopped / "model" / "model.safetensors")
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    assert _steps(stopped) == ["step-6", "step-9"]  # saved again after 3 steps (12 minutes)


def test_a_missing_rng_state_and_the_periodic_options(tmp_path, tiny_model, pairs_file, capsys):
    out = tmp_path / "run"
    assert _train(out, tiny_model, pairs_file, "--max-steps", "3", "--save-steps", "1",
                  "--save-total-limit", "1", "--save-minutes", "0") == 0  # fmt: skip
    assert _steps(out) == ["step-2"]  # every step but the last; only the newest kept
    (out / "checkpoints" / "step-2" / "random_states_0.pkl").unlink()
    shutil.rmtree(out / "model")
    (out / "summary.json").unlink()
    capsys.readouterr()
    assert _train(out, tiny_model, pairs_file, "--max-steps", "3", "--resume") == 2
    err = capsys.readouterr().err
    assert "random_states_0.pkl" in err and "--overwrite" in err
    for bad in (["--save-total-limit", "0"], ["--save-minutes", "-1"]):
        assert _train(tmp_path / "x", tiny_model, pairs_file, *bad) == 2
        assert bad[0] in capsys.readouterr().err
