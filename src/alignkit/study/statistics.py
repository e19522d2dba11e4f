"""The study's statistics: paired differences to the control, a hierarchical bootstrap over
seeds and held-out items, labels saved read off a monotone curve in log budget, and the
number of seeds a paired design needs (docs/methods.md, "Study statistics").

Torch-free (numpy and scipy). The inputs are plain arrays, built by `alignkit.study.report`
from the cells' files: for one method and one metric, every cell group (selector, budget)
gives `values`, an (S, n) array of the per-item outcome of each seed (S seeds, in one order
for every group) on each held-out item (n pairs or prompts, in one order for every group):
NaN for an item a cell has no outcome for, a whole row NaN for a seed that did not finish
or diverged. A cell known only by its mean (no per-item outcomes) is a constant row.

Why these statistics. Every cell of a seed shares the training seed and the held-out set
with the control cell of that seed: differences are taken per seed (paired), not between
group means. The held-out set is a sample too: a replicate of the bootstrap draws seeds with
replacement, then, within each drawn seed, held-out items with replacement (the same items
for every cell of that seed, so the replicate stays paired), so held-out sampling noise is
in every interval. Labels saved are read off each
replicate's mean curves made monotone (isotonic regression) and interpolated in log budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit.report import interval

REPLICATES = 2000  # bootstrap replicates of every number in study.md
LEVEL = 0.95
POWER = 0.8
Key = tuple[str, float]  # (selector label, budget)


@dataclass(frozen=True)
class Draws:
    """One hierarchical bootstrap: `seeds` (R, S) indices of the seeds drawn with replacement,
    `items` (R, S, n) how many times each held-out item is drawn within each drawn seed (a
    multinomial count, the same for every cell of that seed)."""

    seeds: np.ndarray
    items: np.ndarray


def draws(n_seeds: int, n_items: int, replicates: int = REPLICATES, seed: int = 0) -> Draws:
    """`replicates` seeded draws of S seeds and n items, each with replacement."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    shape = (replicates, n_seeds)
    items = rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=shape)
    return Draws(seeds, items.astype(np.float64))


def seed_means(values: np.ndarray, boot: Draws | None = None) -> np.ndarray:
    """Per-seed means of (S, n) outcomes over the finite items: (S,); with a bootstrap, the
    (R, S) means of each replicate's drawn seeds under their drawn items. NaN where a seed
    has no finite item."""
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if boot is None:
            return filled.sum(-1) / finite.sum(-1)
        num = np.einsum("rsn,rsn->rs", boot.items, filled[boot.seeds])
        return num / np.einsum("rsn,rsn->rs", boot.items, finite[boot.seeds].astype(float))


def over_seeds(per_seed: np.ndarray) -> np.ndarray:
    """The mean over the last axis of (..., S) per-seed values, non-finite seeds left out;
    NaN where no seed is finite."""
    finite = np.isfinite(per_seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, per_seed, 0.0).sum(-1) / finite.sum(-1)


def percentile_interval(
    estimate: float, replicates: np.ndarray, level: float = LEVEL
) -> dict[str, Any]:
    """`{"estimate", "ci95_low", "ci95_high", "replicates"}`: the percentile interval of the
    finite replicates (None bounds without any)."""
    finite = replicates[np.isfinite(replicates)]
    low, high = (
        np.quantile(finite, [(1 - level) / 2, (1 + level) / 2]) if finite.size else (None, None)
    )
    return {
        "estimate": _num(estimate),
        "ci95_low": _num(low),
        "ci95_high": _num(high),
        "replicates": int(finite.size),
    }


