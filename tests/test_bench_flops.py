"""The FLOP/s benchmark: its FLOP accounting by hand (6·N·T split into decoder and LM head,
LoRA's 4·N·T, attention apart) and one tiny end-to-end run whose report is self-consistent.
Timings are printed, never asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_flops.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_flops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name in ("bench_dpo_vs_trl", "bench_matmul"):  # imported from benchmarks/ by the script
        sys.modules.pop(name, None)


def test_full_fine_tuning_counts_six_n_t_with_the_head_on_predicted_rows_only(bench):
    params = {"dec": 10, "dec_train": 10, "head": 100, "head_trains": True}
    flops = bench.step_flops(params, tokens=7, predicted=3)
    # forward: 2*10*7 decoder + 2*100*3 head; backward twice that (activations + weights)
    assert flops["forward"] == 140 + 600
    assert flops["backward"] == 140 + 140 + 600 + 600
    assert flops["forward"] + flops["backward"] == 6 * 10 * 7 + 6 * 100 * 3
    assert (flops["lm_head_forward"], flops["lm_head_backward"]) == (600, 1200)


def test_lora_counts_activation_gradients_of_frozen_weights_only(bench):
    params = {"dec": 10, "dec_train": 1, "head": 100, "head_trains": False}
    flops = bench.step_flops(params, tokens=7, predicted=3)
    assert flops["forward"] == 140 + 600
    # frozen weights: gradient of the activations only (2NT); the adapter's 1 weight: +2*1*7
    assert flops["backward"] == 140 + 14 + 600
    assert flops["lm_head_backward"] == 600


def test_attention_flops_cover_the_padded_block(bench):
    # 2 rows of 3 positions, 1 layer, 4 query channels: QK^T and PV, 2*3*3*4 MACs each
    assert bench.attention_flops(2, 3, 1, 4, train=False) == 2 * 2 * (2 * 3 * 3 * 4)
    assert bench.attention_flops(2, 3, 1, 4, train=True) == 3 * 288


def test_matmul_params_of_the_tiny_llama(bench, tiny_model):
    from alignkit.models import LoraSettings, load_causal_lm

    d, m, kv, layers = 32, 64, 16, 2  # hidden, MLP, 2 KV heads of 8, layers (conftest)
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * m  # q, o; k, v; gate, up, down
    model = load_causal_lm(tiny_model)
    vocab = model.config.vocab_size
    params = bench.matmul_params(model)
    assert params["dec"] == params["dec_train"] == layers * per_layer
    assert params["head"] == vocab * d and params["head_trains"]
    # tied embeddings counted once; norms: 2 per layer + the final one
    assert params["all"] == layers * per_layer + vocab * d + (2 * layers + 1) * d

    lora = bench.matmul_params(load_causal_lm(tiny_model, lora=LoraSettings(r=4)))
    adapters = lora["dec"] - layers * per_layer
    assert adapters > 0 and lora["dec_train"] == adapters and not lora["head_trains"]


def test_tiny_run_reports_consistent_flops_and_fractions(bench, tiny_model, tmp_path, capsys):
    out = tmp_path / "flops.json"
    args = ["--model", tiny_model, "--steps", "3", "--warmup", "1", "--batch-size", "2",
            "--peak-seconds", "0.02", "--square", "64", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "overall:" in printed and "% of fp32 peak" in printed
    report = json.loads(out.read_text())
    summary, params = report["summary"], report["params"]
    assert len(report["steps"]) == 3 and summary["measured_steps"] == 2
    measured = report["steps"][1:]
    tokens = sum(b["tokens"] for s in measured for b in s["batches"]) / 2
    assert summary["tokens_per_step"] == tokens
    assert 0 < tokens <= summary["padded_positions_per_step"]
    assert tokens < summary["unpacked_tokens_per_step"]  # the prompt once, not twice
    flops = bench.step_flops(params, int(tokens), int(summary["predicted_per_step"]))
    assert summary["flops"] == flops
    step = flops["forward"] + flops["backward"]
    assert report["achieved_gflops"] == pytest.approx(step / summary["seconds"]["step_s"] / 1e9)
    assert report["peak_gflops"] == max(report["matmul_gflops"]["fp32"].values())
    assert report["fraction_of_peak"] == pytest.approx(
        report["achieved_gflops"] / report["peak_gflops"]
    )
    stages = sum(summary["seconds"][k] for k in ("data", "forward", "backward", "optimizer"))
    assert 0 < stages <= summary["seconds"]["step_s"]
