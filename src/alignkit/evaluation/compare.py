"""Compare training runs (`alignkit compare`): curves, final metrics with 95% intervals.

A run directory of `alignkit train` holds `metrics.jsonl` (one JSON object per logging step),
`summary.json` (`final_metrics`, `eval_before`, `eval_after`, ...), `config.json`, and maybe
`report.json` files of `alignkit eval` (in the run directory or one folder below). Runs whose
configs are equal except for `seed`, `output` and `resume` are seeds of one configuration:
their final metrics are shown as a mean with a 95% Student-t interval.

Output: PNG plots (matplotlib, Agg), `report.md` linking them, `compare.json`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import AlignkitError, DataError
from alignkit.io import atomic_write_text, iter_jsonl
from alignkit.report import interval, markdown_table, new_figure, save_png

CURVE_KEYS = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "deft/r_q",
    "eval/loss",
    "eval/rewards/margins",
    "eval/rewards/accuracies",
    "eval/rewards/margins_unscaled",
    "eval/deft/r_q",
)
PER_RUN_KEYS = ("seed", "output", "resume")  # config keys that differ between seeds of a config
METRICS_PER_FIGURE = 12
LINESTYLES = ("-", "--", ":", "-.")  # runs of one configuration


# ------------------------------------------------------------------ reading runs


@dataclass
class Run:
    path: Path
    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any] | None
    final: dict[str, float] = field(default_factory=dict)


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise DataError(str(path), "expected a JSON object")
    return data


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a last line cut short (a run still writing) is skipped."""
    rows = []
    for number, row in iter_jsonl(path, allow_partial_last=True):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}", "expected one JSON object per line")
        rows.append(row)
    return rows


