"""The end-to-end runs of `alignkit select NAME` and what they write.

`run_selection(name, config)` (every registry selector with a CLI config: random, reward-gap,
rm-margin, perplexity, length): load the records, score them (`alignkit.select.registry`),
keep the budget by the keep rule, then write subset.jsonl (the kept records with their
original columns, which `alignkit train --data` reads), scores.jsonl (every record: index,
source, score, rank, kept), dropped.jsonl (the others with their scores), report.json,
report.md and scores_hist.png (the cut marked).

`run_deft` / `run_real` (`alignkit select deft|real`, with their own options and extra
outputs): load the records and the model, score and select (`alignkit.select.deft` /
`alignkit.select.real`, which never import this module), then write the subset (TRL
prompt/chosen/rejected jsonl), a per-example scores file, dropped.jsonl, report.json for
machines and report.md + PNG histograms for people. Every file is written atomically, by the
main process only.

Plots use matplotlib's Agg canvas directly (no pyplot global state, no display needed).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from alignkit.data.loading import iter_rows
from alignkit.data.prompts import prompt_json
from alignkit.data.records import Multi, Pair, Point
from alignkit.errors import DataError
from alignkit.io import atomic_write, atomic_write_jsonl, atomic_write_text
from alignkit.models import distributed_state
from alignkit.scoring.deft import Q_DIFF_FILE, save_q_diff
from alignkit.select.common import budget_count, keep_order, rejected_path
from alignkit.select.deft import DeftConfig, DeftSelection, select_deft
from alignkit.select.real import RealConfig, RealSelection, select_real
from alignkit.select.registry import SelectConfig, get_selector, resolve_keep, score_records

SUBSET = "subset.jsonl"
SCORES = "scores.jsonl"
DROPPED = "dropped.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DEFT_PLOT = "r_q_hist.png"
REAL_PLOT = "similarity_hist.png"
SCORES_PLOT = "scores_hist.png"


# ------------------------------------------------------------------------------ runs


@dataclass
class DeftResult:
    """Where the outputs are, and the headline numbers (also in report.json)."""

    output: Path
    subset: Path
    scored: int
    kept: int
    cut: float
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RealResult:
    output: Path
    subset: Path
    selected: int
    summary: dict[str, Any] = field(default_factory=dict)


def run_deft(config: DeftConfig) -> DeftResult | None:
    """`alignkit select deft`: select, then write the subset, scores and report (main
    process only; the others return None)."""
    state = distributed_state()
    selection = select_deft(config, state)
    result = None
    if state.is_main_process:
        summary = write_deft(Path(config.output), config, selection)
        result = DeftResult(
            output=Path(config.output),
            subset=Path(config.output) / SUBSET,
            scored=len(selection.scores),
            kept=len(selection.keep),
            cut=summary["cut"],
            summary=summary,
        )
    state.wait_for_everyone()
    return result


def run_real(config: RealConfig) -> RealResult | None:
    """`alignkit select real`: select, then write the subset, scores and report (main
    process only; the others return None)."""
    state = distributed_state()
    selection = select_real(config, state)
    result = None
    if state.is_main_process:
        summary = write_real(Path(config.output), config, selection)
        result = RealResult(
            Path(config.output), Path(config.output) / SUBSET, summary["selected"], summary
        )
    state.wait_for_everyone()
    return result


@dataclass
class SelectionResult:
    """Where `run_selection` wrote, and the headline numbers (also in report.json)."""

    output: Path
    subset: Path
    scored: int
    kept: int
    keep: str
    cut: float
    summary: dict[str, Any] = field(default_factory=dict)


def run_selection(name: str, config: SelectConfig) -> SelectionResult:
    """`alignkit select NAME`: load, score (cached by content with --cache-dir), keep the
    budget, write the five outputs and the histogram.

    Under a launcher every process scores its share and gets every score back
    (`score_records`); the main process alone writes the files, and every process returns
    the same headline numbers (its `summary` is the report's on the main process only)."""
    from alignkit.data import load_records

    config.validate()
    selector = get_selector(name)
    options = selector.resolve_options(config.options())
    keep = resolve_keep(name, options, config.keep)
    start = time.perf_counter()
    output = Path(config.output)
    state = distributed_state()
    records, _ = load_records(
        config.data,
        config.data_format,
        skip_invalid=config.skip_invalid,
        rejected_path=rejected_path(config.output, config.skip_invalid, state),
    )
    scores = score_records(name, config.request(list(records)))
    count = budget_count(len(records), config.fraction, config.count)
    order = keep_order(scores, keep, config.seed)
    if not state.is_main_process:
        state.wait_for_everyone()  # the main process has written every file
        cut = float(scores[order[count - 1]])
        return SelectionResult(output, output / SUBSET, len(records), count, keep, cut)
    info = {
        "selector": name,
        "description": selector.description,
        "options": options,
        "data": list(config.data),
        "model": getattr(config, "model", None),
        "fraction": config.fraction,
        "count": config.count,
        "keep": keep,
        "seed": config.seed,
    }
    rows = original_rows(records, config.data)
    summary = write_selection(output, records, rows, scores, order, count, info)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    write_report(output, summary, _selection_markdown(summary))
    state.wait_for_everyone()
    return SelectionResult(
        output, output / SUBSET, len(records), count, keep, summary["cut"], summary
    )


def original_rows(records: Sequence[Any], paths: Iterable[str]) -> list[dict[str, Any]]:
    """Each record's row as its file holds it (every column kept), found by its
    `source` ("path:line" / "path[record N]"); a record whose file cannot be read again
    (not a local file) is written as the row of its kind (`record_row`)."""
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
        else record_row(r)
        for r in records
    ]


