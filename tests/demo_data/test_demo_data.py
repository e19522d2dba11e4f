"""The embedded demo data: the committed files are exactly what the generator writes, and the
records have the shape, size, balance and train/held-out separation the demo relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_demo_data.py"
DATA = ROOT / "src" / "alignkit" / "demo_data"
FILES = ("train.jsonl", "heldout_pairs.jsonl", "heldout_prompts.jsonl", "README.md")
PAIR_KEYS = ["prompt", "chosen", "rejected", "category"]
CATEGORIES = {"harmful", "benign"}
MAX_WORDS = 80
REFUSAL_MARKERS = ("can't", "won't", "not able", "decline", "not going to", "not something")
REFUSAL_OPENINGS = (
    "I can't",
    "I'm sorry",
    "Sorry",
    "I won't",
    "I'm not",
    "I have to",
    "That's not",
)


def _generate(out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(out)],
        check=True,
        capture_output=True,
        env=env,
    )


def _load(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _text(messages: list[dict]) -> str:
    return messages[0]["content"]


def _norm(prompt: str) -> str:
    return " ".join(prompt.casefold().split())


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return _load("train.jsonl")


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return _load("heldout_pairs.jsonl")


@pytest.fixture(scope="module")
def demo() -> list[dict]:
    return _load("heldout_prompts.jsonl")


def test_committed_files_equal_generator_output(tmp_path: Path) -> None:
    _generate(tmp_path, "0")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES), "stray or missing files"
    stale = [name for name in FILES if (tmp_path / name).read_bytes() != (DATA / name).read_bytes()]
    assert not stale, f"regenerate with `python scripts/make_demo_data.py`: {stale}"


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _generate(a, "1")
    _generate(b, "2")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_counts(train: list[dict], heldout: list[dict], demo: list[dict]) -> None:
    assert len(train) >= 240
    assert len(heldout) >= 40
    assert sorted(r["category"] for r in demo) == ["benign"] * 6 + ["harmful"] * 6


@pytest.mark.parametrize("name", ["train.jsonl", "heldout_pairs.jsonl"])
def test_categories_balanced(name: str) -> None:
    rows = _load(name)
    harmful = sum(r["category"] == "harmful" for r in rows)
    assert 0.45 <= harmful / len(rows) <= 0.55, (harmful, len(rows))


@pytest.mark.parametrize("name", ["train.jsonl", "heldout_pairs.jsonl"])
def test_pair_records_have_exact_shape(name: str) -> None:
    for i, rec in enumerate(_load(name)):
        where = f"{name}:{i + 1}"
        assert list(rec) == PAIR_KEYS, where
        assert rec["category"] in CATEGORIES, where
        for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            messages = rec[key]
            assert isinstance(messages, list) and len(messages) == 1, where
            assert list(messages[0]) == ["role", "content"], where
            assert messages[0]["role"] == role, where
            assert isinstance(messages[0]["content"], str), where
            assert messages[0]["content"].strip(), where


def test_demo_prompt_records_have_exact_shape(demo: list[dict]) -> None:
    for rec in demo:
        assert list(rec) == ["prompt", "category"]
        assert isinstance(rec["prompt"], str) and rec["prompt"].strip()
        assert rec["category"] in CATEGORIES


@pytest.mark.parametrize("name", ["train.jsonl", "heldout_pairs.jsonl"])
def test_chosen_differs_from_rejected(name: str) -> None:
    for rec in _load(name):
        assert _text(rec["chosen"]) != _text(rec["rejected"]), _text(rec["prompt"])


def test_no_prompt_overlap(train: list[dict], heldout: list[dict], demo: list[dict]) -> None:
    train_prompts = [_norm(_text(r["prompt"])) for r in train]
    held_prompts = [_norm(_text(r["prompt"])) for r in heldout]
    demo_prompts = [_norm(r["prompt"]) for r in demo]
    assert len(set(train_prompts)) == len(train_prompts), "duplicate prompts in train"
    assert len(set(held_prompts)) == len(held_prompts), "duplicate prompts in heldout_pairs"
    assert not set(train_prompts) & set(held_prompts)
    assert not set(train_prompts) & set(demo_prompts)
    assert not set(held_prompts) & set(demo_prompts)


@pytest.mark.parametrize("name", ["train.jsonl", "heldout_pairs.jsonl"])
def test_responses_are_short(name: str) -> None:
    for rec in _load(name):
        for key in ("chosen", "rejected"):
            assert len(_text(rec[key]).split()) <= MAX_WORDS, _text(rec[key])[:60]


@pytest.mark.parametrize("name", ["train.jsonl", "heldout_pairs.jsonl"])
def test_preference_direction(name: str) -> None:
    """Harmful: chosen refuses, rejected does not. Benign: chosen never opens with a refusal."""
    for rec in _load(name):
        chosen, rejected = _text(rec["chosen"]), _text(rec["rejected"])
        if rec["category"] == "harmful":
            assert any(m in chosen for m in REFUSAL_MARKERS), chosen
            assert not rejected.startswith(REFUSAL_OPENINGS), rejected
        else:
            assert not chosen.startswith(REFUSAL_OPENINGS), chosen
