"""The harder embedded preference set (prefs_train.jsonl, prefs_heldout.jsonl): alignkit loads
it, it has the promised size, axes, flip rate and train/held-out separation, its metadata agrees
with its text, and the committed files are exactly what scripts/make_preference_data.py writes."""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from alignkit.data.loading import load_records
from alignkit.data.records import Pair

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_preference_data.py"
DATA = ROOT / "src" / "alignkit" / "demo_data"
TRAIN, HELDOUT = DATA / "prefs_train.jsonl", DATA / "prefs_heldout.jsonl"
FILES = ("prefs_train.jsonl", "prefs_heldout.jsonl", "PREFS_README.md")
AXES = {"correctness", "helpfulness", "harmlessness", "verbosity"}
DIFFICULTIES = {"hard", "medium", "easy"}
KEYS = [
    "prompt",
    "chosen",
    "rejected",
    "axis",
    "kind",
    "difficulty",
    "edit_distance",
    "flipped",
    "better_only",
    "worse_only",
    "id",
]


def _script_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_preference_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _run(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env
    )


def _load(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _text(messages: list[dict]) -> str:
    return messages[0]["content"]


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _diff(better: str, worse: str) -> tuple[str, str, int]:
    """Words only `better` has, words only `worse` has (chunks joined by " | "), edits."""
    a, b = better.split(), worse.split()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    changed = [(a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]
    return (
        " | ".join(" ".join(x) for x, _ in changed if x),
        " | ".join(" ".join(y) for _, y in changed if y),
        sum(max(len(x), len(y)) for x, y in changed),
    )


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _script_module()


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return _load(TRAIN)


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return _load(HELDOUT)


@pytest.mark.parametrize(("path", "minimum"), [(TRAIN, 1500), (HELDOUT, 300)])
def test_alignkit_loads_the_files(path: Path, minimum: int) -> None:
    records, summary = load_records([str(path)])
    assert len(records) >= minimum
    assert all(isinstance(r, Pair) for r in records)
    assert all(r.chosen != r.rejected for r in records)
    assert summary.files == [str(path)]


@pytest.mark.parametrize("path", [TRAIN, HELDOUT])
def test_records_have_the_promised_columns(path: Path) -> None:
    for rec in _load(path):
        assert list(rec) == KEYS, rec.get("id")
        assert rec["axis"] in AXES and rec["difficulty"] in DIFFICULTIES, rec["id"]
        assert isinstance(rec["flipped"], bool) and isinstance(rec["edit_distance"], int)
        assert rec["edit_distance"] >= 1
        for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            assert [m["role"] for m in rec[key]] == [role], rec["id"]
            assert _text(rec[key]).strip(), rec["id"]


def test_every_axis_and_difficulty_is_present(train: list[dict], heldout: list[dict]) -> None:
    for recs in (train, heldout):
        assert {r["axis"] for r in recs} == AXES
        assert {r["difficulty"] for r in recs} == DIFFICULTIES
        for axis in AXES:
            assert sum(r["axis"] == axis for r in recs) >= 0.1 * len(recs), axis


def test_chosen_differs_from_rejected(train: list[dict], heldout: list[dict]) -> None:
    for rec in train + heldout:
        assert _text(rec["chosen"]) != _text(rec["rejected"]), rec["id"]


def test_prompts_are_unique_and_disjoint(train: list[dict], heldout: list[dict]) -> None:
    train_prompts = [_norm(_text(r["prompt"])) for r in train]
    held_prompts = [_norm(_text(r["prompt"])) for r in heldout]
    assert len(set(train_prompts)) == len(train_prompts)
    assert len(set(held_prompts)) == len(held_prompts)
    assert not set(train_prompts) & set(held_prompts)


def test_flip_fraction_matches_the_stated_rate(
    script: ModuleType, train: list[dict], heldout: list[dict]
) -> None:
    rate = sum(r["flipped"] for r in train) / len(train)
    assert abs(rate - script.DEFAULT_FLIP_RATE) <= 0.02, rate
    assert sum(r["flipped"] for r in heldout) / len(heldout) == script.HELDOUT_FLIP_RATE == 0.0
    readme = (DATA / "PREFS_README.md").read_text(encoding="utf-8")
    assert f"flip rate {script.DEFAULT_FLIP_RATE:g}" in readme


def test_flipped_pairs_have_the_worse_answer_as_chosen(
    train: list[dict], heldout: list[dict]
) -> None:
    """better_only / worse_only describe the truly better and worse answers: diffing
    (better, worse) must reproduce them, with better = rejected exactly when flipped."""
    for rec in train + heldout:
        chosen, rejected = _text(rec["chosen"]), _text(rec["rejected"])
        better, worse = (rejected, chosen) if rec["flipped"] else (chosen, rejected)
        expected = (rec["better_only"], rec["worse_only"], rec["edit_distance"])
        assert _diff(better, worse) == expected, rec["id"]
        assert rec["better_only"] != rec["worse_only"], rec["id"]
        for chunk in filter(None, rec["worse_only"].split(" | ")):
            assert chunk in worse, rec["id"]
        if rec["axis"] == "verbosity":  # the worse answer is the padded one
            assert len(worse) > len(better) and better in worse, rec["id"]
        if rec["axis"] == "helpfulness":  # the worse answer leaves something out
            assert rec["better_only"], rec["id"]


def test_some_flipped_pairs_on_every_axis(train: list[dict]) -> None:
    assert {r["axis"] for r in train if r["flipped"]} == AXES


def test_length_is_not_a_shortcut(train: list[dict]) -> None:
    longer = sum(len(_text(r["chosen"])) > len(_text(r["rejected"])) for r in train)
    assert 0.3 <= longer / len(train) <= 0.6, longer / len(train)


def test_pairs_are_short(train: list[dict], heldout: list[dict]) -> None:
    for rec in train + heldout:
        answer = max(len(_text(rec[k]).split()) for k in ("chosen", "rejected"))
        assert len(_text(rec["prompt"]).split()) + answer <= 120, rec["id"]


def test_files_are_small() -> None:
    for name in FILES:
        assert (DATA / name).stat().st_size < 1_500_000, name


@pytest.mark.parametrize("hash_seed", ["0", "1"])
def test_check_mode_passes_on_the_committed_files(hash_seed: str) -> None:
    result = _run("--check", hash_seed=hash_seed)
    assert result.returncode == 0, result.stderr


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "prefs_heldout.jsonl").write_text("{}\n", encoding="utf-8")
    result = _run("--check", "--out-dir", str(tmp_path))
    assert result.returncode == 1
    assert "prefs_heldout.jsonl" in result.stderr


def test_flip_rate_option_changes_only_the_flips(tmp_path: Path, train: list[dict]) -> None:
    result = _run("--flip-rate", "0.25", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    other = _load(tmp_path / "prefs_train.jsonl")
    assert sum(r["flipped"] for r in other) == round(0.25 * len(train))
    assert (tmp_path / "prefs_heldout.jsonl").read_bytes() == HELDOUT.read_bytes()

    def unflipped(rec: dict) -> tuple:
        pair = (_text(rec["chosen"]), _text(rec["rejected"]))
        return (rec["id"], _text(rec["prompt"]), *(pair[::-1] if rec["flipped"] else pair))

    assert [unflipped(r) for r in other] == [unflipped(r) for r in train]