def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as `a/b/c -> value` (lists and booleans skipped)."""
    if isinstance(obj, bool):
        return {}
    if isinstance(obj, int | float):
        return {prefix: float(obj)} if prefix else {}
    if isinstance(obj, dict):
        out: dict[str, float] = {}
        for key, value in obj.items():
            out.update(flatten_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
        return out
    return {}


def _report_metrics(path: Path) -> dict[str, float]:
    """The `metrics` of the `report.json` files of `alignkit eval` in the run directory and
    one folder below (all numbers of a report without a `metrics` mapping), and the refusal
    rates of an `alignkit demo` run."""
    out: dict[str, float] = {}
    for report in sorted([path / "report.json", *path.glob("*/report.json")]):
        if report.is_file():
            where = "report" if report.parent == path else f"report[{report.parent.name}]"
            data = _read_object(report)
            numbers = data["metrics"] if isinstance(data.get("metrics"), dict) else data
            out.update(flatten_numbers(numbers, where))
    demo = path / "demo_report.json"  # `alignkit demo`: refusal rates before/after
    if demo.is_file():
        out.update(
            flatten_numbers({"refusal_rate": _read_object(demo).get("refusal_rate")}, "demo")
        )
    return out


def _last_values(rows: list[dict[str, Any]]) -> dict[str, float]:
    last: dict[str, float] = {}
    for row in rows:
        last.update(flatten_numbers({k: v for k, v in row.items() if k != "step"}))
    return last


def final_metrics(run: Run) -> dict[str, float]:
    """`final_metrics` (else the last logged values), `eval_after`, and eval reports."""
    final = flatten_numbers(run.summary.get("final_metrics") or {}) or _last_values(
        [r for r in run.rows if not any(str(k).startswith("eval/") for k in r)]
    )
    after = flatten_numbers(run.summary.get("eval_after") or {})
    final.update({k if k.startswith("eval/") else f"eval/{k}": v for k, v in after.items()})
    final.update(_report_metrics(run.path))
    return final


def load_run(path: str | Path) -> Run:
    """A run directory: its metrics, summary, config and final metrics."""
    path = Path(path)
    if not path.is_dir():
        raise AlignkitError(
            f"{path} is not a directory (expected a run directory of alignkit train)"
        )
    metrics, summary = path / "metrics.jsonl", path / "summary.json"
    if not metrics.exists() and not summary.exists():
        raise AlignkitError(
            f"{path} is not a run directory: it has no metrics.jsonl or summary.json"
        )
    config = path / "config.json"
    run = Run(
        path=path,
        name=path.resolve().name,
        rows=read_metrics(metrics) if metrics.exists() else [],
        summary=_read_object(summary) if summary.exists() else {},
        config=_read_object(config) if config.exists() else None,
    )
    run.final = final_metrics(run)
    return run


# ------------------------------------------------------------------ grouping


@dataclass
class Group:
    label: str
    config: dict[str, Any] | None
    runs: list[Run]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 30 else text[:27] + "..."


def _labels(configs: list[dict[str, Any] | None], names: list[str]) -> list[str]:
    known = [c for c in configs if c is not None]
    keys = sorted({k for c in known for k in c})
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in known}) > 1]
    labels = []
    for config, name in zip(configs, names, strict=True):
        if config is None:
            labels.append(name)
        elif differing:
            labels.append(" ".join(f"{k}={_short(config.get(k))}" for k in differing))
        else:
            labels.append(str(config.get("method", name)))
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        labels[i] = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return labels


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs with equal configs except `PER_RUN_KEYS` form a group (no config: alone)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.config is None:
            key = f"run:{run.path.resolve()}"
        else:
            shared = {k: v for k, v in run.config.items() if k not in PER_RUN_KEYS}
            key = json.dumps(shared, sort_keys=True)
        groups.setdefault(key, []).append(run)
    members = list(groups.values())
    configs = [
        g[0].config and {k: v for k, v in g[0].config.items() if k not in PER_RUN_KEYS}
        for g in members
    ]
    labels = _labels(configs, [g[0].name for g in members])
    out = [
        Group(label, config, rs) for label, config, rs in zip(labels, configs, members, strict=True)
    ]
    for group in out:
        names = sorted({m for r in group.runs for m in r.final})
        group.stats = {m: interval([r.final[m] for r in group.runs if m in r.final]) for m in names}
    return out


def metric_order(names: set[str]) -> list[str]:
    """Training metrics first, then held-out (eval/) ones, then eval reports."""

    def rank(name: str) -> tuple[int, int, str]:
        base = name.removeprefix("eval/")
        known = CURVE_KEYS.index(base) if base in CURVE_KEYS else len(CURVE_KEYS)
        return (name.startswith("report") * 2 + name.startswith("eval/"), known, name)

    return sorted(names, key=rank)


# ------------------------------------------------------------------ plots


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def plot_curve(key: str, groups: list[Group], path: Path) -> None:
    """One line per run (one color per configuration) of `key` over steps."""
    fig = new_figure(7, 4)
    ax = fig.add_subplot()
    for color, group in enumerate(groups):
        for index, run in enumerate(group.runs):
            points = [(r["step"], r[key]) for r in run.rows if isinstance(r.get(key), int | float)]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                style = ("o" if len(xs) < 10 else "") + LINESTYLES[index % len(LINESTYLES)]
                ax.plot(
                    xs,
                    ys,
                    style,
                    color=f"C{color % 10}",
                    label=f"{run.name} ({group.label})",
                    lw=1.2,
                    ms=3,
                )
    ax.set(xlabel="step", ylabel=key, title=key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_png(fig, path, tight=True)


def plot_finals(metrics: list[str], groups: list[Group], path: Path) -> None:
    """One panel per metric: a bar per configuration (mean, 95% interval), dots = runs."""
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    width = max(3.2, 0.9 * len(groups) + 1.2)
    fig = new_figure(width * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for x, group in enumerate(groups):
            stat = group.stats.get(metric)
            if not stat or stat["mean"] is None:
                continue
            err = (
                None
                if stat["std"] is None
                else [[stat["mean"] - stat["ci95_low"]], [stat["ci95_high"] - stat["mean"]]]
            )
            ax.bar(x, stat["mean"], yerr=err, capsize=4, color=f"C{x % 10}", alpha=0.7)
            values = [r.final[metric] for r in group.runs if metric in r.final]
            ax.plot([x] * len(values), values, "k.", ms=4)
        ax.set_xticks(
            range(len(groups)), [g.label for g in groups], rotation=30, ha="right", fontsize=7
        )
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.tight_layout()
    save_png(fig, path, tight=True)


# ------------------------------------------------------------------ report


def _number(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat or stat["mean"] is None:
        return "–"
    if stat["std"] is None:
        return _number(stat["mean"])
    half = stat["ci95_high"] - stat["mean"]
    return f"{_number(stat['mean'])} ± {_number(half)} (n={stat['n']})"


def markdown(
    groups: list[Group], metrics: list[str], curves: dict[str, str], finals: list[str]
) -> str:
    runs = [(g, r) for g in groups for r in g.runs]
    run_rows = []
    for g, r in runs:
        seed, steps = (r.config or {}).get("seed", "–"), r.summary.get("steps", "–")
        run_rows.append((r.name, g.label, str(seed), str(steps), f"`{r.path}`"))
    final_rows = [(m, *(_cell(g.stats.get(m)) for g in groups)) for m in metrics]
    lines = [
        "# Run comparison",
        "",
        f"{len(runs)} runs in {len(groups)} configurations. Final metrics are means over the runs "
        "of a configuration with a 95% Student-t interval when it has several (seeds).",
        "",
        "## Runs",
        "",
        markdown_table(("run", "configuration", "seed", "steps", "directory"), run_rows),
        "",
        "## Final metrics",
        "",
        markdown_table(("metric", *(g.label for g in groups)), final_rows),
    ]
    lines += [""] + [f"![final metrics]({name})" for name in finals]
    if curves:
        lines += ["", "## Training curves"]
        for key, name in curves.items():
            lines += ["", f"### {key}", "", f"![{key}]({name})"]
    return "\n".join(lines) + "\n"


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def table(groups: list[Group], metrics: list[str], images: dict[str, Any]) -> dict[str, Any]:
    runs = [
        {
            "name": r.name,
            "path": str(r.path),
            "configuration": g.label,
            "seed": (r.config or {}).get("seed"),
            "steps": r.summary.get("steps"),
            "final": r.final,
            "eval_before": flatten_numbers(r.summary.get("eval_before") or {}),
        }
        for g in groups
        for r in g.runs
    ]
    configurations = [
        {"label": g.label, "config": g.config, "runs": [r.name for r in g.runs], "metrics": g.stats}
        for g in groups
    ]
    return _clean(
        {"metrics": metrics, "runs": runs, "configurations": configurations, "images": images}
    )


def compare_runs(paths: list[str | Path], output: str | Path) -> dict[str, Any]:
    """Read the runs, write plots + report.md + compare.json into `output`; the JSON table."""
    runs = [load_run(p) for p in paths]
    if len({r.name for r in runs}) < len(runs):
        for run in runs:
            run.name = str(run.path)
    groups = group_runs(runs)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for key in CURVE_KEYS:
        if any(key in row for run in runs for row in run.rows):
            curves[key] = f"curve_{_slug(key)}.png"
            plot_curve(key, groups, out / curves[key])
    metrics = metric_order({m for r in runs for m in r.final})
    finals = []
    for i in range(0, len(metrics), METRICS_PER_FIGURE):
        finals.append(f"final_metrics_{i // METRICS_PER_FIGURE + 1}.png")
        plot_finals(metrics[i : i + METRICS_PER_FIGURE], groups, out / finals[-1])
    images = {"curves": curves, "final_metrics": finals}
    result = table(groups, metrics, images)
    atomic_write_text(out / "compare.json", json.dumps(result, indent=2))
    atomic_write_text(out / "report.md", markdown(groups, metrics, curves, finals))
    return result
