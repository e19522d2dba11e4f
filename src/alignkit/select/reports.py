"""The `select` hooks of `deft` and `real` (`alignkit.select.registry.Selector.select`): what
`alignkit select deft|real` keeps, and the report sections and files only they have.

`deft_selection`: R_Q per response (`alignkit.select.deft.r_q_table`, as the scorer of the
`deft` selector), the lowest (or highest) fraction kept; scores.jsonl has R_Q of each
response, the report the tokens most typical of each side, and OUTPUT/q_diff.safetensors the
Q_diff it filtered with (for `alignkit train --q-diff`), with r_q_hist.png.

`real_selection`: the responses' embeddings (`alignkit.select.scorers.response_embeddings`),
then every strategy's subset (`alignkit.select.real`) for the report and the chosen one
written; on multi-response data one pair per prompt. similarity_hist.png overlays the
strategies.

Both write the subset as TRL prompt/chosen/rejected rows (`alignkit.data.formats.record_row`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from alignkit.data.formats import kind_of
from alignkit.data.records import Pair
from alignkit.errors import AlignkitError
from alignkit.report import markdown_table
from alignkit.scoring.deft import (
    Q_DIFF_FILE,
    TokenDistributions,
    encoded_fingerprint,
    save_q_diff,
    tokenizer_identity,
)
from alignkit.select.common import cut_bound, keep_order
from alignkit.select.configs import DeftSelectConfig, RealSelectConfig
from alignkit.select.deft import check_finite, r_q_table, selection_scores
from alignkit.select.outputs import (
    DROPPED,
    SCORES,
    SUBSET,
    Selection,
    cli_message,
    cut_histogram_png,
    overlay_histogram_png,
    ranked_rows,
    row_of,
    stats,
    stats_rows,
    without,
)
from alignkit.select.real import pair_subsets, prompt_subsets, real_mode
from alignkit.select.scorers import response_embeddings

DEFT_PLOT = "r_q_hist.png"
REAL_PLOT = "similarity_hist.png"


# ----------------------------------------------------------------------------- DEFT


def require_pairs(records: list[Any], what: str) -> None:
    """An error unless `records` is a non-empty list of preference pairs."""
    if not records:
        raise AlignkitError(f"{what}: the data has no records")
    bad = [r for r in records if kind_of(r) != "pair"]
    if bad:
        raise AlignkitError(
            f"{what} selection needs preference pairs (prompt, chosen, rejected), but "
            f"{len(bad)} of {len(records)} records are not, e.g. {bad[0].source or '?'} is a "
            f"{kind_of(bad[0])}"
        )


def deft_selection(records: list[Any], config: DeftSelectConfig) -> Selection:
    """Score R_Q with the starting model, keep the budget, and describe Q_diff."""
    require_pairs(records, "DEFT")
    r_q = r_q_table(config.request(records), config.truncation)
    score_t = selection_scores(r_q.table, config.score)
    count = config.budget(len(score_t))
    check_finite(score_t)
    scores = score_t.double().numpy()
    order = keep_order(scores, config.keep, config.seed)
    keep = np.sort(order[:count])
    table = r_q.table.double().numpy()  # R_Q of each response: chosen, rejected (margin)
    columns = dict(zip(("r_q_chosen", "r_q_rejected"), table.T, strict=False))
    sources = [records[e.index].source for e in r_q.encoded]
    rows, kept, cut = ranked_rows(sources, score_t.numpy(), order, count, columns)
    for row, enc in zip(rows, r_q.encoded, strict=True):
        row["index"] = enc.index  # the record's index (with --truncation drop, not the row's)
    encoding = r_q.encoding.describe(config.max_length, config.truncation)
    identity = tokenizer_identity(r_q.tokenizer, config.model)
    fingerprint = encoded_fingerprint(r_q.encoded)
    summary = {
        "method": "deft",
        "data": list(config.data),
        "model": config.model,
        "form": config.form,
        "score": config.score,
        "records": len(records),
        "scored": len(scores),
        "kept": int(len(keep)),
        "keep_fraction": config.keep_fraction if not config.keep_count else None,
        "keep_count": config.keep_count or None,
        "keep": config.keep,
        "seed": config.seed,
        "cut": cut,
        "r_q_all": stats(scores),
        "r_q_kept": stats(scores[kept]),
        "tokens": {"preferred": r_q.dists.pos_tokens, "dispreferred": r_q.dists.neg_tokens},
        "q_diff_top": top_tokens(r_q.dists, r_q.tokenizer, config.top_tokens),
        "encoding": encoding,
        "seconds": None,
        "q_diff": {"tokenizer": identity, "fingerprint": fingerprint},
        "files": {"subset": SUBSET, "scores": SCORES, "dropped": DROPPED, "q_diff": Q_DIFF_FILE,
                  "histogram": DEFT_PLOT},
    }  # fmt: skip
    meta = {
        "created_by": "alignkit select deft",
        "selection": {"model": config.model, "form": config.form, "score": config.score},
        "tokenizer": identity,
        "special_ids_excluded": sorted(r_q.tokenizer.all_special_ids),
        "data": {
            "files": [_file_info(name) for name in config.data],
            "format": config.data_format,
            "records": len(records),
            "examples": len(r_q.encoded),
            "fingerprint": fingerprint,
            "encoding": encoding,
        },
        "tokens": summary["tokens"],
    }
    title = f"DEFT R_Q ({config.form}, {config.score}) - {config.keep} {len(keep)} kept"
    return Selection(
        subset=[row_of(records[r_q.encoded[i].index]) for i in keep],
        scores=rows,
        dropped=[
            {**without(row, "kept"), "record": row_of(records[row["index"]])}
            for row in rows
            if not row["kept"]
        ],
        summary=summary,
        markdown=_deft_markdown,
        files={
            Q_DIFF_FILE: lambda path: save_q_diff(path, r_q.dists, meta),
            DEFT_PLOT: lambda path: cut_histogram_png(
                path,
                scores,
                scores[kept],
                cut,
                title=title,
                xlabel="R_Q",
                both_sides=config.keep == "near-zero",
            ),
        },
        message=cli_message(
            config.output,
            f"kept {len(keep)} of {len(scores)} examples ({config.keep} R_Q, cut {cut:.6g})",
            q_diff=Q_DIFF_FILE,
        ),
    )


def _file_info(name: str) -> dict[str, Any]:
    path = Path(name)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size if path.is_file() else None}


def top_tokens(dists: TokenDistributions, tokenizer: Any, n: int) -> dict[str, list[dict]]:
    """The `n` tokens with the largest positive and the largest negative Q_diff."""
    q_diff = dists.q_pos - dists.q_neg

    def rows(ids: Tensor) -> list[dict]:
        return [
            {
                "id": int(i),
                "token": tokenizer.decode([int(i)]),
                "q_diff": float(q_diff[i]),
                "q_pos": float(dists.q_pos[i]),
                "q_neg": float(dists.q_neg[i]),
            }
            for i in ids
            if q_diff[i] != 0
        ]

    order = torch.argsort(q_diff, descending=True, stable=True)
    return {"positive": rows(order[:n]), "negative": rows(order.flip(0)[:n])}


def _deft_markdown(s: dict[str, Any]) -> str:
    def token_rows(rows: list[dict]) -> list[list[Any]]:
        return [[repr(r["token"]), r["id"], r["q_diff"], r["q_pos"], r["q_neg"]] for r in rows]

    headers = ["token", "id", "Q_diff", "Q_pos", "Q_neg"]
    stat_rows = stats_rows(s, (("all", "r_q_all"), ("kept", "r_q_kept")))
    return "\n\n".join(
        [
            "# DEFT selection report",
            f"Kept **{s['kept']} of {s['scored']}** scored examples ({s['records']} records) with "
            f"the {s['keep']} R_Q ({s['form']} form, on {s['score']}); cut R_Q "
            f"{cut_bound(s['keep'], s['cut'])}. The others are in "
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


def real_selection(records: list[Any], config: RealSelectConfig) -> Selection:
    """Embed every response (cached), compute every strategy's subset, keep --strategy's."""
    mode = real_mode(records)
    config.check_data(mode, records)
    if mode == "pair":
        texts = [t for r in records for t in (r.chosen, r.rejected)]
    else:
        texts = [t for r in records for t in r.responses]
    emb = response_embeddings(config.request(records), texts, config.embedding_cache())
    if mode == "pair":
        sim, eligible, pair_sets = pair_subsets(
            emb,
            config.strategy,
            fraction=config.fraction,
            count=config.count,
            max_length=config.max_length,
            seed=config.seed,
        )
        rows, scores, groups, subsets = _real_pairs(records, config, sim, eligible, pair_sets, emb)
        dropped = [
            {**without(row, "selected"), "score": row["similarity"],
             "record": row_of(records[row["index"]])}
            for row in scores
            if not row["selected"]
        ]  # fmt: skip
    else:
        prompt_sets = prompt_subsets(
            records,
            emb,
            config.strategy,
            max_length=config.max_length,
            min_score_ratio=config.min_score_ratio,
            seed=config.seed,
        )
        rows, scores, groups, subsets = _real_prompts(records, config, texts, prompt_sets)
        picked = {row["index"] for row in scores}
        dropped = [
            {"index": i, "source": r.source, "score": None, "record": row_of(r)}
            for i, r in enumerate(records)
            if i not in picked
        ]
    summary = {
        "method": "real",
        "data": list(config.data),
        "model": config.model,
        "mode": mode,
        "strategy": config.strategy,
        "records": len(records),
        "responses": len(texts),
        "distinct_responses": int(emb.matrix.shape[0]),
        "selected": len(rows),
        "subsets": subsets,
        "seconds": None,
        "files": {"subset": SUBSET, "scores": SCORES, "dropped": DROPPED, "histogram": REAL_PLOT},
    }
    title = f"REAL: cosine similarity of the two responses ({mode} data)"
    return Selection(
        subset=rows,
        scores=scores,
        dropped=dropped,
        summary=summary,
        markdown=_real_markdown,
        files={
            REAL_PLOT: lambda path: overlay_histogram_png(
                path, groups, title=title, xlabel="cosine similarity"
            )
        },
        message=cli_message(
            config.output, f"selected {len(rows)} pairs ({config.strategy}, {mode} data)"
        ),
    )


def _real_pairs(
    records: list[Any],
    config: RealSelectConfig,
    sim_t: Tensor,
    eligible: Tensor,
    subsets: dict[str, Tensor],
    emb: Any,
) -> tuple[list, list, dict, dict]:
    sim = sim_t.numpy()
    keep = subsets[config.strategy].numpy()
    rows = [row_of(records[i]) for i in keep]
    picked = np.zeros(len(sim), dtype=bool)
    picked[keep] = True
    lengths = emb.lengths.numpy()
    scores = [
        {
            "index": i,
            "source": r.source,
            "similarity": float(sim[i]),
            "chosen_tokens": int(lengths[2 * i]),
            "rejected_tokens": int(lengths[2 * i + 1]),
            "eligible": bool(eligible[i]),
            "selected": bool(picked[i]),
        }
        for i, r in enumerate(records)
    ]
    groups = {"all pairs": sim[eligible.numpy()]}
    groups.update({name: sim[idx.numpy()] for name, idx in subsets.items()})
    described = {
        "all": {"pairs": len(sim), "eligible": int(eligible.sum()), "similarity": stats(sim)},
        **{
            name: {"pairs": len(idx), "similarity": stats(sim[idx.numpy()])}
            for name, idx in subsets.items()
        },
    }
    return rows, scores, groups, described


def _real_prompts(
    records: list[Any], config: RealSelectConfig, texts: list[str], subsets: dict[str, Any]
) -> tuple[list, list, dict, dict]:
    picked = subsets[config.strategy]
    offsets = np.cumsum([0] + [len(r.responses) for r in records])
    rows, scores = [], []
    for p, c, r, s in zip(
        picked.prompt.tolist(),
        picked.chosen.tolist(),
        picked.rejected.tolist(),
        picked.similarity.tolist(),
        strict=True,
    ):
        record = records[p]
        rows.append(row_of(Pair(record.prompt, texts[c], texts[r])))
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
    groups = {"all valid pairs": next(iter(subsets.values())).candidates.numpy()}
    groups.update({name: pp.similarity.numpy() for name, pp in subsets.items()})
    described = {
        name: {**pp.counts, "similarity": stats(pp.similarity)} for name, pp in subsets.items()
    }
    return rows, scores, groups, described


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
