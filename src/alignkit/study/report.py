"""The study's report: every metric vs budget over seeds, paired differences to the random
control, labels (or training pairs) saved and the seeds a paired design needs.

Every number in study.md comes with a 95% hierarchical bootstrap interval (seeds, then
held-out items; `alignkit.study.statistics`) computed from the cells' per-item outcomes:
`heldout_outcomes.jsonl` (accuracy, margin, dpo_loss per held-out pair),
`eval/generations.jsonl` (reward per held-out prompt) and `win_rate.json` (points per
prompt). A cell without them (a study run before alignkit wrote them) enters by its mean
alone: its intervals hold the seeds' noise only, and the report says so.

Labels saved: per method, metric and selector, where the selector's mean curve, made
monotone and interpolated in log budget, reaches the control's (monotone) mean at the
largest budget; the share of the largest budget it saves, its interval and the probability
that it is not reached within the budgets. Only a selector that picks pairs without their
labels (`Selector.reads_labels` False) saves labels; for the others the same number is
training pairs saved (they need every pool pair's label first). With `win_rate` the
baseline cell counts as a tie with itself (0.5).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text, iter_jsonl
from alignkit.report import interval, markdown_table, new_figure, save_png
from alignkit.select.registry import get_selector
from alignkit.study import statistics
from alignkit.study.config import METRICS, StudyConfig

CONTROL = "random"


def aggregate(results: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per (method, selector, budget): count and, per metric, the interval over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in results:
        groups.setdefault((row["method"], row["selector"], row["budget"]), []).append(row)
    table = []
    for (method, selector, budget), rows in groups.items():
        entry: dict[str, Any] = {
            "method": method,
            "selector": selector,
            "budget": budget,
            "count": rows[0]["count"],
            "seeds": sorted(r["seed"] for r in rows),
        }
        for name in metrics:
            values = [r["metrics"][name] for r in rows if r["metrics"].get(name) is not None]
            entry[name] = interval(values)
        table.append(entry)
    return table


OUTCOMES = "heldout_outcomes.jsonl"  # a cell's per-pair held-out outcomes (study.run)
PAIR_FIELDS = {"accuracy": "correct", "margin": "margin", "dpo_loss": "dpo_loss"}
TIE = 0.5  # win_rate of the baseline cell against itself


def cell_dir(root: Path, row: dict[str, Any]) -> Path:
    """The folder of a cell's files; a round of an active cell (id `CELL/rR`) has its own
    inside the cell's, `round-R`."""
    if row.get("round"):
        cell = row["id"].rsplit("/r", 1)[0]
        return root / "cells" / cell.replace("/", "__") / f"round-{row['round']}"
    return root / "cells" / row["id"].replace("/", "__")


def item_outcomes(root: Path, row: dict[str, Any], metric: str) -> tuple[list, list] | None:
    """(item ids, per-item values) of one cell for `metric`: held-out pairs for the pair
    metrics, held-out prompts for `reward` and `win_rate`; None when the cell has none."""
    where = cell_dir(root, row)
    if metric in PAIR_FIELDS:
        path = where / OUTCOMES
        if not path.is_file():
            return None
        rows = [r for _, r in iter_jsonl(path)]
        field = PAIR_FIELDS[metric]
        return [r["id"] for r in rows], [_float(r.get(field)) for r in rows]
    if metric == "reward":
        path = where / "eval" / "generations.jsonl"
        rows = [r for _, r in iter_jsonl(path)] if path.is_file() else []
        if not rows or "reward" not in rows[0]:
            return None
        return [json.dumps(r["prompt"]) for r in rows], [_float(r["reward"]) for r in rows]
    if metric == "win_rate":
        path = where / "win_rate.json"
        points = json.loads(path.read_text()).get("points") if path.is_file() else None
        return (list(range(len(points))), [_float(p) for p in points]) if points else None
    return None


def _float(value: Any) -> float:
    return float(value) if value is not None else math.nan


