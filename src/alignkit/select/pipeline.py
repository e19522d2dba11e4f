"""The end-to-end runs of `alignkit select deft|real` and what they write.

`run_deft` / `run_real`: load the records and the model, score and select (`alignkit.select.deft`
/ `alignkit.select.real`, which never import this module), then write the subset (TRL
prompt/chosen/rejected jsonl that `alignkit train --data` reads), a per-example scores file,
report.json for machines and report.md + PNG histograms for people. Every file is written
atomically, by the main process only.

Plots use matplotlib's Agg canvas directly (no pyplot global state, no display needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from alignkit.data.prompts import prompt_json
from alignkit.io import atomic_write, atomic_write_jsonl, atomic_write_text
from alignkit.scoring.deft import Q_DIFF_FILE, save_q_diff
from alignkit.select.common import distributed_state
from alignkit.select.deft import DeftConfig, DeftSelection, select_deft
from alignkit.select.real import RealConfig, RealSelection, select_real

SUBSET = "subset.jsonl"
SCORES = "scores.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DEFT_PLOT = "r_q_hist.png"
REAL_PLOT = "similarity_hist.png"


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


# ----------------------------------------------------------------------------- rows


def pair_row(prompt: Any, chosen: str, rejected: str) -> dict[str, Any]:
    """One TRL-style preference row."""
    return {"prompt": prompt_json(prompt), "chosen": chosen, "rejected": rejected}


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
    cut = float(scores[keep].max())
    records = [sel.records[sel.encoded[i].index] for i in keep]
    atomic_write_jsonl(output / SUBSET, (pair_row(r.prompt, r.chosen, r.rejected) for r in records))
    atomic_write_jsonl(output / SCORES, _deft_score_rows(sel, kept_mask))
    cut_histogram_png(
        output / DEFT_PLOT,
        scores,
        scores[kept_mask],
        cut,
        title=f"DEFT R_Q ({config.form}, {config.score}) - lowest {len(keep)} kept",
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


def _deft_score_rows(sel: DeftSelection, kept: np.ndarray) -> list[dict[str, Any]]:
    """One row per scored example, in data order: R_Q per response, score, rank, kept."""
    ranks = np.empty(len(kept), dtype=np.int64)
    ranks[np.argsort(sel.scores.numpy(), kind="stable")] = np.arange(len(kept))
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
            f"the lowest R_Q ({s['form']} form, on {s['score']}); cut R_Q <= {s['cut']:.6g}.",
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
        "files": {"subset": SUBSET, "scores": SCORES, "histogram": REAL_PLOT},
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
