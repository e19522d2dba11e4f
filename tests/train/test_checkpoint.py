"""Checkpoints and run directories: nothing read back from a checkpoint runs code, a resumed
run stays exact, and finished work in --output is never overwritten silently."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch
from conftest import Planted, pair_rows, write_jsonl
from safetensors.torch import load_file

from alignkit.cli import main
from alignkit.train.checkpoint import EXTRA_FILE, STATE_FILE


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