def with_baseline_tie(config: StudyConfig, results: list[dict[str, Any]]) -> list[dict]:
    """The cells with the baseline's `win_rate` set to a tie (0.5): against itself it neither
    wins nor loses, so the target of `win_rate` stays at the largest budget (review M2)."""
    if "win_rate" not in config.metrics or not config.judge:
        return results
    base = config.baseline_key()
    out = []
    for row in results:
        if (row["method"], row["selector"], float(row["budget"])) == base:
            row = {**row, "metrics": {**row["metrics"], "win_rate": TIE}, "win_rate_tie": True}
        out.append(row)
    return out


def outcome_arrays(
    root: Path, rows: list[dict[str, Any]], metric: str, seeds: list[int]
) -> tuple[dict[statistics.Key, np.ndarray], list[str]]:
    """(selector, budget) -> (S, n) outcomes of one method's cells, and the ids of the cells
    known by their mean only. A seed without a finite metric (not run, diverged) is a NaN
    row; a cell without per-item outcomes a constant row (its mean)."""
    items: dict[str, tuple[list, list]] = {}
    ids: list | None = None
    for row in rows:
        found = (
            None
            if row.get("win_rate_tie") and metric == "win_rate"
            else item_outcomes(root, row, metric)
        )
        if found is None:
            continue
        if ids is None:
            ids = found[0]
        elif found[0] != ids:
            raise AlignkitError(
                f"study: the held-out items of cell {row['id']} ({metric}) differ from those "
                "of the other cells: the cells were evaluated on different held-out data; "
                "delete the stale cells' cell.json and run the study again"
            )
        items[row["id"]] = found
    n = len(ids) if ids else 1
    seed_row = {s: i for i, s in enumerate(seeds)}
    arrays: dict[statistics.Key, np.ndarray] = {}
    means_only = []
    for row in rows:
        key = (row["selector"], float(row["budget"]))
        values = arrays.setdefault(key, np.full((len(seeds), n), np.nan))
        mean = _float(row["metrics"].get(metric))
        if not math.isfinite(mean):
            continue
        if row["id"] in items:
            values[seed_row[row["seed"]]] = items[row["id"]][1]
        else:
            values[seed_row[row["seed"]]] = mean
            if not row.get("win_rate_tie"):
                means_only.append(row["id"])
    return arrays, means_only


def study_statistics(
    config: StudyConfig, results: list[dict[str, Any]], root: Path, control: str
) -> list[dict[str, Any]]:
    """`statistics.analyse` of every method x metric with a measured value, as JSON rows."""
    seeds = sorted({r["seed"] for r in results})
    out = []
    for method in dict.fromkeys(r["method"] for r in results):
        rows = [r for r in results if r["method"] == method]
        counts = {float(r["budget"]): int(r["count"]) for r in rows if r["selector"] == control}
        for metric in config.metrics:
            if all(r["metrics"].get(metric) is None for r in rows):
                continue
            arrays, means_only = outcome_arrays(root, rows, metric, seeds)
            found = statistics.analyse(arrays, counts, control, METRICS[metric][1])
            out.append(
                {
                    "method": method,
                    "metric": metric,
                    "items": int(next(iter(arrays.values())).shape[1]),
                    "means_only": means_only,
                    "cells": [_keyed(k, v) for k, v in found["cells"].items()],
                    "paired": [_keyed(k, v) for k, v in found["paired"].items()],
                    "saved": [{"selector": k, **v} for k, v in found["saved"].items()],
                    "target": found.get("target"),
                }
            )
    return out


