"""Options of `alignkit train` (`alignkit.train.config`): defaults resolved from other options."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.train.config import FULL_LR, LORA_LR, TrainConfig


@pytest.mark.parametrize(
    "values, expected",
    [
        ({}, FULL_LR),  # full fine-tuning
        ({"lora": True}, LORA_LR),
        ({"model": "ADAPTER"}, LORA_LR),  # an adapter --model trains a fresh adapter
        ({"lr": 3e-5}, 3e-5),  # an explicit --lr always wins
        ({"lora": True, "lr": 2e-6}, 2e-6),
        ({"model": "ADAPTER", "lr": 7e-6}, 7e-6),
    ],
)
def test_default_learning_rate(sft_adapter, values, expected) -> None:
    if values.get("model") == "ADAPTER":
        values = values | {"model": sft_adapter}
    assert TrainConfig(**values).lr == expected
    assert FULL_LR == 5e-6 and LORA_LR > 10 * FULL_LR


def test_config_json_records_the_learning_rate_used(tmp_path, tiny_model, pairs_file) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", tiny_model, "--data", pairs_file, "--output", str(out)]
    assert main([*args, "--lora", "--max-steps", "1", "--precision", "fp32"]) == 0
    assert json.loads((out / "config.json").read_text())["lr"] == LORA_LR
