"""Report helpers shared by every stage that writes a report for people: Markdown tables,
PNG plots and the 95% interval of a mean.

Torch-free; matplotlib is imported inside the plotting functions only, so reading a report
module costs nothing when no plot is drawn.

- `markdown_table(header, rows, align=)`: a GitHub-flavoured Markdown table (cells escaped).
- `new_figure(width, height)` and `save_png(figure, path)`: one way to draw and save a plot —
  a `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no global backend switch, nothing
  to close), written atomically through `alignkit.io`.
- `interval(values)`: mean, sample std and the 95% Student-t interval of the mean (exact t
  quantiles from SciPy), with the count of non-finite values left out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignkit.io import atomic_write

DPI = 110

# ------------------------------------------------------------------ Markdown


def _cell(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", "\\n")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A Markdown table, its lines joined by newlines (no trailing newline).

    Cells are `str(value)` (floats: 4 significant digits; format them first for anything
    else) with `|` and newlines escaped, so a cell never breaks the table. `align` is one
    letter per column, `l` (the default) or `r`: e.g. "lrl" right-aligns the second column.
    """
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align must be one of 'l'/'r' per column, got {align!r}")
    rule = "".join("---|" if a == "l" else "---:|" for a in align)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + rule]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ plots


def new_figure(width: float = 7.0, height: float = 4.0) -> Any:
    """An empty matplotlib `Figure` of `width` x `height` inches on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | Path, *, dpi: int = DPI, tight: bool = False) -> None:
    """Write `figure` (a matplotlib `Figure`, e.g. of `new_figure`) as a PNG at `path`,
    atomically; `tight` crops the saved image to what is drawn (`bbox_inches="tight"`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    extra = {"bbox_inches": "tight"} if tight else {}
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi, **extra))


# ------------------------------------------------------------------ statistics


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided `level` quantile of Student's t with `df` degrees of freedom (exact:
    `scipy.stats.t.ppf(0.5 + level / 2, df)`; 12.706 for df 1, 2.0395 for df 31)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and the 95% t-interval of the mean over the finite `values`:
    `{"n", "nonfinite", "mean", "std", "ci95_low", "ci95_high"}`. `n` counts the finite
    values, `nonfinite` the NaN / inf ones (a diverged seed), left out of the statistics but
    counted, so a report can flag them; std and bounds are None below 2 values, mean None
    without any."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    mean = statistics.fmean(finite) if finite else None
    std = statistics.stdev(finite) if n >= 2 else None
    half = t_quantile(n - 1) * std / math.sqrt(n) if std is not None else None
    return {
        "n": n,
        "nonfinite": len(values) - n,
        "mean": mean,
        "std": std,
        "ci95_low": mean - half if half is not None else None,
        "ci95_high": mean + half if half is not None else None,
    }
