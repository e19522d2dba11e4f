"""Running a study: for every method x selector x budget x seed, select -> train -> evaluate.

Shared work is done once. Selector scores are computed once per selector (and seed, for the
random control) and cached by content (`select.registry`). The pool is tokenized and its
reference log-probs computed once, as are the held-out pairs'; every cell of a pair method
trains on its rows of that table (`SharedData`), so a 4 x 4 x 3 grid runs the reference pass
twice, not 48 times (pair methods; a point method's view of the pairs is prepared per cell).
Each cell writes its run directory (`cells/<id>/`: subset, metrics, `summary.json`; no model
unless `train: {save_model: true}`) and `cell.json` last, with a digest of its settings: a
killed study resumes and skips finished cells whose settings did not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from alignkit.data.loading import load_records, source_identity
from alignkit.data.records import Pair
from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_jsonl, atomic_write_text
from alignkit.options import to_dict
from alignkit.select.pipeline import pair_row
from alignkit.select.registry import (
    ScoreRequest,
    budget_count,
    get_selector,
    keep_indices,
    score_records,
)
from alignkit.study.config import METRICS, Keep, MethodEntry, SelectorEntry, StudyConfig
from alignkit.train.checkpoint import Prepared
from alignkit.train.config import TrainConfig
from alignkit.train.trainer import Trainer

log = logging.getLogger(__name__)
CELL_FILE = "cell.json"


@dataclass(frozen=True)
class Cell:
    method: MethodEntry
    selector: SelectorEntry
    budget: float
    count: int
    seed: int

    @property
    def id(self) -> str:
        budget = f"{self.budget:g}" if self.budget <= 1 else str(int(self.budget))
        return f"{self.method.name}/{self.selector.label}/b{budget}/s{self.seed}"

    def directory(self, root: Path) -> Path:
        return root / "cells" / self.id.replace("/", "__")


def plan_cells(config: StudyConfig, pool_size: int) -> list[Cell]:
    """Every cell of the grid, method-major (cells that share a model run back to back)."""
    cells = []
    for method in config.methods:
        for selector in config.selectors:
            for budget in config.budgets:
                fraction, count = (budget, None) if budget <= 1 else (None, int(budget))
                n = budget_count(pool_size, fraction, count)
                for seed in config.seeds:
                    cells.append(Cell(method, selector, budget, n, seed))
    return cells


class SharedData:
    """Tokenized data with reference log-probs, prepared once and reused by every cell.

    Valid because every cell starts from the same model (`StudyConfig.model`): its reference
    policy, and so the reference log-probs, are the same for all of them.
    """

    def __init__(self) -> None:
        self._prepared: dict[tuple, Prepared] = {}

    def get(self, key: tuple, build: Callable[[], Prepared]) -> Prepared:
        if key not in self._prepared:
            self._prepared[key] = build()
        return self._prepared[key]

    def find(self, what: str, key: tuple) -> Prepared | None:
        """The prepared pool (`what` = "train") of any reference setting for `key`, if any."""
        for stored, prepared in self._prepared.items():
            if stored[0] == what and stored[-len(key) :] == key:
                return prepared
        return None


def subset_of(full: Prepared, keep: np.ndarray) -> Prepared:
    """The rows of `full` for the kept pool records, re-indexed 0..m-1 in `keep`'s order
    (records the encoder dropped as too long are skipped)."""
    positions = full.records or [e.index for e in full.encoded]
    by_record = {
        pos: (row, e) for row, (pos, e) in enumerate(zip(positions, full.encoded, strict=True))
    }
    rows, encoded = [], []
    for i in keep.tolist():
        if i in by_record:
            row, e = by_record[i]
            rows.append(row)
            encoded.append(Encoded(**{**dataclasses.asdict(e), "index": len(encoded)}))
    ref = full.ref[rows] if full.ref is not None else None
    return Prepared(encoded, ref, full.k, f"{len(encoded)} of the pool's {len(full.encoded)}")


class CellTrainer(Trainer):
    """The core Trainer for one cell: a pair method's data comes from `SharedData`; the
    held-out metrics before training are the same for every cell and are not recomputed."""

    evaluate_before = False

    def __init__(self, config, shared: SharedData, pool: list, keep: np.ndarray, key: tuple):
        super().__init__(config)
        self.shared, self.pool, self.keep, self.key = shared, pool, keep, key

    def prepare_train(self, records: list, tokenizer, scorer) -> Prepared:
        if self.method.kind != "pair":  # point / multi views of a pair differ per method
            return super().prepare_train(records, tokenizer, scorer)
        view = ("train", self.method.needs_ref, *self.key)
        full = self.shared.get(view, lambda: self.prepare(self.pool, tokenizer, scorer))
        return subset_of(full, self.keep)

    def q_diff_data(self, train: Prepared) -> tuple[list, str]:
        """DEFT guidance counts Q_diff on the whole pool (as the `deft` selector does), not on
        the cell's subset: one Q_diff for filtering and guidance."""
        pool = self.shared.find("train", self.key)
        if pool is None:  # a point method: its own view of the data
            return super().q_diff_data(train)
        return pool.encoded, f"the study's pool ({len(pool.encoded)} examples)"

    def prepare_eval(self, records: list, tokenizer, scorer, with_ref: bool | None = None):
        view = (self.method.kind, self.method.needs_ref) if with_ref is None else ("pairs", True)
        build = lambda: self.prepare(records, tokenizer, scorer, with_ref)  # noqa: E731
        return self.shared.get(("eval", *view, *self.key), build)


