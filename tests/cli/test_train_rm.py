"""`alignkit train-rm` end to end: a config file and flags over it, bad inputs exit 2, and no
policy-objective flags."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main


def test_train_rm_config_file_and_flags(tiny_model, rm_data, tmp_path, capsys):
    cfg = tmp_path / "rm.yaml"
    cfg.write_text(f"data: [{rm_data['train']}]\nmax_steps: 5\nbatch_size: 2\nsave_model: false\n")
    out = tmp_path / "run"
    args = ["train-rm", "--config", str(cfg), "--model", tiny_model, "--output", str(out)]
    assert main([*args, "--max-steps", "1", "--eval-data", rm_data["held"]]) == 0
    printed = capsys.readouterr().out
    assert "done: 1 steps" in printed  # the flag overrides the file
    assert "held-out pair accuracy: " in printed
    assert not (out / "model").exists()  # save_model: false from the file
    assert json.loads((out / "config.json").read_text())["batch_size"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{points}"], "needs preference pairs"),
        (["--data", "{train}", "--config", "{yaml_beta}"], "unknown option(s) beta"),
        (["--data", "{train}", "--config", "{yaml_method}"], "always trains bradley-terry"),
        (["--data", "{train}", "--batch-size", "0"], "--batch-size must be > 0"),
        (["--data", "{missing}"], "missing"),
    ],
)
def test_train_rm_bad_input_exits_2(args, message, tiny_model, rm_data, tmp_path, capsys):
    (tmp_path / "beta.yaml").write_text("beta: 0.5\n")
    (tmp_path / "method.yaml").write_text("method: dpo\n")
    paths = dict(rm_data, yaml_beta=tmp_path / "beta.yaml", yaml_method=tmp_path / "method.yaml")
    paths["missing"] = tmp_path / "missing.jsonl"
    args = [a.format(**paths) for a in args]
    code = main(["train-rm", "--model", tiny_model, "--output", str(tmp_path / "o"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--method", "--beta", "--deft-lambda"])
def test_train_rm_has_no_policy_flags(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train-rm", "--data", "x", "--output", "y", flag, "1"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
