"""`alignkit demo` end to end on the tiny model (the embedded model's run is `make demo`)."""

from __future__ import annotations

import json

from alignkit.cli import main


def test_demo_writes_report_with_before_after(tmp_path, tiny_model, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--model", tiny_model, "--output", str(out), "--train-pairs", "16"]
    args += ["--max-steps", "2", "--max-new-tokens", "4", "--method", "ulma"]
    assert main(args) == 0
    report = json.loads((out / "demo_report.json").read_text())
    assert [a["category"] for a in report["answers"]] == ["harmful"] * 6 + ["benign"] * 6
    assert all(
        isinstance(a["before"], str) and isinstance(a["after"], str) for a in report["answers"]
    )
    for rates in report["refusal_rate"].values():
        assert 0.0 <= rates["before"] <= 1.0 and 0.0 <= rates["after"] <= 1.0
    # a point-wise method still reports the held-out pairs' implicit reward
    assert report["heldout_accuracy"]["before"] == 0.0  # policy == reference: all ties
    assert report["heldout_margin"]["before"] == 0.0
    assert report["heldout_margin"]["after"] != 0.0
    assert len((out / "demo_train.jsonl").read_text().splitlines()) == 16
    printed = capsys.readouterr().out
    assert "held-out implicit-reward accuracy: 0.000 ->" in printed
    assert "refusal rate on held-out harmful prompts" in printed


def test_demo_rejects_an_unknown_method_before_any_work(tmp_path, tiny_model, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", tiny_model, "--output", str(out), "--method", "foo"]) == 2
    assert "unknown method 'foo'" in capsys.readouterr().err
    assert not (out / "demo_report.json").exists()
