"""The study's statistics by hand: monotone log-budget labels saved, paired differences, the
hierarchical bootstrap's null calibration, power, win_rate's tie, non-finite seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alignkit.study import statistics as st
from alignkit.study.config import MethodEntry, SelectorEntry, StudyConfig
from alignkit.study.report import study_statistics, with_baseline_tie, write_report


def test_isotonic_and_labels_saved_by_hand() -> None:
    """Random reaches 0.80 with all 40 labels. `easy` has 0.75 at 10 and 0.82 at 20 labels:
    in log budget log b* = log 10 + (0.80 - 0.75) / (0.82 - 0.75) * log 2 = log 16.41, so
    1 - 16.41 / 40 = 59.0% saved (the old first crossing on the grid said 50%). `hard`
    (0.79 at 40) never reaches it. For a loss (lower is better) easy is below random's 0.50
    at the smallest budget: at least 1 - 10/40 = 75%."""
    assert st.isotonic(np.array([0.6, 0.8, 0.7])).tolist() == pytest.approx([0.6, 0.75, 0.75])
    counts = [10, 20, 40]
    random = np.array([0.60, 0.70, 0.80])
    easy = st.saved_fraction(np.array([0.75, 0.82, 0.85]), random, counts)
    assert easy == pytest.approx(1 - 10 * 2 ** (0.05 / 0.07) / 40, abs=1e-9)
    assert easy == pytest.approx(0.590, abs=1e-3)
    assert math.isnan(st.saved_fraction(np.array([0.5, 0.6, 0.79]), random, counts))
    assert st.saved_fraction(random, random, counts) == 0.0  # the control against itself
    loss = st.saved_fraction(np.array([0.49, 0.45, 0.4]), np.array([0.7, 0.6, 0.5]), counts, False)
    assert loss == 0.75
    # a dip is pooled, not crossed by luck: 0.6, 0.81, 0.79 -> 0.6, 0.80, 0.80 reaches 0.80
    # exactly at 20 labels (50%), not at the first lucky point's interpolation
    dip = st.saved_fraction(np.array([0.6, 0.81, 0.79]), random, counts)
    assert dip == pytest.approx(0.5)


def _seed_only(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=float)[:, None]  # (S, 1): cells known by their mean only


def test_paired_difference_excludes_zero_where_unpaired_intervals_overlap() -> None:
    """Review M3: per seed random = (0.70, 0.62, 0.75), easy = random + (0.03, 0.02, 0.04).
    Unpaired t-intervals overlap; the paired differences have mean 0.03 and sd 0.01:
    0.03 +- t(0.975, 2) * 0.01 / sqrt 3 = 0.03 +- 4.3027 * 0.005774 = [0.0052, 0.0548]."""
    random = [0.70, 0.62, 0.75]
    easy = [r + d for r, d in zip(random, [0.03, 0.02, 0.04], strict=True)]
    cells = {("random", 10.0): _seed_only(random), ("easy", 10.0): _seed_only(easy)}
    out = st.analyse(cells, {10.0: 10}, "random", True)
    paired = out["paired"][("easy", 10.0)]
    assert paired["estimate"] == pytest.approx(0.03)
    assert paired["t"]["ci95_low"] == pytest.approx(0.03 - 4.302653 * 0.01 / math.sqrt(3))
    assert paired["t"]["ci95_high"] == pytest.approx(0.0548, abs=1e-4)
    assert paired["n"] == 3 and paired["ci95_low"] > 0  # the bootstrap excludes 0 too
    mine, theirs = out["cells"][("easy", 10.0)], out["cells"][("random", 10.0)]
    assert mine["ci95_low"] < theirs["ci95_high"]  # the groups' own intervals overlap


def _null_cells(rng: np.random.Generator, seeds: int, items: int) -> dict:
    """Random against random: per seed, two independent trainings (disjoint seeds) scored on
    the same held-out items, each item correct with a shared item difficulty."""
    difficulty = rng.normal(1.0, 1.5, items)

    def arm() -> np.ndarray:
        ability = rng.normal(0.0, 0.3, (seeds, 1))
        p = 1 / (1 + np.exp(-(ability + difficulty)))
        return (rng.random((seeds, items)) < p).astype(float)

    return {("random", 10.0): arm(), ("random-b", 10.0): arm()}


def test_random_against_random_covers_zero_about_95_percent_of_the_time() -> None:
    """The null: the hierarchical bootstrap interval of the paired difference covers 0 in one
    study, and in about 95% of 200 synthetic studies (5 seeds, 100 held-out pairs)."""
    rng = np.random.default_rng(0)
    one = st.analyse(_null_cells(rng, 5, 100), {10.0: 10}, "random", True)
    paired = one["paired"][("random-b", 10.0)]
    assert paired["ci95_low"] <= 0 <= paired["ci95_high"]
    covered = 0
    for rep in range(200):
        out = st.analyse(_null_cells(rng, 5, 100), {10.0: 10}, "random", True, 400, rep)
        p = out["paired"][("random-b", 10.0)]
        covered += p["ci95_low"] <= 0 <= p["ci95_high"]
    assert 0.90 <= covered / 200 <= 0.995


def test_labels_saved_of_random_against_random_covers_zero() -> None:
    rng = np.random.default_rng(1)
    cells = {}
    for budget, shift in ((10.0, -0.8), (20.0, -0.4), (40.0, 0.0)):
        for name, arm in _null_cells(rng, 5, 100).items():
            cells[(name[0], budget)] = arm + 0 * shift  # same process at every budget
    grown = {
        k: np.clip(v + {10.0: -0.3, 20.0: -0.15, 40.0: 0}[k[1]], 0, 1) for k, v in cells.items()
    }
    out = st.analyse(grown, {10.0: 10, 20.0: 20, 40.0: 40}, "random", True)
    saved = out["saved"]["random-b"]
    low = -math.inf if saved["ci95_low"] is None else saved["ci95_low"]
    assert low <= 0 <= saved["ci95_high"] and out["saved"]["random"]["estimate"] == 0.0
    assert 0 < saved["p_not_reached"] < 1 and out["target"]["count"] == 40


def test_seeds_needed_for_80_percent_power() -> None:
    """Paired t, two-sided 5%, effect d = delta / sd. Guenther's approximation
    n = (z_.975 + z_.8)^2 / d^2 + z_.975^2 / 2 = (1.95996 + 0.84162)^2 + 1.92 = 9.77 for
    d = 1: 10 seeds (power 0.803; 9 seeds 0.748). G*Power's table: d = 0.5 -> 34,
    d = 0.8 -> 15, d = 0.2 -> 199. Only the ratio matters: delta 0.02, sd 0.04 -> 34."""
    assert st.seeds_needed(1.0, 1.0) == 10
    assert st.paired_power(10, 1.0, 1.0) == pytest.approx(0.803, abs=1e-3)
    assert st.paired_power(9, 1.0, 1.0) < 0.8
    assert [st.seeds_needed(d, 1.0) for d in (0.5, 0.8, 0.2)] == [34, 15, 199]
    assert st.seeds_needed(0.02, 0.04) == 34 and st.seeds_needed(-0.02, 0.04) == 34
    assert st.seeds_needed(0.0, 1.0) is None and st.seeds_needed(0.1, 0.0) == 2


def _rows(metric: str, values: dict[tuple[str, int], list[float | None]]) -> list[dict]:
    return [
        {
            "id": f"dpo/{sel}/b{b}/s{s}",
            "method": "dpo",
            "selector": sel,
            "budget": float(b),
            "count": b,
            "seed": s,
            "metrics": {metric: v},
        }
        for (sel, b), vs in values.items()
        for s, v in enumerate(vs)
    ]


def _config(tmp_path, metrics: list[str], judge: str = "") -> StudyConfig:
    return StudyConfig(
        data=["pool.jsonl"],
        eval_data=["held.jsonl"],
        output=str(tmp_path),
        selectors=[
            SelectorEntry("random", "random"),
            SelectorEntry("real", "real-easy", {"strategy": "easy"}),
            SelectorEntry("length", "longest", {"what": "chosen"}),
        ],
        budgets=[32.0, 64.0, 128.0],
        seeds=[0, 1, 2],
        methods=[MethodEntry("dpo", "dpo")],
        metrics=metrics,
        judge=judge,
        detect=0.05,
    )


def test_win_rate_is_read_against_a_tie_with_the_baseline(tmp_path) -> None:
    """Review M2: the baseline cell (random at 128) has no win rate against itself; it counts
    as a tie (0.5), so the target stays at 128 pairs and is 0.5."""
    config = _config(tmp_path, ["win_rate"], judge="local:default")
    values = {("random", 32): [0.3] * 3, ("random", 64): [0.4] * 3, ("random", 128): [None] * 3}
    values |= {("real-easy", b): [w] * 3 for b, w in ((32, 0.46), (64, 0.55), (128, 0.6))}
    values |= {("longest", b): [0.4] * 3 for b in (32, 64, 128)}
    rows = with_baseline_tie(config, _rows("win_rate", values))
    (group,) = study_statistics(config, rows, tmp_path, "random")
    assert group["target"]["estimate"] == pytest.approx(0.5) and group["target"]["count"] == 128
    saved = {s["selector"]: s for s in group["saved"]}
    # 0.46 at 32, 0.55 at 64: log b* = log 32 + 0.04 / 0.09 * log 2 -> b* = 43.5, 66% saved
    assert saved["real-easy"]["estimate"] == pytest.approx(1 - 32 * 2 ** (4 / 9) / 128)
    paired = {(p["selector"], p["budget"]): p for p in group["paired"]}
    assert paired[("real-easy", 128.0)]["estimate"] == pytest.approx(0.1)  # 0.6 - tie


def test_report_flags_non_finite_seeds_and_says_what_each_selector_saves(tmp_path) -> None:
    """A diverged seed (NaN) is shown as n=2 (+1 non-finite), not dropped silently; the
    label-free REAL gets labels saved, `length` of the chosen answer training pairs only;
    cells without per-pair outcomes (an older study) are named."""
    config = _config(tmp_path, ["accuracy"])
    values = {("random", b): [a - 0.01, a, a + 0.01] for b, a in ((32, 0.6), (64, 0.7), (128, 0.8))}
    values |= {("real-easy", 32): [0.74, 0.75, 0.76], ("real-easy", 64): [0.81, 0.82, 0.83]}
    values |= {("real-easy", 128): [0.84, 0.85, float("nan")]}
    values |= {("longest", b): [0.79, 0.8, 0.81] for b in (32, 64, 128)}
    report = write_report(config, _rows("accuracy", values), tmp_path, 128)
    md = (tmp_path / "study.md").read_text()
    assert "n=2 (+1 non-finite: flagged, left out)" in md
    saved = {s["selector"]: s for s in report["labels_saved"]}
    assert saved["real-easy"]["labels_saved"] == pytest.approx(1 - 32 * 2 ** (5 / 7) / 128)
    assert saved["longest"]["labels_saved"] is None and saved["longest"]["reads_labels"]
    assert saved["longest"]["training_saved"] is not None
    assert "| longest | yes | training pairs |" in md and "| real-easy | no | labels |" in md
    assert "n/a (uses the pool's labels)" in md and "no per-item outcomes" in md
    assert "Paired differences" in md and "Seeds for 80% power" in md and "Δ = 0.05" in md
    power = {(p["selector"], p["budget"]): p for p in report["power"]}
    assert power[("longest", 32.0)]["seeds_observed"] == 2  # every seed 0.2 above: sd 0
    assert power[("longest", 128.0)]["seeds_observed"] is None  # no difference to detect


def test_compare_gives_the_paired_difference_of_two_methods() -> None:
    """Method A's per-item outcomes per seed [[1, 0], [1, 1], [0, 0]] (seed means 0.5, 1, 0),
    method B's [[0, 0], [1, 0], [0, 0]] (0, 0.5, 0): per-seed differences 0.5, 0.5, 0, mean
    1/3, sd sqrt(1/12) = 0.2887, t half-width t(0.975, 2) 0.2887 / sqrt 3 = 4.303 x 0.1667 =
    0.717. A method against itself: 0 with the interval [0, 0]."""
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    cells = {("A", "random", 8.0): a, ("B", "random", 8.0): b, ("C", "random", 8.0): b.copy()}
    pairs = [
        (("A", "random", 8.0), ("B", "random", 8.0)),
        (("C", "random", 8.0), ("B", "random", 8.0)),
    ]
    out = st.compare(cells, pairs, replicates=2000)
    diff = out[("A", "random", 8.0)]
    assert diff["estimate"] == pytest.approx(1 / 3) and diff["per_seed"] == [0.5, 0.5, 0.0]
    assert diff["t"]["std"] == pytest.approx(math.sqrt(1 / 12))
    assert diff["t"]["ci95_high"] - 1 / 3 == pytest.approx(
        4.303 * math.sqrt(1 / 12) / 3**0.5, abs=1e-3
    )
    assert -0.5 <= diff["ci95_low"] <= 1 / 3 <= diff["ci95_high"] <= 1.0 and diff["n"] == 3
    same = out[("C", "random", 8.0)]
    assert (same["estimate"], same["ci95_low"], same["ci95_high"]) == (0.0, 0.0, 0.0)


def test_the_report_compares_methods_cell_by_cell(tmp_path) -> None:
    """Two methods on the same subsets and held-out pairs: `dpo+guidance` minus `dpo` per seed
    and budget, read from the cells' per-pair outcomes (4 held-out pairs: guidance gets one
    more right in every cell: +0.25)."""
    config = _config(tmp_path, ["accuracy"])
    config.methods = [MethodEntry("dpo", "dpo"), MethodEntry("dpo+guidance", "dpo")]
    rows = []
    for method, right in (("dpo", 2), ("dpo+guidance", 3)):
        for sel in ("random", "real-easy", "longest"):
            for b in (32, 64, 128):
                for s in range(3):
                    cell = f"{method}/{sel}/b{b}/s{s}"
                    folder = tmp_path / "cells" / cell.replace("/", "__")
                    folder.mkdir(parents=True)
                    outcomes = [
                        {"index": i, "id": f"p{i}", "correct": i < right, "margin": 0.1}
                        for i in range(4)
                    ]
                    text = "\n".join(json.dumps(o) for o in outcomes) + "\n"
                    (folder / "heldout_outcomes.jsonl").write_text(text)
                    rows.append(
                        {"id": cell, "method": method, "selector": sel, "budget": float(b),
                         "count": b, "seed": s, "metrics": {"accuracy": right / 4}}
                    )  # fmt: skip
    report = write_report(config, rows, tmp_path, 128)
    between = report["methods_paired"]
    assert len(between) == 9 and {p["against"] for p in between} == {"dpo"}
    assert all(
        p["method"] == "dpo+guidance" and p["estimate"] == pytest.approx(0.25) for p in between
    )
    assert all(p["per_seed"] == [0.25] * 3 for p in between)
    md = (tmp_path / "study.md").read_text()
    assert "## Paired differences between methods (to `dpo`, same subset and seed)" in md
    # the seeds agree (t-interval [0.25, 0.25]) but the one held-out pair guidance gets
    # right may be drawn 0 to 4 times of 4: the bootstrap interval holds that noise
    assert (
        "| dpo+guidance | accuracy | real-easy | 64 | +0.250 [0.000, 0.500] | +0.250 [0.250, 0.250] | 3 |"
        in md
    )
