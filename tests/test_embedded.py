"""Integration tests on the embedded SmolLM2-135M-Instruct (slower: tens of seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.commands.demo import demo_file, is_refusal
from alignkit.models import default_model_path, load_causal_lm, load_tokenizer

pytestmark = pytest.mark.slow


def test_default_model_is_a_plain_float_checkpoint():
    path = default_model_path()
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF flag is gone: Trainer/save work
    model = load_causal_lm("default")
    assert next(model.parameters()).dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    tok = load_tokenizer("default")
    assert tok.eos_token == "<|im_end|>" and tok.chat_template


def test_default_model_generates_an_answer():
    from alignkit.data.prompts import as_prompt
    from alignkit.inference.generation import SamplingConfig, generate

    model, tok = load_causal_lm("default"), load_tokenizer("default")
    (answer,) = generate(
        model,
        tok,
        [as_prompt("What is the capital of France?", True)],
        SamplingConfig(max_new_tokens=12),
        torch.bfloat16,
        progress=False,
    )
    assert "Paris" in answer


def test_lora_dpo_steps_on_demo_pairs(tmp_path):
    lines = open(demo_file("train.jsonl")).read().splitlines()[:8]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = [
        "train",
        "--method",
        "dpo",
        "--data",
        str(data),
        "--model",
        "default",
        "--lora",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--output",
        str(out),
        "--max-length",
        "192",
    ]
    assert main(args) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # adapter starts at 0
    assert rows[-1]["rewards/margins"] > 0
    assert (out / "model" / "adapter_config.json").exists()


def test_refusal_detector():
    assert is_refusal("I can't help with that. Making explosives is dangerous.")
    assert is_refusal("I'm sorry, but I cannot assist with this request.")
    assert not is_refusal("Sure! To make a tomato sauce, simmer tomatoes with garlic.")
    assert is_refusal("That’s not something I can help with.")  # typographic apostrophe
    assert is_refusal("I have to decline this one.")


def test_refusal_detector_agrees_with_the_embedded_labels():
    """Every refusal the demo data teaches counts as one; no helpful answer does."""
    rows = [json.loads(x) for x in Path(demo_file("train.jsonl")).read_text().splitlines()]
    for row in rows:
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        if row["category"] == "harmful":
            assert is_refusal(chosen) and not is_refusal(rejected), (chosen, rejected)
        else:  # a benign pair's rejected answer is a refusal or a wrong answer
            assert not is_refusal(chosen), chosen
