"""`run_selection(name, config)`: the one end-to-end run of `alignkit select NAME`.

Load the records, let the selector choose (its `select` hook, or the default below: score
every record with `score_records`, keep the budget by the keep rule), then write the
`Selection` (`alignkit.select.outputs`) from the main process: subset.jsonl, scores.jsonl,
dropped.jsonl, report.json, report.md and the selector's own files.

The default selection writes the kept records with their original columns (which
`alignkit train --data` reads), scores.jsonl (every record: index, source, score, rank,
kept), dropped.jsonl (the others with their scores) and scores_hist.png (the cut marked).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from alignkit.data.loading import iter_rows, load_records
from alignkit.data.records import Multi
from alignkit.distributed import distributed_state
from alignkit.errors import DataError
from alignkit.report import markdown_table
from alignkit.select.common import budget_count, cut_bound, keep_order, rejected_path
from alignkit.select.configs import SelectConfig
from alignkit.select.outputs import (
    DROPPED,
    SCORES,
    SUBSET,
    Selection,
    cli_message,
    cut_histogram_png,
    ranked_rows,
    row_of,
    stats,
    stats_rows,
    without,
    write_selection,
)
from alignkit.select.registry import Selector, get_selector, resolve_keep, score_records

SCORES_PLOT = "scores_hist.png"


def run_selection(name: str, config: Any) -> Selection:
    """`alignkit select NAME`: load, select, write (main process only).

    `config`: the options of the selector (`Selector.config`, `alignkit.select.configs`).
    Under a launcher every process loads and scores (the scorers share the work out and give
    every score back) and gets the same `Selection`; the main process alone writes the files.
    """
    config.validate()
    selector = get_selector(name)
    select = selector.select or scored_selection(selector, config)
    start = time.perf_counter()
    state = distributed_state()
    records, _ = load_records(
        config.data,
        config.data_format,
        skip_invalid=config.skip_invalid,
        rejected_path=rejected_path(config.output, config.skip_invalid, state),
    )
    selection = select(list(records), config)
    if state.is_main_process:
        selection.summary["seconds"] = round(time.perf_counter() - start, 2)
        write_selection(Path(config.output), selection)
    state.wait_for_everyone()
    return selection


def scored_selection(
    selector: Selector, config: SelectConfig
) -> Callable[[list, SelectConfig], Selection]:
    """The default `select`: one score per record (`score_records`, cached by content with
    --cache-dir), the budget kept by the keep rule (ties in a seeded order), the kept records
    written with their original columns. The options and the keep rule are checked now,
    before any record is read."""
    options = selector.resolve_options(config.options())
    keep = resolve_keep(selector.name, options, config.keep)

    def select(records: list, config: SelectConfig) -> Selection:
        scores = score_records(selector.name, config.request(records))
        count = budget_count(len(records), config.fraction, config.count)
        order = keep_order(scores, keep, config.seed)
        n = len(records)
        score_rows, kept, cut = ranked_rows([r.source for r in records], scores, order, count)
        rows = original_rows(records, config.data)
        summary = {
            "selector": selector.name,
            "description": selector.description,
            "options": options,
            "data": list(config.data),
            "model": getattr(config, "model", None),
            "fraction": config.fraction,
            "count": config.count,
            "keep": keep,
            "seed": config.seed,
            "records": n,
            "kept": count,
            "dropped": n - count,
            "cut": cut,
            "scores_all": stats(scores),
            "scores_kept": stats(scores[kept]),
            "scores_dropped": stats(scores[~kept]),
            "files": {"subset": SUBSET, "scores": SCORES, "dropped": DROPPED,
                      "histogram": SCORES_PLOT},
        }  # fmt: skip
        title = f"{selector.name}: {keep} {count} of {n} kept"
        return Selection(
            subset=[rows[i] for i in range(n) if kept[i]],
            scores=score_rows,
            dropped=[
                {**without(s, "kept"), "record": rows[s["index"]]}
                for s in score_rows
                if not s["kept"]
            ],
            summary=summary,
            markdown=_selection_markdown,
            files={
                SCORES_PLOT: lambda path: cut_histogram_png(
                    path,
                    scores,
                    scores[kept],
                    cut,
                    title=title,
                    xlabel="score",
                    both_sides=keep == "near-zero",
                )
            },
            message=cli_message(
                config.output,
                f"kept {count} of {n} records ({selector.name}, {keep} scores, cut "
                f"{cut_bound(keep, cut)})",
            ),
        )

    return select


def original_rows(records: Sequence[Any], paths: Iterable[str]) -> list[dict[str, Any]]:
    """Each record's row as its file holds it (every column kept), found by its
    `source` ("path:line" / "path[record N]"); a record whose file cannot be read again
    (not a local file) is written as the row of its kind (`row_of`)."""
    # a multi-response record can be built from several rows (an SHP post): write it whole
    wanted = {r.source for r in records if not isinstance(r, Multi)}
    found: dict[str, Any] = {}
    for path in dict.fromkeys(paths):
        if not os.path.exists(path):
            continue
        try:
            for where, row in iter_rows(path, errors=[]):
                if where in wanted:
                    found[where] = row
        except DataError:
            continue
    return [
        found[r.source]
        if r.source in wanted and isinstance(found.get(r.source), dict)
        else row_of(r)
        for r in records
    ]


def _selection_markdown(s: dict[str, Any]) -> str:
    stat_rows = stats_rows(
        s, (("all", "scores_all"), ("kept", "scores_kept"), ("dropped", "scores_dropped"))
    )
    options = ", ".join(f"{k}={v!r}" for k, v in s["options"].items()) or "none"
    budget = f"fraction {s['fraction']}" if s["fraction"] is not None else f"count {s['count']}"
    model = f"; model: {s['model']}" if s.get("model") else ""
    return "\n\n".join(
        [
            f"# Selection report: {s['selector']}",
            f"{s['description'][:1].upper()}{s['description'][1:]}.",
            f"Kept **{s['kept']} of {s['records']}** records with the {s['keep']} scores "
            f"({budget}, seed {s['seed']}); cut score {cut_bound(s['keep'], s['cut'])}. The "
            f"kept records are in `{SUBSET}` with their original columns, the {s['dropped']} "
            f"others with their scores in `{DROPPED}`, every score in `{SCORES}`.",
            f"Data: {', '.join(s['data'])}{model}; options: {options}; {s['seconds']} s.",
            f"![score histogram]({SCORES_PLOT})",
            markdown_table(["score", "min", "mean", "median", "max"], stat_rows),
            f"Train on the subset: `alignkit train --method dpo --data {SUBSET} ...`\n",
        ]
    )
