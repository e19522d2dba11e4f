"""`alignkit study --dry-run`: the plan's arithmetic on a made-up calibration, and the verb."""

from __future__ import annotations

import json

import pytest
from conftest import pair_rows, write_jsonl

from alignkit.cli import main
from alignkit.study import plan as study_plan
from alignkit.study.config import parse_study

CAL = study_plan.Calibration(
    forward_tps=1000.0, train_tps=100.0, load_s=2.0, pair_tokens=50.0, eval_tokens=40.0
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
    2 s load: 14.8 s. b20: 10 steps, 40 pairs, 2000 tokens: 2 + 20 + 0.8 = 22.8 s. Shared:
    the reference of 20 + 20 (random, per seed) + 20 (length) = 60 pool pairs = 3000 tokens,
    3 s; of 20 held-out pairs, 0.8 s. Total 4 x 14.8 + 4 x 22.8 + 3.8 = 154.2 s."""
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    config = parse_study(_raw(data))
    plan = study_plan.plan_study(config, pool_size=100, eval_size=40, cal=CAL)
    cells = {c.id: c for c in plan.cells}
    assert len(cells) == 8
    b10, b20 = cells["dpo/random/b10/s0"], cells["dpo/length/b20/s1"]
    assert (b10.steps, b10.tokens, b10.seconds) == (6, 2000, pytest.approx(14.8))
    assert (b20.steps, b20.tokens, b20.seconds) == (10, 2800, pytest.approx(22.8))
    assert [(t, s) for _, t, s in plan.shared] == [(3000, pytest.approx(3.0)), (800, 0.8)]
    assert plan.total_seconds == pytest.approx(154.2)
    text = study_plan.plan_markdown(plan, CAL)
    assert "| dpo/random/b10/s0 | 6 | 2,000 | 15 |" in text and "154 (2.6 min)" in text


def test_active_cells_by_hand(tmp_path) -> None:
    """2 rounds of 10, 30 candidates each. apl, round 1: the acquisition forward of 30 pairs
    (1500 tokens, 1.5 s), training on 10 (6 steps, 1200 tokens, 12 s) + a load; round 2 the
    same (train on: the 10 new pairs); the study model loaded once for round 1's
    acquisition; the held-out pairs after each round (2 x 0.8 s):
    1.5 + 14 + 1.5 + 14 + 2 + 1.6 = 34.6 s. retrain: round 2 trains on all 20 (10 steps,
    2000 tokens, 20 s): 42.6 s. random needs no forward: 14 + 14 + 1.6 = 29.6 s (retrain:
    14 + 22 + 1.6 = 37.6 s)."""
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
        (False, 34.6, 12, 29.6),
        (True, 42.6, 16, 37.6),
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
    raw = {
        **_raw(pool, tiny_model),
        "output": str(out),
        "train": {"batch_size": 2, "precision": "fp32", "max_length": 64},
    }
    cfg = tmp_path / "study.yaml"
    cfg.write_text(json.dumps(raw))
    assert main(["study", "--config", str(cfg), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "calibration: forward" in printed and "| dpo/length/b20/s1 |" in printed
    assert "**total**" in printed and "nothing was run" in printed
    assert not out.exists()
