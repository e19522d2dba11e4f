"""The study's report: every metric vs budget with 95% intervals over seeds, and labels saved.

Labels saved (the form of REAL's "28-65% fewer labels"): for each method and selector, the
smallest budget whose mean reaches the random control's mean at the largest budget, and the
share of the largest budget's labels that it saves. A selector that never reaches it saves
nothing that this study can show ("not reached").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.io import atomic_write_text, iter_jsonl
from alignkit.report import interval, markdown_table, new_figure, save_png
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


def labels_saved(
    table: list[dict[str, Any]], metric: str, control_label: str
) -> list[dict[str, Any]]:
    """Per method and selector: the smallest budget reaching the control's mean at the largest
    budget, and the fraction of labels saved against that largest budget."""
    higher = METRICS[metric][1]
    out = []
    for method in sorted({r["method"] for r in table}):
        rows = [r for r in table if r["method"] == method]
        control = [
            r for r in rows if r["selector"] == control_label and r[metric]["mean"] is not None
        ]
        if not control:
            continue
        top = max(control, key=lambda r: r["count"])
        target = top[metric]["mean"]
        for selector in sorted({r["selector"] for r in rows}):
            mine = sorted(
                (r for r in rows if r["selector"] == selector and r[metric]["mean"] is not None),
                key=lambda r: r["count"],
            )
            reached = [
                r
                for r in mine
                if (r[metric]["mean"] >= target if higher else r[metric]["mean"] <= target)
            ]
            first = reached[0] if reached else None
            out.append(
                {
                    "method": method,
                    "selector": selector,
                    "metric": metric,
                    "target": target,
                    "target_count": top["count"],
                    "reached_at_count": first["count"] if first else None,
                    "reached_at_budget": first["budget"] if first else None,
                    "labels_saved": 1 - first["count"] / top["count"] if first else None,
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
    table = aggregate(results, config.metrics)
    control = next(s.label for s in config.selectors if s.name == CONTROL)
    saved = (  # a single budget is a method comparison: no labels to save against
        [row for m in config.metrics for row in labels_saved(table, m, control)]
        if len(config.budgets) > 1
        else []
    )
    report = {
        "pool_size": pool_size,
        "data": config.data,
        "eval_data": config.eval_data,
        "model": config.model,
        "seeds": config.seeds,
        "budgets": config.budgets,
        "control": control,
        "table": table,
        "labels_saved": saved,
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


def _table_row(row: dict[str, Any], metrics: list[str]) -> tuple[str, ...]:
    """A row of the study table: each metric's mean and, over 2+ seeds, its interval."""
    cells = []
    for m in metrics:
        iv = row[m]
        ci = (
            f" [{_fmt(iv['ci95_low'])}, {_fmt(iv['ci95_high'])}]"
            if iv["ci95_low"] is not None
            else ""
        )
        cells.append(f"{_fmt(iv['mean'])}{ci}")
    return (row["method"], row["selector"], f"{row['budget']:g}", str(row["count"]), *cells)


def _saved_row(s: dict[str, Any]) -> tuple[str, ...]:
    reached = f"{s['reached_at_count']} pairs" if s["reached_at_count"] else "not reached"
    saved = f"{100 * s['labels_saved']:.0f}%" if s["labels_saved"] is not None else "–"
    target = f"{_fmt(s['target'])} ({s['target_count']} pairs)"
    return (s["method"], s["metric"], s["selector"], target, reached, saved)


def markdown(report: dict[str, Any], plots: list[str]) -> str:
    metrics = [k for k in METRICS if report["table"] and k in report["table"][0]]
    lines = [
        "# Study",
        "",
        f"Pool: {report['pool_size']} pairs from {', '.join(report['data'])}; held out: "
        f"{', '.join(report['eval_data'])}; model: {report['model']}; seeds: {report['seeds']}.",
        "Each cell: select -> train -> evaluate on the held-out pairs. Values: mean over seeds "
        "[95% t-interval].",
        *(
            [
                "Before training (the model itself): "
                + ", ".join(f"{k} {_fmt(v)}" for k, v in report["before_training"].items())
                + "."
            ]
            if report.get("before_training")
            else []
        ),
        "",
        markdown_table(
            ("method", "selector", "budget", "pairs", *metrics),
            [
                _table_row(row, metrics)
                for row in sorted(
                    report["table"], key=lambda r: (r["method"], r["selector"], r["count"])
                )
            ],
        ),
    ]
    if len(report["budgets"]) < 2:  # nothing to save against: a method comparison
        lines += [
            "",
            "One budget: a comparison of methods, no labels-saved table (it needs a budget sweep).",
        ]
        lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots], ""]
        return "\n".join(lines)
    lines += [
        "",
        f"## Labels saved against `{report['control']}` at the largest budget",
        "",
        markdown_table(
            ("method", "metric", "selector", "target (control, largest budget)", "reached at")
            + ("labels saved",),
            [_saved_row(s) for s in report["labels_saved"]],
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
    ax.set_xlabel("labelled pairs (budget)")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(f"{method}: {metric} vs budget (95% intervals over seeds)")
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
