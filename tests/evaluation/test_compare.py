"""`alignkit compare`: curves, grouped final metrics with 95% intervals, report and JSON."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.errors import AlignkitError, DataError
from alignkit.evaluation.compare import compare_runs, load_run, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    name: str,
    *,
    method: str = "dpo",
    seed: int = 1,
    final_loss: float = 0.5,
    steps: int = 4,
    r_q: bool = False,
    config: bool = True,
    report: dict | None = None,
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    rows = [{"step": 0, "eval/loss": 0.69, "eval/rewards/accuracies": 0.5}]
    for step in range(1, steps + 1):
        row = {"step": step, "loss": 0.7 - step * 0.01, "rewards/margins": step * 0.1}
        if r_q:
            row["deft/r_q"] = -0.1 * step
        rows.append(row)
    rows.append({"step": steps, "eval/loss": final_loss + 0.1, "eval/rewards/accuracies": 0.75})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "steps": steps,
        "final_metrics": {"loss": final_loss, "rewards/accuracies": 0.5 + seed / 10},
        "eval_before": {"eval/loss": 0.69},
        "eval_after": {"eval/loss": final_loss + 0.1},
        "base_model": "default",
        "lora": False,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    if config:
        cfg = {"method": method, "beta": 0.1, "seed": seed, "output": str(run), "resume": False}
        (run / "config.json").write_text(json.dumps(cfg))
    if report is not None:
        (run / "eval").mkdir()
        (run / "eval" / "report.json").write_text(json.dumps(report))
    return run


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    """Three seeds of dpo, two of ulma (one with R_Q), one run without a config."""
    root = tmp_path / "runs"
    out = [make_run(root, f"dpo-s{s}", seed=s, final_loss=0.4 + 0.1 * s) for s in (1, 2, 3)]
    out += [
        make_run(root, "ulma-s1", method="ulma", seed=1, final_loss=0.3, r_q=True),
        make_run(
            root,
            "ulma-s2",
            method="ulma",
            seed=2,
            final_loss=0.2,
            report={"model": "m", "metrics": {"reward/mean": 1.5}, "counts": {"n": 4}},
        ),
        make_run(root, "loose", config=False, final_loss=0.9),
    ]
    (out[-1] / "report.json").write_text(json.dumps({"bleu": 12.0, "flags": [1, 2], "ok": True}))
    return out


def test_compare_groups_seeds_and_writes_everything(runs, tmp_path):
    out = tmp_path / "cmp"
    result = compare_runs(runs, out)
    confs = {c["label"]: c for c in result["configurations"]}
    assert set(confs) == {"method=dpo", "method=ulma", "loose"}
    assert confs["method=dpo"]["runs"] == ["dpo-s1", "dpo-s2", "dpo-s3"]
    loss = confs["method=dpo"]["metrics"]["loss"]
    half = 4.302653 * statistics.stdev([0.5, 0.6, 0.7]) / math.sqrt(3)  # t(0.975, 2)
    assert loss["n"] == 3 and loss["mean"] == pytest.approx(0.6)
    assert loss["ci95_high"] - loss["mean"] == pytest.approx(half)
    assert confs["loose"]["metrics"]["loss"]["ci95_low"] is None  # a single run: no interval
    # eval_after and the eval report (one folder below the run) are final metrics too
    assert confs["method=dpo"]["metrics"]["eval/loss"]["mean"] == pytest.approx(0.7)
    assert confs["method=ulma"]["metrics"]["report[eval]/reward/mean"]["n"] == 1
    assert not any("counts" in m for m in result["metrics"])  # only a report's "metrics"
    assert confs["loose"]["metrics"]["report/bleu"]["mean"] == 12.0  # a report at the root
    # curves: R_Q appears because one run logs it
    assert set(result["images"]["curves"]) >= {"loss", "rewards/margins", "deft/r_q", "eval/loss"}
    for name in [*result["images"]["curves"].values(), *result["images"]["final_metrics"]]:
        assert (out / name).read_bytes().startswith(PNG)
    report = (out / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / link).exists()
    assert "± " in report and "(n=3)" in report
    assert json.loads((out / "compare.json").read_text()) == result
    assert not list(out.glob(".*"))  # no temp files left behind


def test_no_r_q_curve_without_r_q(runs, tmp_path):
    result = compare_runs(runs[:3], tmp_path / "cmp")
    assert "deft/r_q" not in result["images"]["curves"]
    # all three share a config: labelled by the method, one group
    assert [c["label"] for c in result["configurations"]] == ["dpo"]


def test_demo_refusal_rates_are_final_metrics(tmp_path):
    run = make_run(tmp_path, "demo-ulma", method="ulma")
    rates = {"harmful": {"before": 0.0, "after": 0.5}, "benign": {"before": 0.0, "after": 0.0}}
    (run / "demo_report.json").write_text(json.dumps({"refusal_rate": rates, "answers": []}))
    final = load_run(run).final
    assert final["demo/refusal_rate/harmful/after"] == 0.5
    assert final["demo/refusal_rate/benign/before"] == 0.0


def test_final_metrics_fall_back_to_last_logged_values(tmp_path):
    run = make_run(tmp_path, "r", steps=3)
    (run / "summary.json").unlink()
    loaded = load_run(run)
    assert loaded.final["loss"] == pytest.approx(0.67)
    assert "eval/loss" not in loaded.final  # held-out rows are not training metrics


def test_read_metrics_errors_and_cut_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 1.0}]  # a run still writing
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2"):
        read_metrics(path)


def test_bad_run_directories(tmp_path):
    with pytest.raises(AlignkitError, match="not a directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignkitError, match="no metrics.jsonl or summary.json"):
        load_run(tmp_path / "empty")


def test_same_directory_names_are_told_apart(tmp_path):
    a = make_run(tmp_path / "x", "run", seed=1)
    b = make_run(tmp_path / "y", "run", seed=2, method="ulma")
    result = compare_runs([a, b], tmp_path / "cmp")
    assert {r["name"] for r in result["runs"]} == {str(a), str(b)}


def test_cli(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compare", *map(str, runs), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "compared 6 runs in 3 configurations" in printed and "report.md" in printed
    assert (out / "report.md").exists() and (out / "compare.json").exists()
    assert main(["compare", str(tmp_path / "nope"), "--output", str(out)]) == 2


def test_cli_needs_output(runs):
    with pytest.raises(SystemExit):
        main(["compare", str(runs[0])])


def test_real_training_run(tiny_model, pairs_file, tmp_path):
    """A run written by `alignkit train` on the tiny model, and a copy of it as a second seed."""
    run = tmp_path / "dpo-1"
    args = ["train", "--method", "dpo", "--model", tiny_model, "--data", pairs_file]
    args += ["--output", str(run), "--max-steps", "2", "--batch-size", "4", "--seed", "1"]
    args += ["--eval-data", pairs_file, "--precision", "fp32"]
    assert main(args) == 0
    seed2 = tmp_path / "dpo-2"
    seed2.mkdir()
    for name in ("metrics.jsonl", "summary.json"):
        (seed2 / name).write_bytes((run / name).read_bytes())
    config = json.loads((run / "config.json").read_text())
    (seed2 / "config.json").write_text(json.dumps({**config, "seed": 2, "output": str(seed2)}))
    result = compare_runs([run, seed2], tmp_path / "cmp")
    [conf] = result["configurations"]
    assert conf["metrics"]["loss"]["n"] == 2 and conf["metrics"]["loss"]["ci95_low"] is not None
    assert {"loss", "rewards/margins", "eval/loss"} <= set(result["images"]["curves"])


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"]])
def test_help_renders(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "compare" in capsys.readouterr().out