def _num(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


# ------------------------------------------------------------------ monotone curves


def isotonic(y: np.ndarray) -> np.ndarray:
    """The non-decreasing least-squares fit of (..., B) values along the last axis (equal
    weights): fit_i = max over j <= i of min over k >= i of mean(y_j .. y_k). E.g.
    [0.6, 0.8, 0.7] -> [0.6, 0.75, 0.75]. NaN in, NaN out."""
    b = y.shape[-1]
    csum = np.concatenate([np.zeros((*y.shape[:-1], 1)), np.cumsum(y, axis=-1)], axis=-1)
    j, k = np.triu_indices(b)
    means = np.full((*y.shape[:-1], b, b), np.inf)
    means[..., j, k] = (csum[..., k + 1] - csum[..., j]) / (k - j + 1)
    out = np.empty_like(y, dtype=np.float64)
    for i in range(b):
        out[..., i] = means[..., : i + 1, i:].min(axis=-1).max(axis=-1)
    return out


def budget_reaching(curve: np.ndarray, target: np.ndarray, counts: Sequence[float]) -> np.ndarray:
    """The budget at which a (..., B) non-decreasing curve over ascending `counts` first
    reaches `target` (...), linear in log budget between the two budgets around the crossing:
    log b* = log c_{i-1} + (T - y_{i-1}) / (y_i - y_{i-1}) * (log c_i - log c_{i-1}). The
    smallest count when the curve starts at or above the target (a saving of at least that
    much: nothing smaller was measured); NaN when it never reaches it."""
    logc = np.log(np.asarray(counts, dtype=np.float64))
    target = np.asarray(target, dtype=np.float64)
    reached = curve >= target[..., None] - 1e-12
    first = np.argmax(reached, axis=-1)
    upper = np.clip(first, 1, len(logc) - 1)
    y0 = np.take_along_axis(curve, (upper - 1)[..., None], -1)[..., 0]
    y1 = np.take_along_axis(curve, upper[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((target - y0) / (y1 - y0), 0.0, 1.0)
    logb = logc[upper - 1] + np.nan_to_num(frac, nan=1.0) * (logc[upper] - logc[upper - 1])
    logb = np.where(first == 0, logc[0], logb)
    return np.where(reached.any(axis=-1) & np.isfinite(target), np.exp(logb), np.nan)


def saved_fraction(
    curve: np.ndarray, control: np.ndarray, counts: Sequence[float], higher: bool = True
) -> np.ndarray:
    """The share of the largest budget's pairs a selector saves: 1 - b*/c_max, where b* is
    where its mean curve (..., B) over `counts`, made monotone, reaches the control's
    monotone curve at the largest budget. NaN: not reached within the budgets."""
    sign = 1.0 if higher else -1.0
    mine, theirs = isotonic(sign * curve), isotonic(sign * control)
    return 1.0 - budget_reaching(mine, theirs[..., -1], counts) / float(counts[-1])


# ------------------------------------------------------------------ one method x metric


def analyse(
    cells: Mapping[Key, np.ndarray],
    counts: Mapping[float, int],
    control: str,
    higher: bool,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> dict[str, Any]:
    """The statistics of one method and metric.

    `cells`: (selector, budget) -> (S, n) outcomes (one seed order and one item order for
    all); `counts`: budget -> pairs. Returns
    - `cells`: key -> the mean over seeds with its bootstrap interval;
    - `paired`: key -> the mean per-seed difference to the control at the same budget
      (seeds where both are finite), its bootstrap interval, its t-interval over seeds
      (`t`, n - 1 degrees of freedom) and the per-seed differences (`per_seed`);
    - `saved`: selector -> the share of the largest budget's pairs saved against the control
      (`saved_fraction`), its bootstrap interval (not reached counts as -inf: a lower bound
      of None means "not reached"), `p_not_reached`, `at_smallest` (reached at the smallest
      budget: a lower bound) and `reached_at` (pairs), and `target`: the control's monotone
      curve at the largest budget (`count` pairs). Needs 2+ budgets with the control.
    """
    first = next(iter(cells.values()))
    n_seeds, n_items = first.shape
    boot = draws(n_seeds, n_items, replicates, seed)
    point = {key: seed_means(v) for key, v in cells.items()}
    reps = {key: seed_means(v, boot) for key, v in cells.items()}
    out: dict[str, Any] = {"cells": {}, "paired": {}, "saved": {}}
    for key in cells:
        out["cells"][key] = percentile_interval(
            float(over_seeds(point[key])), over_seeds(reps[key])
        )
        base = (control, key[1])
        if key[0] == control or base not in cells:
            continue
        out["paired"][key] = paired_entry(point[key], point[base], reps[key], reps[base])
    budgets = sorted(b for s, b in cells if s == control)
    if len(budgets) < 2:
        return out
    ladder = [counts[b] for b in budgets]
    ctl_point = np.array([over_seeds(point[(control, b)]) for b in budgets])
    ctl_reps = np.stack([over_seeds(reps[(control, b)]) for b in budgets], -1)
    sign = 1.0 if higher else -1.0
    out["target"] = percentile_interval(
        float(sign * isotonic(sign * ctl_point)[-1]), sign * isotonic(sign * ctl_reps)[:, -1]
    )
    out["target"]["count"] = ladder[-1]
    for selector in sorted({s for s, _ in cells}):
        if any((selector, b) not in cells for b in budgets):
            continue
        mine = np.array([over_seeds(point[(selector, b)]) for b in budgets])
        mine_reps = np.stack([over_seeds(reps[(selector, b)]) for b in budgets], -1)
        estimate = float(saved_fraction(mine, ctl_point, ladder, higher))
        values = saved_fraction(mine_reps, ctl_reps, ladder, higher)
        valid = np.isfinite(mine_reps).all(-1) & np.isfinite(ctl_reps).all(-1)
        values = values[valid]
        entry = _with_not_reached(estimate, values)
        entry["p_not_reached"] = float(np.isnan(values).mean()) if values.size else None
        reached = math.isfinite(estimate)
        entry["at_smallest"] = reached and estimate >= 1 - ladder[0] / ladder[-1] - 1e-12
        entry["reached_at"] = (1 - estimate) * ladder[-1] if reached else None
        out["saved"][selector] = entry
    return out


def paired_entry(
    point: np.ndarray, base: np.ndarray, reps: np.ndarray, base_reps: np.ndarray
) -> dict[str, Any]:
    """A paired difference: per-seed means (S,) of a cell and of its base, and their (R, S)
    bootstrap replicates under the same draws. The mean per-seed difference (seeds where
    both are finite) with its bootstrap interval, its t-interval over seeds (`t`, n - 1
    degrees of freedom), the per-seed differences (`per_seed`) and `n`."""
    diffs = point - base
    entry = percentile_interval(float(over_seeds(diffs)), over_seeds(reps - base_reps))
    entry["t"] = interval([float(d) for d in diffs if math.isfinite(d)])
    entry["per_seed"] = [_num(d) for d in diffs]
    entry["n"] = int(np.isfinite(diffs).sum())
    return entry


def compare(
    cells: Mapping[Any, np.ndarray],
    pairs: Sequence[tuple[Any, Any]],
    replicates: int = REPLICATES,
    seed: int = 0,
) -> dict[Any, dict[str, Any]]:
    """`paired_entry` of each (key, base) of `pairs`, for cells of (S, n) outcomes with one
    seed order and one item order (e.g. two methods trained on the same subsets and
    evaluated on the same held-out pairs), under one hierarchical bootstrap."""
    if not pairs:
        return {}
    n_seeds, n_items = next(iter(cells.values())).shape
    boot = draws(n_seeds, n_items, replicates, seed)
    point = {key: seed_means(v) for key, v in cells.items()}
    reps = {key: seed_means(v, boot) for key, v in cells.items()}
    return {
        key: paired_entry(point[key], point[base], reps[key], reps[base]) for key, base in pairs
    }


def _with_not_reached(estimate: float, values: np.ndarray, level: float = LEVEL) -> dict:
    """The percentile interval of savings where NaN (not reached) ranks below every saving:
    a bound that falls among them is None."""
    ranked = np.where(np.isnan(values), -np.inf, values)
    low, high = (
        np.quantile(ranked, q, method="inverted_cdf") if ranked.size else None
        for q in ((1 - level) / 2, (1 + level) / 2)
    )
    return {
        "estimate": _num(estimate),
        "ci95_low": _num(low),
        "ci95_high": _num(high),
        "replicates": int(values.size),
    }


# ------------------------------------------------------------------ power


def paired_power(n: int, delta: float, sd: float, alpha: float = 0.05) -> float:
    """The power of a two-sided paired t-test at level `alpha` with `n` pairs (seeds) when
    the mean difference is `delta` and the per-seed differences have standard deviation
    `sd`: P(|T| > t_{1-alpha/2, n-1}) for T noncentral t with n - 1 degrees of freedom and
    noncentrality delta / (sd / sqrt n)."""
    from scipy.stats import nct, t

    df = n - 1
    ncp = delta / (sd / math.sqrt(n))
    crit = t.ppf(1 - alpha / 2, df)
    return float(nct.sf(crit, df, ncp) + nct.cdf(-crit, df, ncp))


def seeds_needed(
    delta: float, sd: float, power: float = POWER, alpha: float = 0.05, most: int = 100_000
) -> int | None:
    """The fewest seeds (>= 2) whose paired t-test detects a mean difference `delta` with
    `power` (`paired_power`); None when delta is 0 or not finite, or more than `most` would
    be needed. With sd 0 every difference is exact: 2 seeds."""
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0:
        return None
    if sd == 0:
        return 2
    low, high = 2, 2
    while paired_power(high, abs(delta), sd, alpha) < power:
        low, high = high, high * 2
        if high > most:
            return None
    while low < high:  # power grows with n: the first n that reaches it
        mid = (low + high) // 2
        if paired_power(mid, abs(delta), sd, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return high
