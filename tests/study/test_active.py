"""Active preference learning in rounds: sizes, the annotator, and label-free acquisition."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_jsonl

from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.io import read_jsonl
from alignkit.study import active
from alignkit.study.config import parse_study
from alignkit.train.checkpoint import Prepared

WORDS = "red blue green cat dog sun moon tree river stone bread milk fast slow warm cold".split()


def varied_pairs(n: int, seed: int = 0) -> list[dict]:
    """TRL pairs whose answers differ from pair to pair (REAL and APL have something to rank)."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return [
        {
            "prompt": f"question {i}: {text(3)}?",
            "chosen": text(rng.randint(2, 8)),
            "rejected": text(rng.randint(2, 8)),
        }
        for i in range(n)
    ]


def test_round_sizes_annotator_and_candidates() -> None:
    assert active.round_sizes(128, 4) == [32, 32, 32, 32]
    assert active.round_sizes(10, 4) == [2, 2, 3, 3]  # the larger rounds last
    assert active.round_sizes(3, 4) == [1, 1, 1]
    assert active.round_sizes(64, [16, 16, 32]) == [16, 16, 32]
    assert not active.annotator_flips(100, 0.0, 0).any()
    flips = active.annotator_flips(20000, 0.1, 3)
    assert abs(flips.mean() - 0.1) < 0.01
    assert (active.annotator_flips(20000, 0.1, 3) == flips).all()  # seeded
    unl = np.array([1, 3, 5, 7, 9])
    assert active.candidate_sample(unl, 0, 0, 1).tolist() == [1, 3, 5, 7, 9]
    picked = active.candidate_sample(unl, 3, 0, 1)
    assert len(picked) == 3 and set(picked) <= set(unl)


def test_flipped_swaps_the_responses_and_the_reference_of_flagged_rows() -> None:
    enc = [Encoded([1], [[2], [3]], [1.0, 0.0], [True, False], True, i) for i in (0, 1)]
    prepared = Prepared(enc, torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]), 2)
    out = active.flipped(prepared, [False, True])
    assert out.encoded[0].responses == [[2], [3]] and out.encoded[1].responses == [[3], [2]]
    assert torch.equal(out.ref, torch.tensor([[-1.0, -2.0], [-4.0, -3.0]]))
    assert prepared.encoded[1].responses == [[2], [3]]  # the shared table is not changed


def _raw(pool: str, held: str, out: Path, model: str, **extra) -> dict:
    return {
        "data": pool,
        "eval_data": held,
        "output": str(out),
        "model": model,
        "selectors": [{"name": "random"}],
        "budgets": [6],
        "seeds": [0],
        "rounds": 3,
        "candidates": 8,
        "methods": [{"name": "dpo", "method": "dpo"}],
        "train": {
            "lr": 5e-3,
            "batch_size": 2,
            "epochs": 1,
            "precision": "fp32",
            "max_length": 64,
            "lora": True,
            "lora_r": 4,
            "lora_alpha": 8,
        },
        "selection": {"batch_size": 8},
        **extra,
    }


def _acquired(out: Path, label: str) -> list[list[int]]:
    cell = out / "cells" / f"dpo__{label}__b6__s0"
    return json.loads((cell / active.ROUNDS_FILE).read_text())["acquired"]


def test_an_active_study_runs_in_rounds_and_reports_every_round(tiny_model, tmp_path) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", varied_pairs(16))
    held = write_jsonl(tmp_path / "held.jsonl", varied_pairs(4, seed=9))
    out = tmp_path / "study"
    selectors = [
        {"name": "random"},
        {"name": "real", "label": "real-easy", "options": {"strategy": "easy"}},
        {"name": "apl"},
        {"name": "dopt"},
    ]
    config = parse_study(
        _raw(pool, held, out, tiny_model, selectors=selectors, flip_rate=0.5, retrain=False)
    )
    report = active.run_active_study(config, progress=lambda line: None)
    # every cell gives a row per round, at 2, 4 and 6 labels
    counts = sorted({(c["selector"], c["count"]) for c in report["cells"]})
    labels = ["apl", "dopt", "random", "real-easy"]
    assert counts == [(s, n) for s in labels for n in (2, 4, 6)]
    assert report["budgets"] == [2.0, 4.0, 6.0]
    for label in labels:
        rounds = _acquired(out, label)
        assert [len(r) for r in rounds] == [2, 2, 2]
        assert len({i for r in rounds for i in r}) == 6  # never the same pair twice
    # the annotator: the revealed labels are the pool's, flipped where its draw says so
    flips = active.annotator_flips(16, 0.5, 0)
    rows = read_jsonl(str(pool))
    cell = out / "cells" / "dpo__apl__b6__s0"
    revealed = read_jsonl(str(cell / "round-2" / "subset.jsonl"))  # train on: round 2's pairs
    assert len(revealed) == 2
    by_prompt = {r["prompt"]: r for r in rows}
    for got in revealed:
        i = next(k for k, r in enumerate(rows) if r["prompt"] == got["prompt"])
        want = by_prompt[got["prompt"]]
        assert (got["chosen"] == want["rejected"]) == bool(flips[i])
    md = (out / "study.md").read_text()
    assert "random" in md
    # every round's per-pair held-out outcomes feed the bootstrap (its own folder)
    assert "no per-item outcomes" not in md
    assert all(not group["means_only"] for group in report["statistics"])


@pytest.mark.parametrize("name", ["apl", "real", "dopt"])
def test_acquisition_never_reads_the_unrevealed_labels(name, tiny_model, tmp_path) -> None:
    """Swap chosen and rejected of every pair no round acquired: every round acquires the same
    pairs (retrain: each round trains from the start on all labels so far)."""
    rows = varied_pairs(14)
    held = write_jsonl(tmp_path / "held.jsonl", varied_pairs(4, seed=9))
    selectors = [{"name": "random"}, {"name": name}]

    def run(pool_rows: list[dict], where: str) -> list[list[int]]:
        pool = write_jsonl(tmp_path / f"{where}.jsonl", pool_rows)
        out = tmp_path / where
        config = parse_study(
            _raw(pool, held, out, tiny_model, selectors=selectors, retrain=True, seeds=[1])
        )
        active.run_active_study(config, progress=lambda line: None)
        return json.loads(
            (out / "cells" / f"dpo__{name}__b6__s1" / active.ROUNDS_FILE).read_text()
        )["acquired"]

    first = run(rows, "a")
    taken = {i for r in first for i in r}
    swapped = [
        r if i in taken else {**r, "chosen": r["rejected"], "rejected": r["chosen"]}
        for i, r in enumerate(rows)
    ]
    assert run(swapped, "b") == first


def test_bad_active_configs_are_refused(tiny_model, tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", varied_pairs(8))
    base = _raw(data, data, tmp_path / "o", tiny_model)
    for change, message in [
        ({"rounds": [2, 2]}, "add up to"),
        ({"flip_rate": 1.0}, "flip_rate"),
        ({"methods": [{"name": "s", "method": "sft"}]}, "not a pair method"),
        ({"selectors": [{"name": "random"}, {"name": "deft"}]}, "unknown acquisition"),
        ({"rounds": "four"}, "rounds"),
    ]:
        with pytest.raises(AlignkitError, match=message):
            parse_study({**base, **change})
