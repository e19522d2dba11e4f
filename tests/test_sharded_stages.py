"""Stages that split their work over launched processes: `eval`, the selectors' scores and
`generate` give under 2 CPU ranks (gloo) what they give in one process.

Each test launches the stage once with 2 processes and runs it once in this process.
Under the launcher every process takes a fixed share (length-sorted batches, generation
batches, record slices) and the results are gathered back in order, so the numbers agree
to float noise and the generated texts exactly (every batch is generated with its own seed
and the same prompts, whichever process runs it).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model, pair_rows, run_launched, two_ranks, write_jsonl

from alignkit.cli import main

N = 9  # records / prompts: uneven shares over 2 processes


def launcher() -> list[str]:
    """torchrun's 2 ranks, or accelerate's where torchrun is missing."""
    try:
        return two_ranks("torchrun")
    except pytest.skip.Exception:
        return two_ranks("accelerate")


# `alignkit ARGS...` that also writes how many processes ran it (main process) to a file
CLI_SCRIPT = """
import sys

from alignkit.cli import main
from alignkit.distributed import distributed_state

code = main(sys.argv[2:])
if distributed_state().is_main_process:
    open(sys.argv[1], "w").write(str(distributed_state().num_processes))
sys.exit(code)
"""


def launch_cli(tmp_path: Path, *args: str) -> None:
    """`alignkit ARGS` under the launcher with 2 processes; checks that 2 ran it."""
    script, world = tmp_path / "run_cli.py", tmp_path / "world.txt"
    script.write_text(CLI_SCRIPT)
    launch(str(script), str(world), *args)
    assert world.read_text() == "2"


def launch(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `args` (a script and its arguments) under the launcher with 2 processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return run_launched([*launcher(), *args], env, timeout=timeout)


@pytest.fixture(autouse=True)
def one_thread():
    """The launched ranks compute with one thread; so does the one-process run here (the
    float sums, hence sampled tokens, then follow the same order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory) -> dict[str, str]:
    """The tiny policy, a reference (same tokenizer, other weights) and a tiny
    sequence-classifier reward model with the same tokenizer."""
    from transformers import AutoConfig, LlamaForSequenceClassification

    root = tmp_path_factory.mktemp("sharded-models")
    ref, reward = root / "ref", root / "reward"
    for path in (ref, reward):
        shutil.copytree(tiny_model, path)
        (path / "model.safetensors").unlink()
    vocab = AutoConfig.from_pretrained(tiny_model).vocab_size
    make_tiny_model(ref, vocab, seed=1)
    config = AutoConfig.from_pretrained(tiny_model, num_labels=1)
    torch.manual_seed(2)
    LlamaForSequenceClassification(config).save_pretrained(reward)
    return {"policy": tiny_model, "ref": str(ref), "reward": str(reward)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    rows = pair_rows(N, seed=3)
    for i, row in enumerate(rows):  # responses of different lengths: varied batches
        row["chosen"] += " kind" * (i % 4)
        row["rejected"] += " bad" * (i % 3)
    return write_jsonl(tmp_path_factory.mktemp("sharded-data") / "pairs.jsonl", rows)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------ eval


def test_eval_on_two_processes_equals_one(tmp_path, models, data):
    def args(output: Path) -> list[str]:
        return ["eval", "--model", models["policy"], "--ref", models["ref"], "--data", data,
                "--reward-model", models["reward"], "--num-prompts", "0", "--batch-size", "4",
                "--max-new-tokens", "6", "--do-sample", "--seed", "7", "--precision", "fp32",
                "--output", str(output)]  # fmt: skip

    one, two = tmp_path / "one" / "report.json", tmp_path / "two" / "report.json"
    launch_cli(tmp_path, *args(two))
    assert main(args(one)) == 0
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["computed"] == b["computed"] == ["perplexity", "margins", "generate", "reward", "bleu"]
    assert a["counts"] == b["counts"] and a["counts"]["prompts"] == N
    assert a["metrics"].keys() == b["metrics"].keys()
    for name, value in a["metrics"].items():
        assert b["metrics"][name] == pytest.approx(value, abs=1e-6), name
    gen_one, gen_two = (
        lines(one.with_suffix(".generations.jsonl")),
        lines(two.with_suffix(".generations.jsonl")),
    )
    assert [r["response"] for r in gen_one] == [r["response"] for r in gen_two]
    assert len({r["response"] for r in gen_one}) > 1  # sampled, not one repeated text
    for x, y in zip(gen_one, gen_two, strict=True):
        assert x["prompt"] == y["prompt"] and y["reward"] == pytest.approx(x["reward"], abs=1e-6)
    # the report is written once: the launched run's directory holds one set of files
    assert sorted(p.name for p in two.parent.iterdir()) == sorted(
        p.name for p in one.parent.iterdir()
    )


# ------------------------------------------------------------------------------ select

SELECT_SCRIPT = """
import dataclasses, json, sys

import alignkit.rewards.selection  # registers rm-margin
from alignkit.cli import main
from alignkit.data import load_records
from alignkit.distributed import distributed_state
from alignkit.select.registry import ScoreRequest, get_selector, register, score_records

data, policy, ref, reward, out = sys.argv[1:6]
# rm-margin scores each pair alone: split it by record slices (as `length` is)
register(dataclasses.replace(get_selector("rm-margin"), split_records=True))
records = load_records([data])[0]
cases = {
    "deft": {"form": "logprob", "score": "margin"},
    "reward-gap": {"ref": ref},
    "perplexity": {},
    "length": {"what": "pair"},
    "rm-margin": {"reward_model": reward},
}
scores = {
    name: score_records(
        name, ScoreRequest(records, options, model=policy, batch_size=2, precision="fp32")
    ).tolist()
    for name, options in cases.items()
}
assert main(["select", "perplexity", "--data", data, "--model", policy, "--count", "4",
             "--batch-size", "2", "--precision", "fp32", "--output", out + "/perplexity"]) == 0
if distributed_state().is_main_process:
    with open(out + "/scores.json", "w") as handle:
        json.dump({"world": distributed_state().num_processes, **scores}, handle)
"""


def test_selector_scores_on_two_processes_equal_one(tmp_path, models, data, monkeypatch):
    script = tmp_path / "score_all.py"
    script.write_text(SELECT_SCRIPT)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    common = [data, models["policy"], models["ref"], models["reward"]]
    launch(str(script), *common, str(two))
    monkeypatch.setattr(sys, "argv", [str(script), *common, str(one)])
    runpy.run_path(str(script), run_name="__main__")
    a, b = (
        json.loads((one / "scores.json").read_text()),
        json.loads((two / "scores.json").read_text()),
    )
    assert (a.pop("world"), b.pop("world")) == (1, 2)
    for name, values in a.items():
        assert len(values) == N and b[name] == pytest.approx(values, abs=1e-6), name
    assert len(set(a["reward-gap"])) > 1 and len(set(a["rm-margin"])) > 1  # real numbers
    for file in ("subset.jsonl", "scores.jsonl", "dropped.jsonl"):
        x, y = lines(one / "perplexity" / file), lines(two / "perplexity" / file)
        assert [r.get("index") for r in x] == [r.get("index") for r in y], file
    scores_one, scores_two = (lines(d / "perplexity" / "scores.jsonl") for d in (one, two))
    assert [r["score"] for r in scores_two] == pytest.approx(
        [r["score"] for r in scores_one], abs=1e-6
    )


# ------------------------------------------------------------------------------ generate


def test_generate_on_two_processes_writes_the_one_process_pool(tmp_path, models):
    prompts = tmp_path / "prompts.jsonl"
    texts = [" ".join(["how to", "make", "a cake"][: 1 + i % 3]) + f" {i}" for i in range(7)]
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))

    def args(output: Path) -> list[str]:
        return ["generate", "--prompts", str(prompts), "--output", str(output), "--model",
                models["policy"], "--num-responses", "2", "--max-new-tokens", "5",
                "--batch-size", "2", "--seed", "3", "--backend", "hf"]  # fmt: skip

    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    launch_cli(tmp_path, *args(two))
    assert main(args(one)) == 0
    assert two.read_bytes() == one.read_bytes()  # 4 batches in 2 rounds, in prompt order
    pool = lines(one)
    assert len(pool) == 7 and all(len(r["responses"]) == 2 for r in pool)
    assert len({r for row in pool for r in row["responses"]}) > 2  # sampled answers
