"""`alignkit.rewards.training`: `alignkit train-rm` raises the held-out pair accuracy, saves a
LoRA adapter with its score head, passes `all-linear` to peft, refuses a multi-label classifier."""

from __future__ import annotations

import json

import torch

from alignkit.cli import main
from alignkit.rewards.loading import HFReward, load_sequence_classifier
from alignkit.runs import REWARD_MARKER


def test_train_rm_refuses_a_multi_label_classifier(sentiment_classifier, rm_data, tmp_path, capsys):
    args = ["train-rm", "--data", rm_data["train"], "--model", str(sentiment_classifier)]
    code = main([*args, "--output", str(tmp_path / "rm"), "--max-steps", "1"])
    assert code == 2 and "classifier with 2 labels" in capsys.readouterr().err


def test_train_rm_raises_heldout_pair_accuracy(trained_rm, capsys):
    summary = json.loads((trained_rm / "summary.json").read_text())
    before = summary["eval_before"]["eval/rewards/accuracies"]
    after = summary["eval_after"]["eval/rewards/accuracies"]
    assert after >= 0.9 and after > before + 0.15, (before, after)
    margins = [summary[k]["eval/rewards/margins"] for k in ("eval_before", "eval_after")]
    assert margins[1] > margins[0]
    assert summary["steps"] == 16  # --epochs 2 of 64 pairs at --batch-size 8
    row = json.loads((trained_rm / "metrics.jsonl").read_text().splitlines()[1])
    names = ("chosen", "rejected", "margins", "accuracies")
    assert {f"rewards/{n}" for n in names} | {"loss"} <= set(row)
    config = json.loads((trained_rm / "config.json").read_text())
    assert config["method"] == "bradley-terry"
    model = trained_rm / "model"
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
    marker = json.loads((model / REWARD_MARKER).read_text())
    assert marker["method"] == "bradley-terry" and marker["max_length"] == 1024


def test_train_rm_lora_saves_an_adapter_with_the_score_head(trained_lora_rm, tiny_model):
    model = trained_lora_rm / "model"
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and adapter["r"] == 4
    assert "score" in adapter["modules_to_save"]
    rm = HFReward(str(model), precision="fp32")
    base = load_sequence_classifier(tiny_model)
    trained_head = rm.model.get_base_model().score.modules_to_save["default"].weight
    assert not torch.equal(trained_head, base.score.weight)  # the head was trained and saved
    assert json.loads((trained_lora_rm / "summary.json").read_text())["steps"] == 3


def test_train_rm_lora_all_linear_reaches_peft_as_its_shorthand(tiny_model, rm_data, tmp_path):
    """`--lora-targets all-linear` must reach peft as the string shorthand: as the list
    ['all-linear'] peft looks for a module of that name and fails."""
    out = tmp_path / "rm"
    args = ["train-rm", "--data", rm_data["train"], "--model", tiny_model, "--output", str(out)]
    args += ["--lora", "--lora-targets", "all-linear", "--max-steps", "1", "--precision", "fp32"]
    assert main(args) == 0
    targets = json.loads((out / "model" / "adapter_config.json").read_text())["target_modules"]
    # every linear layer of the tiny Llama but the score head (peft lists full module names)
    assert {name.rsplit(".", 1)[-1] for name in targets} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
