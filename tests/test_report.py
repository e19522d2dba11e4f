"""alignkit.report: Markdown tables, PNGs and the 95% interval, checked by hand."""

from __future__ import annotations

import math

import pytest

from alignkit.report import interval, markdown_table, new_figure, save_png, t_quantile


def test_markdown_table_formats_and_escapes_cells():
    table = markdown_table(("name", "value"), [("a|b", 0.123456), ("two\nlines", 7)])
    assert table.split("\n") == [
        "| name | value |",
        "|---|---|",
        "| a\\|b | 0.1235 |",  # a float: 4 significant digits; | escaped
        "| two\\nlines | 7 |",
    ]


def test_markdown_table_alignment():
    table = markdown_table(("metric", "value", "definition"), [("ppl", "1.0000", "exp")], "lrl")
    assert table.split("\n")[1] == "|---|---:|---|"
    with pytest.raises(ValueError, match="one of 'l'/'r' per column"):
        markdown_table(("a", "b"), [], "l")


def test_interval_by_hand():
    # values 1, 2, 3: mean 2, sample std sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1,
    # half width t_0.975(df=2) * 1 / sqrt(3) = 4.303 / 1.7320508 = 2.48434...
    stat = interval([1.0, 2.0, 3.0, float("nan")])
    half = 4.302653 / math.sqrt(3)
    assert stat["n"] == 3 and stat["nonfinite"] == 1 and stat["mean"] == 2.0 and stat["std"] == 1.0
    assert stat["ci95_low"] == pytest.approx(2.0 - half)
    assert stat["ci95_high"] == pytest.approx(2.0 + half)
    assert interval([0.4]) == {
        "n": 1,
        "nonfinite": 0,
        "mean": 0.4,
        "std": None,
        "ci95_low": None,
        "ci95_high": None,
    }
    assert interval([])["mean"] is None
    # exact quantiles (mpmath / R's qt): a table's bracket values (2.021 for df 31-40, ...)
    # were too small above 30 degrees of freedom (review fidelity-2, L1)
    exact = {1: 12.7062047, 2: 4.3026527, 30: 2.0422725, 31: 2.0395134, 41: 2.0195410}
    exact |= {61: 1.9996235, 121: 1.9797638, 10**6: 1.9599663}
    for df, want in exact.items():
        assert t_quantile(df) == pytest.approx(want, abs=1e-6), df


def test_save_png_writes_a_png_atomically(tmp_path):
    figure = new_figure(2, 1)
    figure.add_subplot().plot([0, 1], [1, 0])
    save_png(figure, tmp_path / "plot.png")
    save_png(figure, tmp_path / "tight.png", tight=True)
    for name in ("plot.png", "tight.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "tight.png"]  # no temp
