"""The DPO benchmark against TRL runs end to end, and alignkit's log-probs and DPO loss equal
TRL's (float32, same token ids) to 1e-4. Timings are printed, never asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dpo_vs_trl.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_dpo_vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_pairs_are_deterministic_and_hh_shaped():
    bench = _bench_module()
    pairs = bench.make_pairs(20, 112, 48)
    assert pairs == bench.make_pairs(20, 112, 48)
    assert len({p["prompt"] for p in pairs}) == 20
    for p in pairs:
        assert p["prompt"].startswith("\n\nHuman: ") and p["prompt"].endswith("\n\nAssistant:")
        assert p["prompt"].count("\n\nHuman: ") >= 2
        assert p["chosen"].startswith(" ") and p["rejected"].startswith(" ")
    prompt_words = sum(len(p["prompt"].split()) for p in pairs)
    response_words = sum(len(p["chosen"].split()) + len(p["rejected"].split()) for p in pairs) / 2
    assert 2.0 < prompt_words / response_words < 4.0


def test_quick_benchmark_and_parity_on_tiny_model(tiny_model, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--model", tiny_model, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tokens/s" in proc.stdout and "parity" in proc.stdout
    report = json.loads(out.read_text())

    parity = report["parity"]
    assert parity["ids_match"], parity["id_mismatches"]
    assert parity["max_abs_logp_diff"] < 1e-4
    assert parity["loss_abs_diff"] < 1e-4
    assert parity["ok"]

    alignkit, trl = report["alignkit"], report["trl"]
    # same pairs, one epoch each: both tools counted exactly the same tokens
    assert alignkit["tokens"] == trl["tokens"] > 0
    for res in (alignkit, trl):
        assert len(res["step_tokens"]) == report["config"]["steps"]
        assert res["tokens_per_s"] > 0 and res["train_s"] > 0 and res["peak_rss_mb"] > 0
    pairs = report["config"]["pairs"]
    assert alignkit["encode_summary"].startswith(f"{pairs}/{pairs} examples kept")
    assert "truncated" not in alignkit["encode_summary"]
    assert set(report["ratios"]) == {"tokens_per_s", "peak_rss", "train_s"}


def test_failed_parity_fails_the_run(monkeypatch, tmp_path, capsys):
    bench = _bench_module()
    tool = {
        "tokens": 100,
        "step_tokens": [50, 50],
        "train_s": 2.0,
        "step_end_s": [1.0, 2.0],
        "ref_precompute_s": 0.5,
        "final_loss": 0.6,
        "cpu_cores_used": 2.0,
        "torch_threads": 2,
        "peak_rss_mb": 100.0,
        "sync_probe_ms": 0.1,
        "loadavg_after": 0.0,
    }
    parity = {
        "pairs": 4,
        "ids_match": True,
        "id_mismatches": [],
        "max_abs_logp_diff": 3e-3,
        "loss_abs_diff": 1e-6,
        "alignkit_loss": 0.7,
        "trl_loss": 0.7,
        "mean_abs_logp": 40.0,
        "alignkit_vs_fp64": 3e-3,
        "trl_vs_fp64": 1e-6,
        "ok": False,
    }
    results = {"parity": parity, "alignkit": dict(tool), "trl": dict(tool)}
    monkeypatch.setattr(bench, "_spawn", lambda kind, spec, workdir: dict(results[kind]))
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--model", "unused", "--json", str(out)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert json.loads(out.read_text())["parity"]["ok"] is False