def run_study(config: StudyConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every cell, then write study.json, study.md and the plots."""
    from alignkit.study.report import write_report

    root = Path(config.output)
    root.mkdir(parents=True, exist_ok=True)
    pool, _ = load_records(config.data, skip_invalid=config.skip_invalid)
    if not all(isinstance(r, Pair) for r in pool):
        raise AlignkitError(
            "study: the pool (data:) must be preference pairs (hh or trl-pair records)"
        )
    cells = plan_cells(config, len(pool))
    atomic_write_text(root / "plan.json", json.dumps([c.id for c in cells], indent=1))
    shared, results, timings = SharedData(), [], []
    scores = Scores(config, pool, root)
    for n, cell in enumerate(cells, 1):
        result = _finished(cell, config, root)
        if result is None:
            start = time.perf_counter()
            result = run_cell(config, cell, pool, scores, shared, root)
            timings.append(time.perf_counter() - start)
        results.append(result)
        progress(_progress_line(n, len(cells), cell, result, timings))
    return write_report(config, results, root, len(pool))


class Scores:
    """Selector scores of the pool, computed once per selector (and per seed for the random
    control, whose scores are the seeded draw), cached on disk by content."""

    def __init__(self, config: StudyConfig, pool: list, root: Path) -> None:
        self.config, self.pool, self.cache = config, pool, root / "cache" / "scores"
        self._memory: dict[tuple, np.ndarray] = {}

    def of(self, selector: SelectorEntry, seed: int) -> np.ndarray:
        seeded = selector.name == "random"
        key = (selector.label, seed if seeded else None)
        if key not in self._memory:
            opts = self.config.selection
            request = ScoreRequest(
                records=self.pool,
                options=dict(selector.options),
                model=str(opts.get("model", self.config.model)),
                seed=seed if seeded else 0,
                batch_size=int(opts.get("batch_size", 8)),
                max_length=int(opts.get("max_length", 512)),
                precision=str(opts.get("precision", "auto")),
                cache_dir=str(self.cache),
            )
            self._memory[key] = score_records(selector.name, request)
        return self._memory[key]


def keep_rule(selector: SelectorEntry) -> Keep:
    """The cell's keep rule: the entry's, else the selector's default for its options."""
    if selector.keep:
        return selector.keep
    default = get_selector(selector.name).default_keep
    return cast(Keep, default(selector.options) if callable(default) else default)


def run_cell(
    config: StudyConfig, cell: Cell, pool: list, scores: Scores, shared: SharedData, root: Path
) -> dict[str, Any]:
    """Select the cell's subset, train on it, evaluate; write cell.json last."""
    out = cell.directory(root)
    values = scores.of(cell.selector, cell.seed)
    keep = keep_indices(values, cell.count, keep_rule(cell.selector), seed=cell.seed)
    subset = out / "subset.jsonl"
    atomic_write_jsonl(
        subset, [pair_row(pool[i].prompt, pool[i].chosen, pool[i].rejected) for i in keep]
    )
    train = cell_train_config(config, cell, out)
    train.validate()
    key = (config.model, train.max_length, train.truncation, train.precision, train.lora)
    result = CellTrainer(train, shared, pool, keep, key).run()
    row = {
        "id": cell.id,
        "method": cell.method.name,
        "selector": cell.selector.label,
        "budget": cell.budget,
        "count": int(len(keep)),
        "seed": cell.seed,
        "keep": keep_rule(cell.selector),
        "selected_score_mean": float(values[keep].mean()) if len(keep) else None,
        "metrics": {name: result.eval_after.get(METRICS[name][0]) for name in config.metrics},
        "steps": result.steps,
        "settings": cell_settings(config, cell),
    }
    atomic_write_text(out / CELL_FILE, json.dumps(row, indent=2))
    return row


def cell_train_config(config: StudyConfig, cell: Cell, out: Path) -> TrainConfig:
    """The cell's `alignkit train` options. The model is not saved (`cell.json` holds the
    metrics; add `save_model: true` under `train:` to keep every cell's model)."""
    values = {"save_model": False, **config.train}
    return config.train_config(
        cell.method,
        **{k: v for k, v in values.items() if k == "save_model"},
        data=[str(out / "subset.jsonl")],
        eval_data=list(config.eval_data),
        output=str(out),
        seed=cell.seed,
        resume=False,
        skip_invalid=config.skip_invalid,
    )


def cell_settings(config: StudyConfig, cell: Cell) -> str:
    """A digest of everything a cell's result depends on: its training options, selector,
    budget, seed and the pool and held-out files; a finished cell whose digest differs (the
    YAML changed) is run again rather than reported."""
    train = to_dict(cell_train_config(config, cell, Path("cell")))
    parts = {
        "train": train,
        "selector": [cell.selector.name, cell.selector.options, cell.selector.keep],
        "budget": cell.budget,
        "selection": config.selection,
        "files": [source_identity(p) for p in [*config.data, *config.eval_data]],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _finished(cell: Cell, config: StudyConfig, root: Path) -> dict[str, Any] | None:
    path = cell.directory(root) / CELL_FILE
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    return row if row.get("settings") == cell_settings(config, cell) else None


def _progress_line(n: int, total: int, cell: Cell, row: dict, timings: list[float]) -> str:
    metrics = " ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row["metrics"].items()
    )
    if timings:  # the first cell run also did the shared work: leave it out once others ran
        recent = timings[1:] or timings
        per_cell = sum(recent) / len(recent)
        eta = f"{per_cell:.0f} s/cell, ETA {per_cell * (total - n) / 60:.1f} min"
    else:
        eta = "resumed"
    return f"[{n}/{total}] {cell.id} ({row['count']} pairs): {metrics} | {eta}"
