"""What `alignkit select NAME` writes: one `Selection` value, and the one writer of it.

A selection (`Selection`) is the rows of OUTPUT/subset.jsonl (the kept records, which
`alignkit train --data` reads), scores.jsonl (every record's score), dropped.jsonl (the
others with their scores), report.json (the summary) and report.md, plus the selector's own
files: a PNG histogram, and for DEFT the Q_diff it filtered with. A selector's
`select` hook (`alignkit.select.registry.Selector`) builds it; `write_selection` writes it,
every file atomically.

Plots use matplotlib's Agg canvas directly (no pyplot global state, no display needed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit.data.formats import record_row
from alignkit.io import atomic_write_text, jsonl_line
from alignkit.report import new_figure, save_png

if TYPE_CHECKING:
    from torch import Tensor

SUBSET = "subset.jsonl"
SCORES = "scores.jsonl"
DROPPED = "dropped.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class Selection:
    """One selection, as `write_selection` writes it and the CLI reports it.

    `subset`, `scores`, `dropped`: the rows of subset.jsonl, scores.jsonl and dropped.jsonl;
    `summary`: report.json (`run_selection` fills in its `seconds`); `markdown`: report.md
    as a function of the summary; `files`: the selector's other files, name -> write(path)
    (its histogram; DEFT's q_diff.safetensors); `message`: what the CLI prints.
    """

    subset: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    summary: dict[str, Any]
    markdown: Callable[[dict[str, Any]], str]
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    message: str = ""


def write_selection(output: Path, selection: Selection) -> None:
    """Every file of `selection` into `output` (created if missing)."""
    output.mkdir(parents=True, exist_ok=True)
    write_rows(output / SUBSET, selection.subset)
    write_rows(output / SCORES, selection.scores)
    write_rows(output / DROPPED, selection.dropped)
    for name, write in selection.files.items():
        write(output / name)
    atomic_write_text(output / REPORT_JSON, json.dumps(selection.summary, indent=2) + "\n")
    atomic_write_text(output / REPORT_MD, selection.markdown(selection.summary))


def write_rows(path: Path, rows: Iterable[Any]) -> None:
    """jsonl; values JSON does not know (from parquet or datasets) written as strings."""
    text = "".join(jsonl_line(row, default=str) for row in rows)
    atomic_write_text(path, text)


def cli_message(output: str, headline: str, *, q_diff: str = "") -> str:
    """What the CLI prints after a selection: the headline, the files, the next command
    (with `q_diff`, the Q_diff file name for the guidance term)."""
    subset = Path(output) / SUBSET
    lines = [headline, f"subset: {subset}"]
    flags = ""
    if q_diff:
        lines.append(f"Q_diff: {Path(output) / q_diff}")
        flags = f" --q-diff {Path(output) / q_diff} [--deft-lambda L | --log-r-q]"
    lines.append(f"report: {Path(output) / REPORT_MD}")
    lines.append(
        f"train on it: alignkit train --method dpo --data {subset}{flags} --output RUN_DIR"
    )
    return "\n".join(lines)


def row_of(record: Any) -> dict[str, Any]:
    """A record as `alignkit select` writes it: the row of its kind without its source (a
    binary label's `high_quality` too)."""
    return record_row(record, source=False, binary_high_quality=True)


def ranked_rows(
    sources: Sequence[str],
    scores: np.ndarray,
    order: np.ndarray,
    count: int,
    columns: Mapping[str, Sequence[float]] | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray, float]:
    """(rows of scores.jsonl, kept mask, cut) of keeping the first `count` of `order` (every
    index in the order the keep rule takes them, `keep_order`): one row per score, in data
    order: index, source, the extra `columns`, score, rank (0 = taken first), kept."""
    n = len(scores)
    kept = np.zeros(n, dtype=bool)
    kept[order[:count]] = True
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    rows = []
    for i, source in enumerate(sources):
        row: dict[str, Any] = {"index": i, "source": source}
        row.update({name: float(values[i]) for name, values in (columns or {}).items()})
        row.update(score=float(scores[i]), rank=int(ranks[i]), kept=bool(kept[i]))
        rows.append(row)
    return rows, kept, float(scores[order[count - 1]])


def without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def stats(values: Tensor | np.ndarray) -> dict[str, float]:
    """min / mean / median / max of a 1-D array (empty -> {})."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {}
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "max": float(arr.max()),
    }


def stats_rows(summary: Mapping[str, Any], keys: Sequence[tuple[str, str]]) -> list[list[Any]]:
    """One markdown row per (name, summary key of a `stats` dict)."""
    return [
        [name, *(summary[key].get(k, "") for k in ("min", "mean", "median", "max"))]
        for name, key in keys
    ]


# ---------------------------------------------------------------------------- plots


def _axes() -> tuple[Any, Any]:
    figure = new_figure()
    return figure, figure.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    save_png(fig, path)


def cut_histogram_png(
    path: Path,
    values: np.ndarray,
    kept: np.ndarray,
    cut: float,
    *,
    title: str,
    xlabel: str,
    both_sides: bool = False,
) -> None:
    """Histogram of all `values` with the `kept` ones highlighted and the cut marked (at -|cut|
    and +|cut| with `both_sides`: the near-zero keep rule)."""
    fig, ax = _axes()
    bins = np.histogram_bin_edges(values, bins=min(60, max(10, len(values) // 5)))
    ax.hist(values, bins=bins, color="#9aa5b1", label=f"all ({len(values)})")
    ax.hist(kept, bins=bins, color="#2b7bba", label=f"kept ({len(kept)})")
    if both_sides:
        ax.axvline(-abs(cut), color="#c0392b", linestyle="--", label=f"cut = +-{abs(cut):.4g}")
        ax.axvline(abs(cut), color="#c0392b", linestyle="--")
    else:
        ax.axvline(cut, color="#c0392b", linestyle="--", label=f"cut = {cut:.4g}")
    ax.set(title=title, xlabel=xlabel, ylabel="examples")
    ax.legend()
    _save(fig, path)


def overlay_histogram_png(
    path: Path, groups: Mapping[str, np.ndarray], *, title: str, xlabel: str
) -> None:
    """One step histogram per named group, on shared bins."""
    fig, ax = _axes()
    present = {name: v for name, v in groups.items() if len(v)}
    everything = np.concatenate(list(present.values())) if present else np.zeros(1)
    bins = np.histogram_bin_edges(everything, bins=min(60, max(10, len(everything) // 8)))
    for name, values in present.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=f"{name} ({len(values)})")
    ax.set(title=title, xlabel=xlabel, ylabel="pairs")
    ax.legend()
    _save(fig, path)