def method_differences(
    config: StudyConfig, results: list[dict[str, Any]], root: Path
) -> list[dict[str, Any]]:
    """Each method against the grid's first method, cell by cell (same selector, budget and
    seed: the same subset; the same held-out pairs), as paired differences under one
    hierarchical bootstrap per metric (`statistics.compare`). Empty with one method."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    if len(methods) < 2:
        return []
    reference = next((m.name for m in config.methods if m.name in methods), methods[0])
    seeds = sorted({r["seed"] for r in results})
    out = []
    for metric in config.metrics:
        arrays: dict[tuple, np.ndarray] = {}
        for method in methods:
            rows = [r for r in results if r["method"] == method]
            if all(r["metrics"].get(metric) is None for r in rows):
                continue
            for key, values in outcome_arrays(root, rows, metric, seeds)[0].items():
                arrays[(method, *key)] = values
        shapes = {v.shape for v in arrays.values()}
        if len(shapes) != 1:  # some methods without per-item outcomes: not comparable by item
            continue
        pairs = [
            (key, (reference, *key[1:]))
            for key in arrays
            if key[0] != reference and (reference, *key[1:]) in arrays
        ]
        for (method, selector, budget), entry in statistics.compare(arrays, pairs).items():
            row = {"method": method, "against": reference, "metric": metric}
            out.append({**row, "selector": selector, "budget": budget, **entry})
    return out


def _keyed(key: statistics.Key, value: dict[str, Any]) -> dict[str, Any]:
    return {"selector": key[0], "budget": key[1], **value}


def selector_needs(config: StudyConfig) -> dict[str, dict[str, Any]]:
    """Per selector label: whether it reads the pool's labels, what it can save, and why."""
    out = {}
    for entry in config.selectors:
        if config.active:  # acquisition functions see a pair's answers, never its label
            out[entry.label] = {
                "name": entry.name,
                "reads_labels": False,
                "saves": "labels",
                "why": "an acquisition function scores unlabelled pairs (answers in a canonical "
                "order); only the pairs it picks have their labels revealed",
            }
            continue
        selector = get_selector(entry.name)
        reads = selector.reads_labels_for(entry.options)
        out[entry.label] = {
            "name": entry.name,
            "reads_labels": reads,
            "saves": "training pairs" if reads else "labels",
            "why": selector.label_use,
        }
    return out


def power_rows(stats: list[dict[str, Any]], detect: float) -> list[dict[str, Any]]:
    """Per paired difference: the seeds a paired t-test needs for 80% power (two-sided 5%)
    to detect the observed difference and, with `detect` > 0, that difference, given the
    standard deviation of the per-seed differences of this (pilot) study."""
    out = []
    for group in stats:
        for p in group["paired"]:
            sd = p["t"]["std"]
            if sd is None or p["estimate"] is None:
                continue
            out.append(
                {
                    "method": group["method"],
                    "metric": group["metric"],
                    "selector": p["selector"],
                    "budget": p["budget"],
                    "sd": sd,
                    "observed": p["estimate"],
                    "seeds_observed": statistics.seeds_needed(p["estimate"], sd),
                    "detect": detect or None,
                    "seeds_detect": statistics.seeds_needed(detect, sd) if detect else None,
                }
            )
    return out


def write_report(
    config: StudyConfig,
    results: list[dict[str, Any]],
    root: Path,
    pool_size: int,
    before: dict[str, float] | None = None,
) -> dict[str, Any]:
    """study.json, study.md and one PNG per method x metric; returns the report."""
    tied = with_baseline_tie(config, results)  # cells as measured stay in report["cells"]
    table = aggregate(tied, config.metrics)
    control = next(s.label for s in config.selectors if s.name == CONTROL)
    needs = selector_needs(config)
    stats = study_statistics(config, tied, root, control)
    report = {
        "pool_size": pool_size,
        "data": config.data,
        "eval_data": config.eval_data,
        "model": config.model,
        "seeds": config.seeds,
        "budgets": config.budgets,
        "control": control,
        "bootstrap": {
            "replicates": statistics.REPLICATES,
            "resampled": "seeds, then held-out items",
        },
        "selectors": needs,
        "table": table,
        "statistics": stats,
        "labels_saved": labels_saved(stats, needs),
        "methods_paired": method_differences(config, tied, root),
        "power": power_rows(stats, config.detect),
        "detect": config.detect or None,
        "before_training": {
            name: (before or {}).get(METRICS[name][0])
            for name in config.metrics
            if (before or {}).get(METRICS[name][0]) is not None
        },
        "cells": results,
    }
    atomic_write_text(root / "study.json", json.dumps(report, indent=2))
    measured = {(r["method"], m) for r in table for m in config.metrics if r[m]["mean"] is not None}
    if len(config.budgets) > 1:  # a budget sweep: metric vs budget per method
        plots = [
            _plot(table, method.name, m, root)
            for method in config.methods
            for m in config.metrics
            if (method.name, m) in measured
        ]
    else:  # one budget: the methods side by side
        plots = [
            _plot_methods(table, m, root, report["before_training"].get(m))
            for m in config.metrics
            if any(m == x for _, x in measured)
        ]
    curves = online_curves(config, results, root)
    if curves:
        report["online_curves"] = curves
        atomic_write_text(root / "study.json", json.dumps(report, indent=2))
        plots.append(_plot_curves(curves, root))
    atomic_write_text(root / "study.md", markdown(report, plots))
    return report


