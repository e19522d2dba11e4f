"""`alignkit study --dry-run`: the plan's arithmetic on a made-up calibration, and the verb."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import pair_rows, write_jsonl

from alignkit.cli import main
from alignkit.study import plan as study_plan
from alignkit.study.config import parse_study

CAL = study_plan.Calibration(
    forward_tps=1000.0,
    train_tps=100.0,
    load_s=2.0,
    pair_tokens=50.0,
    eval_tokens=40.0,
    fresh_s=0.5,
    tokenize_s=0.01,
)


def _raw(data: str, model: str = "m", **extra) -> dict:
    return {
        "data": data,
        "eval_data": data,
        "output": "out",
        "model": model,
        "selectors": [{"name": "random"}, {"name": "length"}],
        "budgets": [10, 20],
        "seeds": [0, 1],
        "methods": [{"name": "dpo", "method": "dpo"}],
        "train": {"batch_size": 4, "epochs": 2, "max_length": 64},
        "eval_limit": 20,
        **extra,
    }


def test_one_shot_cells_and_shared_work_by_hand(tmp_path) -> None:
    """b10: ceil(10/4) = 3 steps per epoch x 2 = 6 steps of 4 pairs = 24 x 50 = 1200 training
    tokens (12 s at 100 tok/s), 20 held-out pairs x 40 = 800 forward tokens (0.8 s), and a
    0.5 s set-up: 13.3 s. b20: 10 steps, 40 pairs, 2000 tokens: 0.5 + 20 + 0.8 = 21.3 s.
    Shared: the model load, 2 s; the pool's 100 pairs tokenized, 1 s; the reference of
    20 + 20 (random, per seed) + 20 (length) = 60 pool pairs, in whole chunks of 8 of the
    length-sorted pool: 13 chunks, 13 (1 - (12/13)^60) = 12.9 of them touched, 103 pairs,
    at most the pool's 100 = 5000 tokens, 5 s; of 20 held-out pairs, 0.8 s. Total
    4 x 13.3 + 4 x 21.3 + 8.8 = 147.2 s."""
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    config = parse_study(_raw(data))
    plan = study_plan.plan_study(config, pool_size=100, eval_size=40, cal=CAL)
    cells = {c.id: c for c in plan.cells}
    assert len(cells) == 8
    b10, b20 = cells["dpo/random/b10/s0"], cells["dpo/length/b20/s1"]
    assert (b10.steps, b10.tokens, b10.seconds) == (6, 2000, pytest.approx(13.3))
    assert (b20.steps, b20.tokens, b20.seconds) == (10, 2800, pytest.approx(21.3))
    shared = [(t, s) for _, t, s in plan.shared]
    assert shared == [(0, 2.0), (0, 1.0), (5000, pytest.approx(5.0)), (800, 0.8)]
    assert plan.total_seconds == pytest.approx(147.2)
    text = study_plan.plan_markdown(plan, CAL)
    assert "| dpo/random/b10/s0 | 6 | 2,000 | 13 |" in text and "147 (2.5 min)" in text


def test_a_selector_pass_costs_what_it_showed_on_its_samples(tmp_path) -> None:
    """Random, two REAL selectors (easy, hard) and length: model-based are the REAL ones, one pass
    each at its own calibrated rate: easy 3 s + 10 ms x 100 records = 4 s; hard (reads
    easy's embeddings) 1 s + 0 = 1 s. Without a calibrated rate, the forward estimate:
    100 pairs x 50 tokens at 1000 tok/s = 5 s."""
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    selectors = [
        {"name": "random"},
        {"name": "real", "label": "real-easy", "options": {"strategy": "easy"}},
        {"name": "real", "label": "real-hard", "options": {"strategy": "hard"}},
        {"name": "length"},
    ]
    config = parse_study(_raw(data, selectors=selectors))
    rates = {"real-easy": (3.0, 0.01), "real-hard": (1.0, 0.0)}
    cal = dataclasses.replace(CAL, selector_passes=rates)
    plan = study_plan.plan_study(config, pool_size=100, eval_size=40, cal=cal)
    passes = {w: s for w, _, s in plan.shared if "scores of the pool" in w}
    assert passes == {
        "real-easy scores of the pool (cached)": pytest.approx(4.0),
        "real-hard scores of the pool (cached)": pytest.approx(1.0),
    }
    plan = study_plan.plan_study(config, pool_size=100, eval_size=40, cal=CAL)
    passes = {w: s for w, _, s in plan.shared if "scores of the pool" in w}
    assert list(passes.values()) == [pytest.approx(5.0)] * 2


def test_active_cells_by_hand(tmp_path) -> None:
    """2 rounds of 10, 30 candidates each. apl, round 1: the acquisition forward of 30 pairs
    (1500 tokens, 1.5 s), training on 10 (6 steps, 1200 tokens, 12 s) + a 0.5 s set-up;
    round 2 the same (train on: the 10 new pairs); the frozen study model loaded once for
    round 1's acquisition (2 s); the held-out pairs after each round (2 x 0.8 s):
    1.5 + 12.5 + 1.5 + 12.5 + 2 + 1.6 = 31.6 s. retrain: round 2 trains on all 20 (10 steps,
    2000 tokens, 20 s): 39.6 s. random needs no forward: 12.5 + 12.5 + 1.6 = 26.6 s
    (retrain: 12.5 + 20.5 + 1.6 = 34.6 s)."""
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    raw = _raw(
        data,
        selectors=[{"name": "random"}, {"name": "apl"}],
        budgets=[20],
        seeds=[0],
        rounds=2,
        candidates=30,
    )
    for retrain, apl_seconds, apl_steps, random_seconds in [
        (False, 31.6, 12, 26.6),
        (True, 39.6, 16, 34.6),
    ]:
        config = parse_study({**raw, "retrain": retrain})
        plan = study_plan.plan_study(config, pool_size=100, eval_size=40, cal=CAL)
        cells = {c.id: c for c in plan.cells}
        apl = cells["dpo/apl/b20/s0"]
        assert (apl.steps, apl.seconds) == (apl_steps, pytest.approx(apl_seconds))
        assert cells["dpo/random/b20/s0"].seconds == pytest.approx(random_seconds)
    assert apl.tokens == 1500 + 1200 + 1500 + 2000 + 2 * 800
    what = [w for w, _, _ in plan.shared]
    assert what[-1] == "acquisition reference log-probs (<= 60 pairs)"


def test_dry_run_calibrates_and_prints_the_plan(tiny_model, tmp_path, capsys) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", pair_rows(24))
    out = tmp_path / "study"
    selectors = [{"name": "random"}, {"name": "length"}, {"name": "real"}]
    raw = {
        **_raw(pool, tiny_model, selectors=selectors),
        "output": str(out),
        "train": {"batch_size": 2, "precision": "fp32", "max_length": 64},
    }
    cfg = tmp_path / "study.yaml"
    cfg.write_text(json.dumps(raw))
    assert main(["study", "--config", str(cfg), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "calibration: forward" in printed and "| dpo/length/b20/s1 |" in printed
    assert "**total**" in printed and "nothing was run" in printed
    assert "| tokenize the 24 pool pairs |  |" in printed
    # REAL's pass over the pool at the rate it showed on the calibration's samples
    assert ", real: " in printed and "ms per record" in printed
    assert "| real scores of the pool (cached) |  |" in printed
    assert not out.exists()


@pytest.mark.parametrize(
    ("rows", "pool", "chunk", "computed"),
    [(64, 1600, 16, 759), (1, 1600, 16, 16), (0, 100, 8, 0), (100, 100, 8, 100), (3, 4, 8, 4)],
)
def test_the_reference_scores_whole_chunks(rows, pool, chunk, computed) -> None:
    """64 rows spread over the 100 chunks of 16 of a 1,600-pair pool touch
    100 (1 - 0.99^64) = 47.4 chunks: 759 pairs scored; one row, its chunk (16); never more
    than the pool."""
    assert study_plan.chunked_rows(rows, pool, chunk) == computed