def write_selection(
    output: Path,
    records: Sequence[Any],
    rows: Sequence[dict[str, Any]],
    scores: np.ndarray,
    order: np.ndarray,
    count: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    """subset.jsonl (rows kept, in data order), scores.jsonl, dropped.jsonl and
    scores_hist.png of one selection; returns the summary (`info` + counts, cut, stats).
    `order`: every index in the order the keep rule takes them (`keep_order`)."""
    output.mkdir(parents=True, exist_ok=True)
    n = len(records)
    kept = np.zeros(n, dtype=bool)
    kept[order[:count]] = True
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    cut = float(scores[order[count - 1]])
    score_rows = [
        {
            "index": i,
            "source": r.source,
            "score": float(scores[i]),
            "rank": int(ranks[i]),
            "kept": bool(kept[i]),
        }
        for i, r in enumerate(records)
    ]
    _write_rows(output / SUBSET, (rows[i] for i in range(n) if kept[i]))
    _write_rows(output / SCORES, score_rows)
    _write_rows(
        output / DROPPED,
        ({**_without(s, "kept"), "record": rows[s["index"]]} for s in score_rows if not s["kept"]),
    )
    keep = info.get("keep", "lowest")
    cut_histogram_png(
        output / SCORES_PLOT,
        scores,
        scores[kept],
        cut,
        title=f"{info.get('selector', 'selection')}: {keep} {count} of {n} kept",
        xlabel="score",
    )
    return {
        **info,
        "records": n,
        "kept": count,
        "dropped": n - count,
        "cut": cut,
        "scores_all": stats(scores),
        "scores_kept": stats(scores[kept]),
        "scores_dropped": stats(scores[~kept]),
        "files": {
            "subset": SUBSET,
            "scores": SCORES,
            "dropped": DROPPED,
            "histogram": SCORES_PLOT,
        },
    }


def _write_rows(path: Path, rows: Iterable[Any]) -> None:
    """jsonl; values JSON does not know (from parquet or datasets) written as strings."""
    text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    atomic_write_text(path, text)


def _selection_markdown(s: dict[str, Any]) -> str:
    stat_rows = [
        [name, *(s[key].get(k, "") for k in ("min", "mean", "median", "max"))]
        for name, key in (
            ("all", "scores_all"),
            ("kept", "scores_kept"),
            ("dropped", "scores_dropped"),
        )
    ]
    options = ", ".join(f"{k}={v!r}" for k, v in s["options"].items()) or "none"
    budget = f"fraction {s['fraction']}" if s["fraction"] is not None else f"count {s['count']}"
    model = f"; model: {s['model']}" if s.get("model") else ""
    sign = "<=" if s["keep"] == "lowest" else ">="
    return "\n\n".join(
        [
            f"# Selection report: {s['selector']}",
            f"{s['description'][:1].upper()}{s['description'][1:]}.",
            f"Kept **{s['kept']} of {s['records']}** records with the {s['keep']} scores "
            f"({budget}, seed {s['seed']}); cut score {sign} {s['cut']:.6g}. The kept records "
            f"are in `{SUBSET}` with their original columns, the {s['dropped']} others with "
            f"their scores in `{DROPPED}`, every score in `{SCORES}`.",
            f"Data: {', '.join(s['data'])}{model}; options: {options}; {s['seconds']} s.",
            f"![score histogram]({SCORES_PLOT})",
            markdown_table(["score", "min", "mean", "median", "max"], stat_rows),
            f"Train on the subset: `alignkit train --method dpo --data {SUBSET} ...`\n",
        ]
    )


# ----------------------------------------------------------------------------- rows


def pair_row(prompt: Any, chosen: str, rejected: str) -> dict[str, Any]:
    """One TRL-style preference row."""
    return {"prompt": prompt_json(prompt), "chosen": chosen, "rejected": rejected}


def record_row(record: Any) -> dict[str, Any]:
    """A record as the row a training file holds (pairs: TRL prompt/chosen/rejected)."""
    if isinstance(record, Pair):
        return pair_row(record.prompt, record.chosen, record.rejected)
    if isinstance(record, Point):
        row = {"prompt": prompt_json(record.prompt), "completion": record.completion}
        label: Any = bool(record.label) if record.binary else record.label
        return {**row, "label": label, "high_quality": record.high_quality}
    if isinstance(record, Multi):
        return {
            "prompt": prompt_json(record.prompt),
            "responses": list(record.responses),
            "scores": list(record.scores),
        }
    raise TypeError(f"not a record: {record!r}")


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 4.0) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def cut_histogram_png(
    path: Path, values: np.ndarray, kept: np.ndarray, cut: float, *, title: str, xlabel: str
) -> None:
    """Histogram of all `values` with the `kept` ones highlighted and the cut marked."""
    fig, ax = _figure()
    bins = np.histogram_bin_edges(values, bins=min(60, max(10, len(values) // 5)))
    ax.hist(values, bins=bins, color="#9aa5b1", label=f"all ({len(values)})")
    ax.hist(kept, bins=bins, color="#2b7bba", label=f"kept ({len(kept)})")
    ax.axvline(cut, color="#c0392b", linestyle="--", label=f"cut = {cut:.4g}")
    ax.set(title=title, xlabel=xlabel, ylabel="examples")
    ax.legend()
    _save(fig, path)


def overlay_histogram_png(
    path: Path, groups: Mapping[str, np.ndarray], *, title: str, xlabel: str
) -> None:
    """One step histogram per named group, on shared bins."""
    fig, ax = _figure()
    present = {name: v for name, v in groups.items() if len(v)}
    everything = np.concatenate(list(present.values())) if present else np.zeros(1)
    bins = np.histogram_bin_edges(everything, bins=min(60, max(10, len(everything) // 8)))
    for name, values in present.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=f"{name} ({len(values)})")
    ax.set(title=title, xlabel=xlabel, ylabel="pairs")
    ax.legend()
    _save(fig, path)


# --------------------------------------------------------------------------- report


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", "\\n")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(output: Path, summary: dict[str, Any], markdown: str) -> None:
    atomic_write_text(output / REPORT_JSON, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(output / REPORT_MD, markdown)


# ----------------------------------------------------------------------------- DEFT


def write_deft(output: Path, config: DeftConfig, sel: DeftSelection) -> dict[str, Any]:
    """subset.jsonl, scores.jsonl, q_diff.safetensors, r_q_hist.png, report.json/.md;
    returns the summary."""
    output.mkdir(parents=True, exist_ok=True)
    save_q_diff(output / Q_DIFF_FILE, sel.dists, _q_diff_meta(config, sel))
    scores = sel.scores.double().numpy()
    keep = sel.keep.numpy()
    kept_mask = np.zeros(len(scores), dtype=bool)
    kept_mask[keep] = True
    cut = float(scores[keep].max() if config.keep == "lowest" else scores[keep].min())
    records = [sel.records[sel.encoded[i].index] for i in keep]
    atomic_write_jsonl(output / SUBSET, (pair_row(r.prompt, r.chosen, r.rejected) for r in records))
    rows = _deft_score_rows(sel, kept_mask, keep_order(scores, config.keep, config.seed))
    atomic_write_jsonl(output / SCORES, rows)
    atomic_write_jsonl(
        output / DROPPED,
        (
            {**_without(row, "kept"), "record": record_row(sel.records[row["index"]])}
            for row in rows
            if not row["kept"]
        ),
    )
    cut_histogram_png(
        output / DEFT_PLOT,
        scores,
        scores[kept_mask],
        cut,
        title=f"DEFT R_Q ({config.form}, {config.score}) - {config.keep} {len(keep)} kept",
        xlabel="R_Q",
    )
    summary = {
        "method": "deft",
        "data": list(config.data),
        "model": config.model,
        "form": config.form,
        "score": config.score,
        "records": len(sel.records),
        "scored": len(scores),
        "kept": int(len(keep)),
        "keep_fraction": config.keep_fraction if not config.keep_count else None,
        "keep_count": config.keep_count or None,
        "keep": config.keep,
        "seed": config.seed,
        "cut": cut,
        "r_q_all": stats(scores),
        "r_q_kept": stats(scores[kept_mask]),
        "tokens": {"preferred": sel.dists.pos_tokens, "dispreferred": sel.dists.neg_tokens},
        "q_diff_top": sel.tokens,
        "encoding": sel.encoding,
        "seconds": round(sel.seconds, 2),
        "q_diff": {"tokenizer": sel.tokenizer, "fingerprint": sel.fingerprint},
        "files": {
            "subset": SUBSET,
            "scores": SCORES,
            "dropped": DROPPED,
            "q_diff": Q_DIFF_FILE,
            "histogram": DEFT_PLOT,
        },
    }
    write_report(output, summary, _deft_markdown(summary))
    return summary


def _q_diff_meta(config: DeftConfig, sel: DeftSelection) -> dict[str, Any]:
    """What a Q_diff file records: the tokenizer it was counted in and the data."""
    files = []
    for name in config.data:
        path = Path(name)
        size = path.stat().st_size if path.is_file() else None
        files.append({"path": str(path.resolve()), "bytes": size})
    return {
        "created_by": "alignkit select deft",
        "selection": {"model": config.model, "form": config.form, "score": config.score},
        "tokenizer": sel.tokenizer,
        "special_ids_excluded": sel.special_ids,
        "data": {
            "files": files,
            "format": config.data_format,
            "records": len(sel.records),
            "examples": len(sel.encoded),
            "fingerprint": sel.fingerprint,
            "encoding": sel.encoding,
        },
        "tokens": {"preferred": sel.dists.pos_tokens, "dispreferred": sel.dists.neg_tokens},
    }


def _deft_score_rows(
    sel: DeftSelection, kept: np.ndarray, order: np.ndarray
) -> list[dict[str, Any]]:
    """One row per scored example, in data order: R_Q per response, score, rank (0 = the
    first the keep rule takes), kept."""
    ranks = np.empty(len(kept), dtype=np.int64)
    ranks[order] = np.arange(len(kept))
    table = sel.table.double().numpy()
    rows = []
    for i, enc in enumerate(sel.encoded):
        row: dict[str, Any] = {
            "index": enc.index,
            "source": sel.records[enc.index].source,
            "r_q_chosen": float(table[i, 0]),
        }
        if table.shape[1] > 1:
            row["r_q_rejected"] = float(table[i, 1])
        row.update(score=float(sel.scores[i]), rank=int(ranks[i]), kept=bool(kept[i]))
        rows.append(row)
    return rows


def _deft_markdown(s: dict[str, Any]) -> str:
    def token_rows(rows: list[dict]) -> list[list[Any]]:
        return [[repr(r["token"]), r["id"], r["q_diff"], r["q_pos"], r["q_neg"]] for r in rows]

    headers = ["token", "id", "Q_diff", "Q_pos", "Q_neg"]
    stat_rows = [
        [name, *(s[key].get(k, "") for k in ("min", "mean", "median", "max"))]
        for name, key in (("all", "r_q_all"), ("kept", "r_q_kept"))
    ]
    return "\n\n".join(
        [
            "# DEFT selection report",
            f"Kept **{s['kept']} of {s['scored']}** scored examples ({s['records']} records) with "
            f"the {s['keep']} R_Q ({s['form']} form, on {s['score']}); cut R_Q "
            f"{'<=' if s['keep'] == 'lowest' else '>='} {s['cut']:.6g}. The others are in "
            f"`{DROPPED}`.",
            f"Data: {', '.join(s['data'])}; model: {s['model']}; {s['encoding']}; "
            f"{s['seconds']} s.",
            f"![R_Q histogram]({DEFT_PLOT})",
            markdown_table(["R_Q", "min", "mean", "median", "max"], stat_rows),
            f"Q_pos counted {s['tokens']['preferred']} tokens, Q_neg "
            f"{s['tokens']['dispreferred']}.",
            "## Tokens most typical of preferred responses (largest Q_diff)",
            markdown_table(headers, token_rows(s["q_diff_top"]["positive"])),
            "## Tokens most typical of dispreferred responses (most negative Q_diff)",
            markdown_table(headers, token_rows(s["q_diff_top"]["negative"])),
            f"Q_diff (the one filtered with) is in `{Q_DIFF_FILE}`; train on the subset with "
            f"the same Q_diff for the guidance term: `alignkit train --method dpo --data "
            f"{SUBSET} --q-diff {Q_DIFF_FILE} --deft-lambda 0.1 ...` (or `--log-r-q` to only "
            "log R_Q).\n",
        ]
    )


# ----------------------------------------------------------------------------- REAL


def write_real(output: Path, config: RealConfig, sel: RealSelection) -> dict[str, Any]:
    """subset.jsonl, scores.jsonl, similarity_hist.png, report.json/.md; returns the summary."""
    output.mkdir(parents=True, exist_ok=True)
    if sel.mode == "pair":
        rows, scores, groups, subsets = _real_pairs(sel, config)
    else:
        rows, scores, groups, subsets = _real_prompts(sel, config)
    atomic_write_jsonl(output / SUBSET, rows)
    atomic_write_jsonl(output / SCORES, scores)
    atomic_write_jsonl(output / DROPPED, _real_dropped(sel, scores))
    overlay_histogram_png(
        output / REAL_PLOT,
        groups,
        title=f"REAL: cosine similarity of the two responses ({sel.mode} data)",
        xlabel="cosine similarity",
    )
    summary = {
        "method": "real",
        "data": list(config.data),
        "model": config.model,
        "mode": sel.mode,
        "strategy": config.strategy,
        "records": len(sel.records),
        "responses": len(sel.texts),
        "distinct_responses": int(sel.emb.matrix.shape[0]),
        "selected": len(rows),
        "subsets": subsets,
        "seconds": round(sel.seconds, 2),
        "files": {"subset": SUBSET, "scores": SCORES, "dropped": DROPPED, "histogram": REAL_PLOT},
    }
    write_report(output, summary, _real_markdown(summary))
    return summary


def _real_pairs(sel: RealSelection, config: RealConfig) -> tuple[list, list, dict, dict]:
    assert sel.sim is not None and sel.eligible is not None
    sim = sel.sim.numpy()
    keep = sel.subsets[config.strategy].numpy()
    rows = [
        pair_row(sel.records[i].prompt, sel.records[i].chosen, sel.records[i].rejected)
        for i in keep
    ]
    picked = np.zeros(len(sim), dtype=bool)
    picked[keep] = True
    lengths = sel.emb.lengths.numpy()
    scores = [
        {
            "index": i,
            "source": r.source,
            "similarity": float(sim[i]),
            "chosen_tokens": int(lengths[2 * i]),
            "rejected_tokens": int(lengths[2 * i + 1]),
            "eligible": bool(sel.eligible[i]),
            "selected": bool(picked[i]),
        }
        for i, r in enumerate(sel.records)
    ]
    groups = {"all pairs": sim[sel.eligible.numpy()]}
    groups.update({name: sim[idx.numpy()] for name, idx in sel.subsets.items()})
    subsets = {
        "all": {"pairs": len(sim), "eligible": int(sel.eligible.sum()), "similarity": stats(sim)},
        **{
            name: {"pairs": len(idx), "similarity": stats(sim[idx.numpy()])}
            for name, idx in sel.subsets.items()
        },
    }
    return rows, scores, groups, subsets


def _real_prompts(sel: RealSelection, config: RealConfig) -> tuple[list, list, dict, dict]:
    picked = sel.subsets[config.strategy]
    offsets = np.cumsum([0] + [len(r.responses) for r in sel.records])
    rows, scores = [], []
    for p, c, r, s in zip(
        picked.prompt.tolist(),
        picked.chosen.tolist(),
        picked.rejected.tolist(),
        picked.similarity.tolist(),
        strict=True,
    ):
        record = sel.records[p]
        rows.append(pair_row(record.prompt, sel.texts[c], sel.texts[r]))
        scores.append(
            {
                "index": p,
                "source": record.source,
                "chosen": c - int(offsets[p]),
                "rejected": r - int(offsets[p]),
                "score_chosen": record.scores[c - int(offsets[p])],
                "score_rejected": record.scores[r - int(offsets[p])],
                "similarity": s,
            }
        )
    groups = {"all valid pairs": next(iter(sel.subsets.values())).candidates.numpy()}
    groups.update({name: pp.similarity.numpy() for name, pp in sel.subsets.items()})
    subsets = {
        name: {**pp.counts, "similarity": stats(pp.similarity)} for name, pp in sel.subsets.items()
    }
    return rows, scores, groups, subsets


def _real_dropped(sel: RealSelection, scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that gave no pair to the subset: pair data with their similarity as the
    score; multi-response data (prompts without a selected pair) with no score."""
    if sel.mode == "pair":
        return [
            {**_without(row, "selected"), "score": row["similarity"],
             "record": record_row(sel.records[row["index"]])}
            for row in scores
            if not row["selected"]
        ]  # fmt: skip
    picked = {row["index"] for row in scores}
    return [
        {"index": i, "source": r.source, "score": None, "record": record_row(r)}
        for i, r in enumerate(sel.records)
        if i not in picked
    ]


_COUNT_ORDER = (
    "pairs",
    "eligible",
    "prompts",
    "too_few_responses",
    "no_valid_pair",
    "centroid_pair_filtered",
    "selected",
)


def _real_markdown(s: dict[str, Any]) -> str:
    present = {k for v in s["subsets"].values() for k in v}
    count_keys = [k for k in _COUNT_ORDER if k in present]
    rows = [
        [
            name,
            *(v.get(k, "") for k in count_keys),
            *(v["similarity"].get(k, "") for k in ("min", "mean", "max")),
        ]
        for name, v in s["subsets"].items()
    ]
    table = markdown_table(["subset", *count_keys, "sim min", "sim mean", "sim max"], rows)
    return "\n\n".join(
        [
            "# REAL selection report",
            f"Strategy **{s['strategy']}** on {s['mode']} data: **{s['selected']} pairs** written "
            f"from {s['records']} records ({s['responses']} responses, "
            f"{s['distinct_responses']} distinct); {s['seconds']} s.",
            f"Data: {', '.join(s['data'])}; model: {s['model']}.",
            f"![similarity histograms]({REAL_PLOT})",
            table,
            f"Train on the subset: `alignkit train --method dpo --data {SUBSET} ...`\n",
        ]
    )
