"""Pieces shared by the selection methods: checks, the budget and keep rules, and the
request a selector scores (`alignkit.select.registry`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from alignkit.data.loading import REJECTED_FILE
from alignkit.errors import AlignkitError

STRATEGIES = ("easy", "hard", "random", "centroid")  # REAL's pair choices (Alg. 1)


def fraction_count(n: int, fraction: float, option: str) -> int:
    """round(fraction * n) (halves round up), at least 1; `option` names the flag in the
    error when `fraction` is not in (0, 1]."""
    if not 0 < fraction <= 1:
        raise AlignkitError(f"{option} must be in (0, 1], got {fraction}")
    return max(1, math.floor(fraction * n + 0.5))


def resolve_options(
    what: str,
    defaults: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]],
    options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`defaults` updated with `options`; an error naming `what` (e.g. "selector real") for
    an unknown option or a value outside its `choices`."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise AlignkitError(f"{what}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
    merged = {**defaults, **given}
    for name, allowed in choices.items():
        if merged[name] not in allowed:
            raise AlignkitError(
                f"{what}: option {name} is {merged[name]!r}; choose " + ", ".join(map(str, allowed))
            )
    return merged


def rejected_path(output: str, skip_invalid: bool, state: Any) -> Path | None:
    """OUTPUT/rejected.jsonl where --skip-invalid lists the dropped records (main process
    only; None without the flag)."""
    if not skip_invalid or not state.is_main_process:
        return None
    return Path(output) / REJECTED_FILE


# ------------------------------------------------------------------ budgets and keep rules

Keep = Literal["lowest", "highest", "near-zero"]
KEEPS: tuple[str, ...] = ("lowest", "highest", "near-zero")
# what the keep rules keep of a signed margin (chosen minus rejected: reward-gap, rm-margin)
MARGIN_KEEPS: dict[str, Keep] = {
    "uncertain": "near-zero",  # the pairs the scorer barely separates (smallest |margin|)
    "misranked": "lowest",  # the scorer prefers the rejected answer most (label noise gathers)
    "confident": "highest",  # the scorer agrees with the label most
}


def budget_count(n: int, fraction: float | None, count: int | None) -> int:
    """How many of `n` records a budget keeps: exactly one of `fraction` (in (0, 1],
    `fraction_count`: round half up, at least 1) and `count` (1..n)."""
    if n <= 0:
        raise AlignkitError("no records to select from")
    if fraction is not None and count is not None:
        raise AlignkitError("give --fraction or --count, not both")
    if count is not None:
        if not 1 <= count <= n:
            raise AlignkitError(f"--count must be in 1..{n} (the records scored), got {count}")
        return int(count)
    if fraction is None:
        raise AlignkitError("give a budget: --fraction F or --count N")
    return fraction_count(n, fraction, "--fraction")


def keep_order(scores: Any, keep: Keep, seed: int = 0) -> np.ndarray:
    """(n,) every index in the order the keep rule takes them: the lowest score first
    (`lowest`), the highest (`highest`), or the smallest |score| (`near-zero`); equal keys in a
    seeded random order (so ties do not always favour low indices)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise AlignkitError(f"scores must be one number per record, got shape {values.shape}")
    if np.isnan(values).any():
        raise AlignkitError(
            f"{int(np.isnan(values).sum())} of {len(values)} scores are NaN; try --precision fp32"
        )
    if keep not in KEEPS:
        raise AlignkitError(f"--keep must be {' / '.join(KEEPS)}, got {keep!r}")
    perm = np.random.default_rng(seed).permutation(len(values))
    key = {"lowest": values, "highest": -values, "near-zero": np.abs(values)}[keep]
    return perm[np.argsort(key[perm], kind="stable")]


def cut_bound(keep: Keep, cut: float) -> str:
    """Which side of the cut score `cut` (the last kept record's) the kept records lie on,
    for reports: `<= c`, `>= c`, or `within +-|c| of 0` (near-zero)."""
    if keep == "near-zero":
        return f"within +-{abs(cut):.6g} of 0"
    return f"{'<=' if keep == 'lowest' else '>='} {cut:.6g}"


def keep_indices(scores: Any, count: int, keep: Keep, seed: int = 0) -> np.ndarray:
    """(count,) sorted indices of the `count` scores the keep rule takes first (lowest,
    highest or nearest zero); ties at the cut broken by a seeded shuffle (`keep_order`)."""
    n = len(np.asarray(scores))
    if not 0 <= count <= n:
        raise AlignkitError(f"cannot keep {count} of {n} records")
    return np.sort(keep_order(scores, keep, seed)[:count])


# ------------------------------------------------------------------ a scoring request


@dataclass
class ScoreRequest:
    """What a selector scores, and with what (`alignkit.select.registry.score_records`).

    `records`: alignkit records (`Pair` for the pair selectors); `options`: the selector's
    options (unknown names are refused, missing ones take the selector's defaults);
    `model`: a model spec (`alignkit.runs`); `cache_dir`: when set, scores are cached there by
    content (records, selector, options, model and the other inputs the selector depends on);
    `trust_remote_code`: allow model code from the model repository (not in the cache key).
    """

    records: list
    options: dict[str, Any] = field(default_factory=dict)
    model: str = "default"
    seed: int = 0
    batch_size: int = 8
    max_length: int = 512
    precision: str = "auto"
    cache_dir: str | None = None
    trust_remote_code: bool = False


def require_data_and_output(data: list[str], output: str) -> None:
    """The first check of every select config: something to read, somewhere to write."""
    if not data:
        raise AlignkitError("no data: give --data PATH")
    if not output:
        raise AlignkitError("no output directory: give --output DIR")
