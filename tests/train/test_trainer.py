"""The one training loop: every method, LoRA, DEFT guidance, resume after SIGKILL, multi-process,
config files, exit codes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, alignkit_on_two_ranks, pair_rows, run_launched, write_jsonl
from safetensors.torch import load_file

from alignkit.cli import main
from alignkit.objectives import METHODS
from alignkit.train.checkpoint import CACHE_FORMAT, Prepared


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(tmp_path: Path, tiny_model: str, *extra: str, name: str = "run") -> Path:
    out = tmp_path / name
    args = ["train", "--model", tiny_model, "--output", str(out), "--precision", "fp32"]
    assert main(args + list(extra)) == 0
    return out


@pytest.fixture
def multi_file(tmp_path) -> str:
    data = [
        {
            "prompt": f"q {i}?",
            "responses": [" good cat", " bad dog", " ok"],
            "scores": [2.0, 0.0, 1.0],
        }
        for i in range(8)
    ]
    return write_jsonl(tmp_path / "multi.jsonl", data)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains(tmp_path, tiny_model, pairs_file, multi_file, method):
    data = multi_file if METHODS[method].kind == "multi" else pairs_file
    out = train(
        tmp_path, tiny_model, "--method", method, "--data", data, "--max-steps", "2", "--lr", "1e-3"
    )
    logged = rows(out / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged)
    assert logged[-1]["tokens_per_s"] > 0
    assert (out / "model" / "config.json").exists()


def test_dpo_learns_held_out_preference(tmp_path, tiny_model, pairs_file):
    held = write_jsonl(tmp_path / "held.jsonl", pair_rows(8, seed=1))
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        "dpo",
        "--data",
        pairs_file,
        "--eval-data",
        held,
        "--epochs",
        "4",
        "--lr",
        "2e-3",
        "--batch-size",
        "4",
    )
    summary = json.loads((out / "summary.json").read_text())
    before, after = summary["eval_before"], summary["eval_after"]
    assert before["eval/rewards/margins"] == 0.0  # policy == reference before training
    assert after["eval/rewards/margins"] > 0.5
    assert after["eval/rewards/accuracies"] == 1.0
    assert after["eval/loss"] < before["eval/loss"] - 0.1
    assert summary["steps"] == 16  # 16 pairs / batch 4 * 4 epochs


@pytest.mark.parametrize("method", ["ulma", "sft", "rrhf"])
def test_pair_metrics_reported_for_methods_that_train_on_other_shapes(
    tmp_path, tiny_model, pairs_file, method
):
    """Held-out pairs of a point-wise/list method also get TRL's implicit-reward metrics, equal
    to beta * (log pi - log pi_ref) computed independently, unpacked."""
    from alignkit.data import load_records
    from alignkit.data.prompts import chat_records
    from alignkit.data.tokenize import encode_records
    from alignkit.models import load_causal_lm, load_tokenizer
    from alignkit.scoring.forward import naive_sequence_logps
    from alignkit.scoring.packing import collate

    held = write_jsonl(tmp_path / "held.jsonl", pair_rows(6, seed=3))
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        method,
        "--data",
        pairs_file,
        "--eval-data",
        held,
        "--max-steps",
        "3",
        "--lr",
        "3e-3",
        "--beta",
        "0.5",
    )
    summary = json.loads((out / "summary.json").read_text())
    before, after = summary["eval_before"], summary["eval_after"]
    assert before["eval/rewards/margins"] == 0.0  # policy == reference
    assert before["eval/rewards/accuracies"] == 0.0  # ties count as wrong
    tok = load_tokenizer(tiny_model)
    records = chat_records(load_records([held])[0], tok, True)  # the run's format: chat
    batch = collate(encode_records(records, tok, 1024)[0], tok.pad_token_id)
    with torch.no_grad():
        policy = naive_sequence_logps(load_causal_lm(str(out / "model")).eval(), batch)
        ref = naive_sequence_logps(load_causal_lm(tiny_model).eval(), batch)
    rewards = 0.5 * (policy - ref)
    assert after["eval/rewards/chosen"] == pytest.approx(float(rewards[:, 0].mean()), abs=1e-4)
    assert after["eval/rewards/rejected"] == pytest.approx(float(rewards[:, 1].mean()), abs=1e-4)
    margins = rewards[:, 0] - rewards[:, 1]
    assert after["eval/rewards/margins"] == pytest.approx(float(margins.mean()), abs=1e-4)
    assert after["eval/rewards/margins"] != 0.0
    assert after["eval/rewards/accuracies"] == pytest.approx(float((margins > 0).double().mean()))
    dpo = float(torch.nn.functional.softplus(-margins).mean())  # -log sigmoid(margin)
    assert after["eval/rewards/dpo_loss"] == pytest.approx(dpo, abs=1e-4)


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_trains_the_same_weights(tmp_path, tiny_model, pairs_file, lora):
    from alignkit.models import LoraSettings, enable_gradient_checkpointing, load_causal_lm

    model = load_causal_lm(tiny_model, lora=LoraSettings() if lora else None)
    enable_gradient_checkpointing(model)
    base = model.get_base_model() if lora else model
    assert base.is_activation_checkpointing
    # the packed forward the trainer uses goes through the checkpointed layers
    from alignkit.data import load_records
    from alignkit.data.tokenize import encode_records
    from alignkit.models import load_tokenizer
    from alignkit.scoring.forward import SequenceScorer
    from alignkit.scoring.packing import collate

    calls = []
    layers = base.model.layers
    for layer in layers:
        inner = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=inner, **k: (
            calls.append(1) or _f(*a, **k)
        )
    tok = load_tokenizer(tiny_model)
    batch = collate(encode_records(load_records([pairs_file])[0][:2], tok)[0], tok.pad_token_id)
    model.train()
    SequenceScorer(model)(batch).sum.sum().backward()
    assert len(calls) == len(layers)
    common = ["--method", "dpo", "--data", pairs_file, "--max-steps", "2", "--lr", "1e-3"]
    common += ["--lora", "--lora-dropout", "0.0"] if lora else []
    plain = train(tmp_path, tiny_model, *common, name="plain")
    ckpt = train(tmp_path, tiny_model, *common, "--gradient-checkpointing", name="ckpt")
    file = "adapter_model.safetensors" if lora else "model.safetensors"
    a, b = (load_file(run / "model" / file) for run in (plain, ckpt))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    start = {} if lora else load_file(Path(tiny_model) / "model.safetensors")
    moved = [(a[k] - start.get(k, torch.zeros_like(a[k]))).abs().max().item() for k in a]
    assert max(moved) > 1e-4  # it did train


def test_lora_reference_is_adapter_disabled(tmp_path, tiny_model, pairs_file):
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        "dpo",
        "--data",
        pairs_file,
        "--lora",
        "--lora-r",
        "4",
        "--max-steps",
        "3",
        "--lr",
        "1e-2",
        "--lora-targets",
        "q_proj",
        "v_proj",
    )
    logged = rows(out / "metrics.jsonl")
    assert logged[0]["rewards/margins"] == 0.0  # LoRA B starts at 0: policy == reference
    assert logged[-1]["rewards/margins"] != 0.0
    config = json.loads((out / "model" / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert not (out / "model" / "model.safetensors").exists()  # only the adapter is saved


def test_deft_guidance_logs_r_q_and_changes_training(tmp_path, tiny_model, pairs_file):
    common = ["--method", "dpo", "--data", pairs_file, "--max-steps", "3", "--lr", "1e-3"]
    plain = train(tmp_path, tiny_model, *common, name="plain")
    # lambda = 0 with --log-r-q: R_Q is logged (no gradient), the run without the term
    without = train(tmp_path, tiny_model, *common, "--log-r-q", name="without")
    deft = train(tmp_path, tiny_model, *common, "--deft-lambda", "0.5", name="deft")
    p, w, d = (rows(run / "metrics.jsonl") for run in (plain, without, deft))
    assert "deft/r_q" not in p[0] and "deft/r_q" in w[0] and "deft/r_q" in d[0]
    # same first forward: the DEFT run's loss is the DPO loss - 0.5 * R_Q
    assert d[0]["deft/r_q"] == pytest.approx(w[0]["deft/r_q"], abs=1e-6)
    assert d[0]["loss"] == pytest.approx(p[0]["loss"] - 0.5 * d[0]["deft/r_q"], abs=1e-5)
    # same batches: the term raises R_Q above the run without it
    assert d[-1]["deft/r_q"] > w[-1]["deft/r_q"]


def test_reference_cached_with_tokenized_data(tmp_path, tiny_model, pairs_file):
    out = train(tmp_path, tiny_model, "--method", "dpo", "--data", pairs_file, "--max-steps", "1")
    saved = torch.load(out / "cache" / "train.pt", weights_only=True)  # plain data only
    assert saved["format"] == CACHE_FORMAT
    assert saved["ref"].shape == (16, 2) and len(saved["encoded"]) == 16
    assert (saved["ref"] < 0).all()
    assert set(saved["encoded"][0]) == {
        "prompt",
        "responses",
        "labels",
        "high_quality",
        "binary",
        "index",
    }


def _cache_rerun(tmp_path, tiny_model, pairs_file, caplog):
    """Run again in the same directory (--overwrite: the cache is kept); whether the cached
    reference was reused."""
    caplog.clear()
    args = ["--method", "dpo", "--data", pairs_file, "--max-steps", "1", "--overwrite"]
    with caplog.at_level(logging.INFO):
        train(tmp_path, tiny_model, *args)
    return "reusing tokenized data" in caplog.text


def test_data_cache_is_reused_and_stale_caches_are_recomputed(
    tmp_path, tiny_model, pairs_file, caplog
):
    out = train(tmp_path, tiny_model, "--method", "dpo", "--data", pairs_file, "--max-steps", "1")
    cache = out / "cache" / "train.pt"
    fresh = torch.load(cache, weights_only=True)
    assert _cache_rerun(tmp_path, tiny_model, pairs_file, caplog)
    # a cache of another format version (e.g. written by an older alignkit) is a miss
    torch.save({**fresh, "format": "alignkit-data-cache-v1"}, cache)
    assert not _cache_rerun(tmp_path, tiny_model, pairs_file, caplog)
    assert torch.load(cache, weights_only=True)["format"] == CACHE_FORMAT  # rewritten
    # the old pickle of alignkit classes cannot be loaded with weights_only=True: a miss too
    torch.save({"key": {}, "prepared": Prepared([], None, 2)}, cache)
    assert not _cache_rerun(tmp_path, tiny_model, pairs_file, caplog)
    cache.write_bytes(b"not a torch file")
    assert not _cache_rerun(tmp_path, tiny_model, pairs_file, caplog)
    reloaded = torch.load(cache, weights_only=True)
    assert torch.equal(reloaded["ref"], fresh["ref"]) and reloaded["encoded"] == fresh["encoded"]


def test_yaml_config_and_flag_override(tmp_path, tiny_model, pairs_file):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"method: sft\ndata: {pairs_file}\nmax-steps: 5\nlr: 0.001\nbatch_size: 2\n")
    out = train(tmp_path, tiny_model, "--config", str(cfg), "--max-steps", "2")
    saved = json.loads((out / "config.json").read_text())
    assert saved["method"] == "sft" and saved["max_steps"] == 2 and saved["batch_size"] == 2
    assert saved["lr"] == 0.001


def test_bad_inputs_exit_2(tmp_path, tiny_model, pairs_file, capsys):
    base = ["train", "--model", tiny_model, "--output", str(tmp_path / "x")]
    assert main(base + ["--method", "nope", "--data", pairs_file]) == 2
    assert "nope" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": 3}\n')
    assert main(base + ["--method", "dpo", "--data", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert main(base + ["--method", "dpo", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert main(base + ["--method", "dpo", "--data", pairs_file, "--batch-size", "0"]) == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 1\n")
    assert main(base + ["--config", str(cfg), "--data", pairs_file]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert not (tmp_path / "x" / "model").exists()


def _cli(*args: str) -> list[str]:
    return [str(BIN / "alignkit"), *args]


def dpo_args(data: str, model: str, steps: int, lr: float) -> list[str]:
    """`alignkit train` flags of a float32 DPO run of `steps` optimizer steps."""
    return ["--method", "dpo", "--data", data, "--model", model, "--precision", "fp32",
            "--max-steps", str(steps), "--lr", str(lr)]  # fmt: skip


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, tiny_model, pairs_file):
    common = ["train", *dpo_args(pairs_file, tiny_model, steps=400, lr=1e-4)]
    common += ["--save-steps", "5", "--batch-size", "2"]
    full = tmp_path / "full"
    run_launched(_cli(*common, "--output", str(full)))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*common, "--output", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("step-*")) and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model").exists()  # it really died before the end
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert max(steps) < 400

    run_launched(_cli(*common, "--output", str(killed), "--resume"))
    a, b = _weights(full), _weights(killed)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    logged = rows(killed / "metrics.jsonl")
    assert [r["step"] for r in logged] == list(range(1, 401))  # no gap, no duplicate


@pytest.mark.parametrize("launcher", ["accelerate", "torchrun"])
def test_two_processes_match_one_with_same_global_batch(tmp_path, tiny_model, pairs_file, launcher):
    common = ["train", *dpo_args(pairs_file, tiny_model, steps=4, lr=1e-3)]
    two, one = tmp_path / "two", tmp_path / "one"
    alignkit_on_two_ranks(launcher, *common, "--batch-size", "2", "--output", str(two))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the ranks' thread count: the same sums
    run_launched([sys.executable, "-m", "alignkit", *common, "--batch-size", "4", "--output",
                  str(one)], env)  # fmt: skip
    a, b = _weights(two), _weights(one)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    last2, last1 = rows(two / "metrics.jsonl")[-1], rows(one / "metrics.jsonl")[-1]
    assert last2["loss"] == pytest.approx(last1["loss"], abs=1e-5)


def test_report_to_tensorboard_writes_events(tmp_path, tiny_model, pairs_file):
    pytest.importorskip("tensorboard")
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        "sft",
        "--data",
        pairs_file,
        "--max-steps",
        "2",
        "--report-to",
        "tensorboard",
        "--no-save-model",
    )
    events = list(out.rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_lora_all_linear_shorthand(tmp_path, tiny_model, pairs_file):
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        "sft",
        "--data",
        pairs_file,
        "--lora",
        "--lora-targets",
        "all-linear",
        "--max-steps",
        "1",
    )
    config = json.loads((out / "model" / "adapter_config.json").read_text())
    names = {t.rsplit(".", 1)[-1] for t in config["target_modules"]}
    assert {"q_proj", "v_proj", "down_proj", "gate_proj"} <= names


# ------------------------------------------------------------ labels and messy data


def red_team_rows(n: int) -> list[dict]:
    """Red-team-style points: one reply per attack, rated 0 (failed attack, best) .. 4."""
    return [
        {
            "prompt": f"\n\nHuman: attack {i}\n\nAssistant:",
            "completion": f" reply {i}",
            "label": i % 5,
        }
        for i in range(n)
    ]


def test_ulma_variant_is_chosen_once_per_run(tmp_path, tiny_model):
    # demonstrations (binary) and red-team ratings (scores) in one run, one point per batch:
    # the old registry picked the variant per batch, so the demonstration batches trained
    # binary ULMA (no loss/mse) and the rating batches the continuous one. Now every step
    # of the run is the continuous variant.
    demos = [{"prompt": f"q {i}?", "completion": " sorry I can not help"} for i in range(4)]
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        "ulma",
        "--data",
        write_jsonl(tmp_path / "demos.jsonl", demos),
        write_jsonl(tmp_path / "red.jsonl", red_team_rows(5)),
        "--label-transform",
        "1 - z/4",
        "--high-quality-if",
        "z == 0",
        "--batch-size",
        "1",
        "--max-steps",
        "9",
    )
    logged = rows(out / "metrics.jsonl")
    assert len(logged) == 9 and all("loss/mse" in r for r in logged)
    data = json.loads((out / "summary.json").read_text())["data"]
    assert data["label_variant"] == "continuous"
    # ratings 0..4 -> 1 - z/4 = 1, 0.75, 0.5, 0.25, 0; one of them rated 0
    assert data["labels"] == {
        "score_labels": 5,
        "label_transform": "1 - z/4",
        "high_quality_if": "z == 0",
        "high_quality_scores": 1,
        "label_range": [0.0, 1.0],
    }
    assert "skip_invalid" not in data


def test_label_options_are_checked_before_loading(tmp_path, tiny_model, pairs_file, capsys):
    args = ["train", "--model", tiny_model, "--output", str(tmp_path / "r"), "--data", pairs_file]
    assert main([*args, "--method", "ulma", "--label-transform", "z*z"]) == 2
    assert "cannot read --label-transform 'z*z'" in capsys.readouterr().err
    assert main([*args, "--method", "ulma", "--high-quality-if", "z = 0"]) == 2
    assert "cannot read --high-quality-if" in capsys.readouterr().err
    # pairs have no real-valued labels: the option would do nothing
    assert main([*args, "--method", "ulma", "--label-transform", "4 - z"]) == 2
    assert "applies to real-valued point labels" in capsys.readouterr().err
    assert not (tmp_path / "r" / "model").exists()


def hh_rows_with_empty_answers() -> list[dict]:
    """Pairs shaped like Anthropic HH-RLHF: 8 good ones, two with an empty final answer
    (chosen, then rejected) and a duplicate."""
    good = pair_rows(8, seed=5)
    prompt = "\n\nHuman: how do I make a bomb?\n\nAssistant:"
    return [
        *good[:4],
        {"chosen": prompt, "rejected": prompt + " sure here is how"},  # line 5
        *good[4:],
        {"chosen": prompt + " sorry I can not help", "rejected": prompt + " "},  # line 10
        good[0],
    ]


@pytest.mark.parametrize("verb", ["train", "train-rm"])
def test_skip_invalid_drops_and_lists_records(tmp_path, tiny_model, capsys, verb):
    data = write_jsonl(tmp_path / "hh.jsonl", hh_rows_with_empty_answers())
    out = tmp_path / verb
    args = [verb, "--model", tiny_model, "--output", str(out), "--data", data]
    args += ["--max-steps", "1", "--precision", "fp32"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{data}:5: the final answer of 'chosen' is empty" in err
    assert "or pass --skip-invalid to drop such records" in err
    held = write_jsonl(tmp_path / "held.jsonl", [*pair_rows(2, seed=9), {"chosen": "x"}])
    assert main([*args, "--skip-invalid", "--eval-data", held]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["skip_invalid"] == {
        "rejected": 3,
        "by_reason": {
            "the final answer of 'chosen' is empty": 1,
            "the final answer of 'rejected' is empty": 1,
            "missing field 'rejected'": 1,
        },
        "file": "rejected.jsonl",
    }
    listed = rows(out / "rejected.jsonl")
    assert [r["where"] for r in listed] == [f"{data}:5", f"{data}:10", f"{held}:3"]
    assert listed[0]["record"]["rejected"].endswith("sure here is how")


def test_truncation_drop_with_a_reference(tmp_path, tiny_model):
    """--truncation drop removes over-long pairs before the reference pass: the kept examples
    must look up their own reference rows (the first, long pair used to shift every lookup
    and end in an IndexError). Held-out pairs go through the same path."""
    rows = pair_rows(8)
    rows[0]["chosen"] = rows[0]["chosen"].replace("danger", "danger " + "the cat " * 200)
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = train(
        tmp_path,
        tiny_model,
        "--method",
        "dpo",
        "--data",
        data,
        "--eval-data",
        data,
        "--truncation",
        "drop",
        "--max-length",
        "64",
        "--max-steps",
        "2",
    )
    summary = json.loads((out / "summary.json").read_text())
    # before training the policy is the reference: every held-out margin is exactly 0
    assert summary["eval_before"]["eval/rewards/margins"] == 0.0
    cached = torch.load(out / "cache" / "train.pt", weights_only=True)
    assert cached["records"] == list(range(1, 8))
    assert [e["index"] for e in cached["encoded"]] == list(range(7))


def test_a_model_retrained_in_place_is_not_served_stale_reference_log_probs(
    tmp_path, tiny_model, pairs_file, caplog
):
    """The data cache holds the reference log-probs of `--model`; a model folder rewritten
    since (e.g. `runs/sft` retrained in place) must not reuse them."""
    import shutil

    model = tmp_path / "sft-model"
    shutil.copytree(tiny_model, model)
    args = ["--method", "dpo", "--data", pairs_file, "--max-steps", "1"]
    train(tmp_path, str(model), *args, name="dpo")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tmp_path, str(model), *args, "--overwrite", name="dpo")
    assert "reusing tokenized data" in caplog.text  # unchanged model: the cache is used
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # rewritten in place (new mtime)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tmp_path, str(model), *args, "--overwrite", name="dpo")
    assert "reusing tokenized data" not in caplog.text


# ------------------------------------------------ the reference is the starting policy


def _eval_rewards_before(out: Path) -> list[float]:
    first = rows(out / "metrics.jsonl")[0]
    assert first["step"] == 0
    return [first[f"eval/rewards/{k}"] for k in ("chosen", "rejected", "margins")]


@pytest.mark.parametrize("case", ["fresh-lora", "adapter", "adapter+lora", "lora-run", "full"])
def test_reference_is_the_starting_policy(tmp_path, tiny_model, sft_adapter, pairs_file, case):
    """Before any step the policy is the reference: implicit rewards exactly 0 on held-out pairs,
    whatever the model starts from. The old code took the base model without the SFT adapter
    as the reference of `--model ADAPTER` (and of a LoRA run): chosen/rejected rewards != 0."""
    from alignkit.models import load_causal_lm, reference_context
    from alignkit.runs import resolve_model_spec

    common = ["--method", "dpo", "--data", pairs_file, "--eval-data", pairs_file]
    common += ["--max-steps", "1", "--lr", "1e-2"]
    model = {"fresh-lora": tiny_model, "full": tiny_model}.get(case, sft_adapter)
    if case == "lora-run":  # an SFT stage: `train --method sft --lora`, then train from the run
        sft = ["--method", "sft", "--data", pairs_file, "--max-steps", "2", "--lr", "5e-2"]
        model = str(train(tmp_path, tiny_model, *sft, "--lora", name="sft"))
    lora = ["--lora", "--lora-targets", "q_proj", "v_proj"]
    out = train(tmp_path, model, *common, *(lora if case in ("fresh-lora", "adapter+lora") else []))
    assert _eval_rewards_before(out) == [0.0, 0.0, 0.0]
    assert rows(out / "metrics.jsonl")[-1]["eval/rewards/margins"] != 0.0  # it trained
    summary = json.loads((out / "summary.json").read_text())
    assert summary["base_model"] == os.path.abspath(model)
    if case in ("adapter", "lora-run"):  # the trained adapter belongs to the starting model:
        trained = load_causal_lm(str(out))  # loads (chained adapters are merged in turn) and
        start = load_causal_lm(model).merge_and_unload()  # its reference is the start
        assert resolve_model_spec(str(out)).base == summary["base_model"]
        assert resolve_model_spec(str(out)).root_weights == tiny_model  # what vLLM starts
        ids = torch.tensor([[5, 9, 17, 33, 2]])
        with torch.no_grad(), reference_context(trained):
            got = trained(ids).logits
        assert torch.allclose(got, start(ids).logits, atol=1e-5)


# ------------------------------------------------ dropout off in preference training


@pytest.fixture
def dropout_model(tiny_model, tmp_path) -> str:
    """`tiny_model` with attention dropout 0.3 (read by Llama's attention as a float)."""
    from alignkit.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(tiny_model)
    model.config.attention_dropout = 0.3
    path = tmp_path / "dropout-model"
    model.save_pretrained(path)
    load_tokenizer(tiny_model).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize(
    "flags, deterministic",
    [
        ({}, True),  # the default: every dropout off (attention's and LoRA's)
        ({"lora": False}, True),  # full fine-tuning: the model's own dropout off too
        ({"keep_dropout": True}, False),
        ({"lora_preset": "ulma"}, False),  # the ULMA recipe keeps its LoRA dropout
        ({"lora_preset": "ulma", "keep_dropout": False}, True),
    ],
)
def test_dropout_is_off_in_training_by_default(
    tmp_path, dropout_model, pairs_file, flags, deterministic
):
    """Two forward passes in training mode give the same log-probs unless dropout is kept
    (the old code kept it: they differed)."""
    from alignkit.data import load_records
    from alignkit.data.tokenize import encode_records
    from alignkit.models import load_tokenizer
    from alignkit.scoring.packing import collate
    from alignkit.train.config import TrainConfig
    from alignkit.train.trainer import Trainer

    values = dict(model=dropout_model, data=[pairs_file], output=str(tmp_path / "o"), lora=True)
    values.update(lora_dropout=0.3, lora_targets=["q_proj", "v_proj"], **flags)
    config = TrainConfig(**values)
    assert config.keep_dropout is not deterministic  # resolved, as config.json records it
    tokenizer = load_tokenizer(dropout_model)
    scorer = Trainer(config).build_scorer(tokenizer).train()
    batch = collate(encode_records(load_records([pairs_file])[0][:4], tokenizer)[0], 2)
    torch.manual_seed(0)
    with torch.no_grad():
        first, second = scorer(batch).sum, scorer(batch).sum
    assert torch.equal(first, second) is deterministic