def labels_saved(
    stats: list[dict[str, Any]], needs: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The saved rows of `study_statistics`, each with what its selector saves: the saving
    is `labels_saved` for a label-free selector, `training_saved` for every selector (None
    labels saved for one that reads the pool's labels)."""
    out = []
    for group in stats:
        target = group["target"] or {}
        for row in group["saved"]:
            reads = needs[row["selector"]]["reads_labels"]
            out.append(
                {
                    "method": group["method"],
                    "metric": group["metric"],
                    **row,
                    "reads_labels": reads,
                    "target": target.get("estimate"),
                    "target_ci": [target.get("ci95_low"), target.get("ci95_high")],
                    "target_count": target.get("count"),
                    "labels_saved": None if reads else row["estimate"],
                    "training_saved": row["estimate"],
                }
            )
    return out


def online_curves(
    config: StudyConfig, results: list[dict[str, Any]], root: Path
) -> dict[str, dict[str, Any]]:
    """Per online method (its control cells at the largest budget): the mean sample reward
    (`reward/mean`) and the KL to the reference (a logged `.../kl`, PPO and RLOO) of every
    iteration, as intervals over seeds."""
    top = max(config.budgets)
    control = next(s.label for s in config.selectors if s.name == CONTROL)
    out: dict[str, dict[str, Any]] = {}
    for method in (m for m in config.methods if m.online):
        cells = [
            r
            for r in results
            if r["method"] == method.name and r["selector"] == control and r["budget"] == top
        ]
        series: dict[str, dict[int, list[float]]] = {"reward": {}, "kl": {}}
        for cell in cells:
            metrics = root / "cells" / cell["id"].replace("/", "__") / "metrics.jsonl"
            if not metrics.is_file():
                continue
            for _, row in iter_jsonl(metrics):
                step = int(row.get("step", 0))
                if "reward/mean" in row:
                    series["reward"].setdefault(step, []).append(float(row["reward/mean"]))
                kl = [v for k, v in row.items() if k.endswith("/kl")]
                if kl:
                    series["kl"].setdefault(step, []).append(float(kl[0]))
        if series["reward"]:
            out[method.name] = {
                name: {str(step): interval(v) for step, v in sorted(points.items())}
                for name, points in series.items()
                if points
            }
    return out


def _plot_curves(curves: dict[str, dict[str, Any]], root: Path) -> str:
    """Sample reward and KL per iteration, one line per online method, 95% intervals."""
    fig = new_figure(11, 4.0)
    for n, (name, label) in enumerate([("reward", "mean sample reward"), ("kl", "KL to ref")]):
        ax = fig.add_subplot(1, 2, n + 1)
        for method, series in curves.items():
            points = series.get(name)
            if not points:
                continue
            xs = [int(k) for k in points]
            means = [iv["mean"] for iv in points.values()]
            err = [
                iv["mean"] - iv["ci95_low"] if iv["ci95_low"] is not None else 0
                for iv in points.values()
            ]
            ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label=method)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("online methods per iteration (95% intervals over seeds)")
    fig.tight_layout()
    path = root / "online_curves.png"
    save_png(fig, path)
    return str(path)


def _fmt(value: Any, digits: int = 3) -> str:
    return (
        "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    )


def _ci(iv: dict[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    """`estimate [low, high]` of a bootstrap or t interval ("–" without an estimate)."""
    if not iv or iv.get("estimate", iv.get("mean")) is None:
        return "–"
    value = iv.get("estimate", iv.get("mean"))
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    low, high = iv.get("ci95_low"), iv.get("ci95_high")
    return text + (f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None else "")


def _pct(value: float | None) -> str:
    return "not reached" if value is None else f"{100 * value:.0f}%"


def _lookup(rows: list[dict[str, Any]], selector: str, budget: float) -> dict | None:
    return next((r for r in rows if r["selector"] == selector and r["budget"] == budget), None)


def _table_row(
    row: dict[str, Any], metrics: list[str], stats: dict[tuple[str, str], dict]
) -> tuple[str, ...]:
    """A row of the study table: each metric's mean over seeds with its bootstrap interval
    and n (the finite seeds; non-finite ones flagged)."""
    cells = []
    for m in metrics:
        iv = row[m]
        group = stats.get((row["method"], m))
        boot = _lookup(group["cells"], row["selector"], float(row["budget"])) if group else None
        text = _ci(boot) if boot and iv["mean"] is not None else _ci(iv)
        if iv["n"] or iv.get("nonfinite"):
            text += f" n={iv['n']}"
        if iv.get("nonfinite"):
            text += f" (+{iv['nonfinite']} non-finite: flagged, left out)"
        cells.append(text)
    return (row["method"], row["selector"], f"{row['budget']:g}", str(row["count"]), *cells)


def _paired_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for group in report["statistics"]:
        for p in sorted(group["paired"], key=lambda r: (r["selector"], r["budget"])):
            rows.append(_diff_row({**p, "method": group["method"], "metric": group["metric"]}))
    return rows


def _diff_row(p: dict[str, Any]) -> tuple[str, ...]:
    """A paired difference as a table row: method, metric, selector, budget, the bootstrap
    interval, the t-interval over seeds, n."""
    t = p["t"]
    return (
        p["method"],
        p["metric"],
        p["selector"],
        f"{p['budget']:g}",
        _ci(p, signed=True),
        _ci(t, signed=True) if t["ci95_low"] is not None else "–",
        str(p["n"]),
    )


def _saved_row(s: dict[str, Any]) -> tuple[str, ...]:
    low, high = s["ci95_low"], s["ci95_high"]
    if s["estimate"] is None:
        saved = "not reached"
    else:
        saved = ("≥ " if s["at_smallest"] else "") + _pct(s["estimate"])
    saved += f" [{_pct(low)}, {_pct(high)}]" if s["replicates"] else ""
    labels = saved if not s["reads_labels"] else "n/a (uses the pool's labels)"
    low_t, high_t = s["target_ci"]
    target = _ci({"estimate": s["target"], "ci95_low": low_t, "ci95_high": high_t})
    reached = f"{s['reached_at']:.1f}" if s["reached_at"] is not None else "–"
    p = s["p_not_reached"]
    return (
        s["method"],
        s["metric"],
        s["selector"],
        f"{target} ({s['target_count']} pairs)",
        reached,
        labels,
        saved,
        "–" if p is None else f"{p:.2f}",
    )


def _power_row(p: dict[str, Any]) -> tuple[str, ...]:
    def seeds(n: int | None) -> str:
        return "> 100000 or no difference" if n is None else str(n)

    return (
        p["method"],
        p["metric"],
        p["selector"],
        f"{p['budget']:g}",
        _fmt(p["sd"]),
        f"{p['observed']:+.3f}: {seeds(p['seeds_observed'])}",
        *([f"{p['detect']:g}: {seeds(p['seeds_detect'])}"] if p["detect"] else []),
    )


def markdown(report: dict[str, Any], plots: list[str]) -> str:
    metrics = [k for k in METRICS if report["table"] and k in report["table"][0]]
    stats = {(g["method"], g["metric"]): g for g in report.get("statistics", [])}
    control = report["control"]
    order = list(dict.fromkeys(r["method"] for r in report["table"]))  # the grid's order
    lines = [
        "# Study",
        "",
        f"Pool: {report['pool_size']} pairs from {', '.join(report['data'])}; held out: "
        f"{', '.join(report['eval_data'])}; model: {report['model']}; seeds: {report['seeds']}.",
        "Each cell: select -> train -> evaluate on the held-out pairs. Values: mean over seeds "
        f"[95% hierarchical bootstrap interval: {statistics.REPLICATES} replicates drawing the "
        "seeds, then the held-out items, with replacement]; n = the seeds with a finite value "
        "(a non-finite seed, e.g. a diverged run, is flagged and left out).",
        *(
            [
                "Before training (the model itself): "
                + ", ".join(f"{k} {_fmt(v)}" for k, v in report["before_training"].items())
                + "."
            ]
            if report.get("before_training")
            else []
        ),
        *(
            [
                "`win_rate` is against the baseline cell of the same seed; the baseline counts as "
                "a tie with itself (0.5)."
            ]
            if "win_rate" in metrics
            else []
        ),
        "",
        markdown_table(
            ("method", "selector", "budget", "pairs", *metrics),
            [
                _table_row(row, metrics, stats)
                for row in sorted(
                    report["table"],
                    key=lambda r: (order.index(r["method"]), r["selector"], r["count"]),
                )
            ],
        ),
    ]
    means_only = sorted({c for g in report.get("statistics", []) for c in g["means_only"]})
    if means_only:
        lines += [
            "",
            f"{len(means_only)} cell(s) have no per-item outcomes (run before alignkit wrote "
            "them, or online cells without held-out pairs): they enter by their mean, so their "
            "intervals hold the seeds' noise only. Delete their cell.json and run the study "
            "again for the full intervals.",
        ]
    lines += [
        "",
        "## What each selector needs",
        "",
        "A selector that picks pairs without knowing which answer is chosen can pick them "
        "before anyone labels them: it saves labels. One that reads the pool's labels needs "
        "every pool pair labelled first: it can only save training pairs (compute).",
        "",
        markdown_table(
            ("selector", "reads the pool's labels", "saves", "why"),
            [
                (label, "yes" if n["reads_labels"] else "no", n["saves"], n["why"])
                for label, n in report["selectors"].items()
            ],
        ),
    ]
    paired = _paired_rows(report)
    if paired:
        lines += [
            "",
            f"## Paired differences to `{control}` (same seed, same held-out pairs)",
            "",
            "Per seed, the cell minus the control cell of the same budget; mean over seeds "
            "[95% bootstrap interval], and the t-interval over seeds (n - 1 degrees of freedom; "
            "it leaves out the held-out items' sampling noise).",
            "",
            markdown_table(
                ("method", "metric", "selector", "budget", "Δ [bootstrap 95%]")
                + ("Δ [t 95%, seeds]", "n"),
                paired,
            ),
        ]
    between = report.get("methods_paired") or []
    if between:
        reference = between[0]["against"]
        lines += [
            "",
            f"## Paired differences between methods (to `{reference}`, same subset and seed)",
            "",
            f"Per seed, the cell minus the `{reference}` cell with the same selector and budget "
            "(the same training pairs, the same held-out pairs); mean over seeds [95% bootstrap "
            "interval] and the t-interval over seeds.",
            "",
            markdown_table(
                ("method", "metric", "selector", "budget", "Δ [bootstrap 95%]")
                + ("Δ [t 95%, seeds]", "n"),
                [_diff_row(p) for p in between],
            ),
        ]
    if len(report["budgets"]) < 2:  # nothing to save against: a method comparison
        lines += [
            "",
            "One budget: a comparison of methods, no labels-saved table (it needs a budget sweep).",
        ]
    elif report["labels_saved"]:
        lines += [
            "",
            f"## Labels saved against `{control}` at the largest budget",
            "",
            "Target: the control's mean curve, made monotone (isotonic), at the largest budget. "
            "Reached at: where the selector's monotone mean curve reaches it, interpolated in "
            "log budget (≥: already at the smallest budget). Saved = 1 - reached at / largest "
            "budget [95% bootstrap interval; 'not reached' where the bound falls among the "
            "replicates that never reach the target]; P(not reached) = the share of such "
            f"replicates. The row of `{control}` itself shows where its own curve flattens.",
            "",
            markdown_table(
                ("method", "metric", "selector", "target (control)", "reached at (pairs)")
                + ("labels saved", "training pairs saved", "P(not reached)"),
                [_saved_row(s) for s in report["labels_saved"]],
            ),
        ]
    if report.get("power"):
        detect = report.get("detect")
        lines += [
            "",
            "## Seeds for 80% power (paired t-test, two-sided 5%)",
            "",
            "From this study as a pilot: the standard deviation of the per-seed differences to "
            "the control, and the seeds a paired design needs to detect the observed difference"
            + (f" and a difference of {detect:g}" if detect else " (`--detect D` adds a given one)")
            + " (noncentral t). The held-out set stays the same: more held-out pairs, not more "
            "seeds, shrink its noise.",
            "",
            markdown_table(
                ("method", "metric", "selector", "budget", "sd of Δ", "observed Δ: seeds")
                + ((f"Δ = {detect:g}: seeds",) if detect else ()),
                [_power_row(p) for p in report["power"]],
            ),
        ]
    lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots], ""]
    return "\n".join(lines)


def _plot(table: list[dict[str, Any]], method: str, metric: str, root: Path) -> str:
    """metric vs labelled pairs, one line per selector, 95% intervals as error bars."""
    fig = new_figure(6.5, 4.0)
    ax = fig.add_subplot()
    rows = [r for r in table if r["method"] == method]
    for selector in sorted({r["selector"] for r in rows}):
        mine = sorted((r for r in rows if r["selector"] == selector), key=lambda r: r["count"])
        xs = [r["count"] for r in mine]
        means = [r[metric]["mean"] for r in mine]
        err = [
            (r[metric]["mean"] - r[metric]["ci95_low"]) if r[metric]["ci95_low"] is not None else 0
            for r in mine
        ]
        style = "--" if selector == CONTROL else "-"
        ax.errorbar(xs, means, yerr=err, label=selector, marker="o", linestyle=style, capsize=3)
    counts = sorted({r["count"] for r in rows})
    if counts and counts[0] > 0:  # log budget, the scale labels saved are interpolated on
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
    ax.set_xlabel("labelled pairs (budget, log scale)")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(f"{method}: {metric} vs budget (95% t-intervals over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = root / f"{method.replace('/', '_')}_{metric}.png"
    save_png(fig, path)
    return str(path)


def _plot_methods(
    table: list[dict[str, Any]], metric: str, root: Path, before: float | None = None
) -> str:
    """metric per method (one budget), one marker series per selector, 95% intervals."""
    rows = [r for r in table if r[metric]["mean"] is not None]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    selectors = sorted({r["selector"] for r in rows})
    fig = new_figure(max(5.0, 1.1 * len(methods) + 2), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / len(selectors)
    for j, selector in enumerate(selectors):
        mine = {r["method"]: r[metric] for r in rows if r["selector"] == selector}
        xs = [
            i + (j - (len(selectors) - 1) / 2) * width for i, m in enumerate(methods) if m in mine
        ]
        ivs = [mine[m] for m in methods if m in mine]
        err = [iv["mean"] - iv["ci95_low"] if iv["ci95_low"] is not None else 0 for iv in ivs]
        ax.errorbar(xs, [iv["mean"] for iv in ivs], yerr=err, fmt="o", capsize=4, label=selector)
    if before is not None:
        ax.axhline(before, color="grey", linestyle="--", label="before training")
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(f"{metric} per method (95% intervals over seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    path = root / f"methods_{metric}.png"
    save_png(fig, path)
    return str(path)
