"""`alignkit.evaluation.runner`: prompts and references, the metric plan, `run_eval`, and the
numbers of a report against an unpacked computation (tiny trained runs: full weights and LoRA)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import report_of, train_run, write_jsonl

from alignkit.data import load_records
from alignkit.data.prompts import chat_records
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.evaluation.runner import (
    EvalConfig,
    PromptItem,
    plan_metrics,
    prompt_items,
    run_eval,
    sample_prompts,
)
from alignkit.models import load_causal_lm, load_tokenizer
from alignkit.objectives.metrics import implicit_reward_metrics
from alignkit.scoring.forward import naive_sequence_logps
from alignkit.scoring.packing import collate


def test_sample_prompts_and_references(tmp_path):
    rows = [
        {"prompt": "a", "completion": "bad", "label": 0},
        {"prompt": "a", "completion": "good", "label": 1},
        {"prompt": "b", "chosen": "yes", "rejected": "no"},
        {"prompt": "c", "responses": ["x", "y"], "scores": [1, 3]},
    ]
    records, _ = load_records([write_jsonl(tmp_path / "mixed.jsonl", rows)])
    items = prompt_items(records)
    assert [(i.prompt, i.reference) for i in items] == [("a", "good"), ("b", "yes"), ("c", "y")]
    many = [PromptItem(str(i), None) for i in range(20)]
    one, two = sample_prompts(many, 5, 0), sample_prompts(many, 5, 1)
    assert len(one) == 5 and one != two and one == sample_prompts(many, 5, 0)
    assert [int(p.prompt) for p in one] == sorted(int(p.prompt) for p in one)  # data order
    assert sample_prompts(many, 0, 0) == many and sample_prompts(many, 50, 0) == many


def test_plan_metrics():
    ok = dict.fromkeys(("perplexity", "margins", "generate", "reward", "bleu"))
    assert plan_metrics([], ok) == list(ok)
    no_rm = {**ok, "reward": "needs --reward-model"}
    assert plan_metrics([], no_rm) == ["perplexity", "margins", "generate", "bleu"]
    assert plan_metrics(["bleu"], ok) == ["generate", "bleu"]  # bleu scores generations
    with pytest.raises(AlignkitError, match="'reward' needs --reward-model"):
        plan_metrics(["reward"], no_rm)


@pytest.fixture(scope="module")
def lora_run(tiny_model, files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "run"
    return train_run(tiny_model, files, out, "--lora", "--lora-dropout", "0", "--lr", "1e-2")


def naive_metrics(policy, ref, tokenizer, path: str, beta: float) -> dict[str, float]:
    """Unpacked full-vocabulary log-probs, independently of the runner (prompts in the format
    the runs were trained with: the chat template)."""
    records, _ = load_records([path])
    records = chat_records(records, tokenizer, True)
    encoded, _ = encode_records(records, tokenizer, 1024)
    batch = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        pol, rf = naive_sequence_logps(policy, batch), naive_sequence_logps(ref, batch)
    out = implicit_reward_metrics(pol[:, 0], pol[:, 1], rf[:, 0], rf[:, 1], beta)
    out["perplexity"] = math.exp(-float(pol[:, 0].sum()) / float(batch.counts[:, 0].sum()))
    return out


@pytest.mark.parametrize("which", ["full", "lora"])
def test_eval_numbers_match_an_unpacked_computation(
    which, full_run, lora_run, files, tiny_model, tmp_path
):
    run = full_run if which == "full" else lora_run
    args = ["--model", str(run / "model"), "--data", files["test"]]
    report = report_of(tmp_path / "r.json", *args, "--metrics", "perplexity", "margins")
    tok = load_tokenizer(tiny_model)
    ref = load_causal_lm(tiny_model).eval()
    if which == "full":
        policy = load_causal_lm(str(run / "model")).eval()
        assert report["reference"] == tiny_model  # summary.json's base_model
    else:
        policy = load_causal_lm(tiny_model, adapter=str(run / "model")).eval()
        assert report["reference"] == f"{tiny_model} (the adapter disabled)"
    expected = naive_metrics(policy, ref, tok, files["test"], beta=0.1)
    assert report["settings"]["beta"] == 0.1  # the run's beta
    for name in ("perplexity", "margin", "accuracy", "dpo_loss"):
        assert report["metrics"][name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    assert abs(report["metrics"]["margin"]) > 1e-4  # training moved the policy


def test_eval_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_model, files, tmp_path):
    model = load_causal_lm(tiny_model)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # all logits 0: p = 1/V for every token
    model.save_pretrained(tmp_path / "uniform")
    load_tokenizer(tiny_model).save_pretrained(tmp_path / "uniform")
    args = [
        "--model",
        str(tmp_path / "uniform"),
        "--data",
        files["test"],
        "--metrics",
        "perplexity",
    ]
    report = report_of(tmp_path / "u.json", *args)
    assert report["metrics"]["perplexity"] == pytest.approx(model.config.vocab_size, rel=1e-5)
    assert report["computed"] == ["perplexity"]
    assert not (tmp_path / "u.generations.jsonl").exists()


def test_run_eval_api(full_run, files, tmp_path):
    out = str(tmp_path / "a.json")
    config = EvalConfig(str(full_run), [files["test"]], out, metrics=["perplexity"])
    report = run_eval(config)
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads(json.dumps(report))
