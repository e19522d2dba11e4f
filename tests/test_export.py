"""The model card of `alignkit export` (`export.model_card`) on run directories written by
hand: an online run (its verb recorded in config.json), a reward model, data files counted."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import write_jsonl

from alignkit.export import count_records, model_card
from alignkit.online.config import RAFTConfig
from alignkit.runs import REWARD_MARKER, resolve_model_spec


def fake_run(root: Path, config: dict, summary: dict, marker: dict | None = None) -> str:
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text("{}")
    if marker:
        (root / "model" / REWARD_MARKER).write_text(json.dumps(marker))
    (root / "config.json").write_text(json.dumps(config))
    (root / "summary.json").write_text(json.dumps(summary))
    return str(root)


def test_an_online_runs_card_names_its_verb_and_prompts(tmp_path):
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"prompt": f"q{i}"} for i in range(5)])
    config = RAFTConfig(queries=queries, output="o").public_dict()
    assert config["method"] == "raft"  # what the online loop writes into config.json
    summary = {"steps": 3, "final_metrics": {"reward/mean": 0.25}}
    card = model_card(
        resolve_model_spec(fake_run(tmp_path / "raft", config, summary)), "full", "9.9"
    )
    assert "| method | `raft` |" in card and "| alignkit | 9.9 |" in card
    assert "| queries | `queries.jsonl` | 5 records |" in card
    assert "| reward/mean | last step | 0.25 |" in card
    assert "Dong et al. (2023)" in card and "Liu et al. (2024)" in card  # RAFT, PLE's baseline


def test_a_reward_models_card(tmp_path):
    marker = {"method": "bradley-terry", "base_model": "org/base"}
    run = fake_run(tmp_path / "rm", {"model": "org/base", "data": ["x.parquet"]}, {}, marker)
    card = model_card(resolve_model_spec(run), "full", "9.9")
    assert "| method | `bradley-terry` |" in card and "Ouyang et al. (2022)" in card
    assert "| data | `x.parquet` | not counted (not a local file) |" in card
    assert count_records(__file__) == "not counted (not jsonl)"
