"""REAL: choose preference pairs by the similarity of their responses' embeddings.

Embedding of a response (`alignkit.select.embeddings`): the base model run on the response
text alone, last hidden layer, mean over the response tokens, L2-normalised, cached on disk
per text under a fingerprint of the model (an interrupted run continues where it stopped).

Pair data: cosine similarity of chosen vs rejected; easy = the least similar fraction, hard =
the most similar, random = a seeded sample of the same size. Multi-response data: one pair
per prompt (easy / hard / random / centroid = the responses nearest the two 2-means centres),
oriented by score (higher = chosen), ties dropped. Per-prompt selection is vectorised over
prompts with the same number of responses and needs only each prompt's k x k Gram matrix
(2-means runs in that space), so it is linear in the number of prompts.

`pair_subsets` and `prompt_subsets` apply them to embedded data; `alignkit select real`
writes the subset and the report (`alignkit.select.outputs.real_selection`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignkit.data.formats import kind_of
from alignkit.errors import AlignkitError
from alignkit.select.common import STRATEGIES, fraction_count
from alignkit.select.embeddings import Embeddings

# ------------------------------------------------------------------------ pair subsets


def select_pair_subset(
    sim: Tensor, strategy: str, fraction: float, seed: int = 0, count: int | None = None
) -> Tensor:
    """(m,) sorted indices of the pairs to keep. sim: (n,) cosine(chosen, rejected).

    m = `count` when given, else `fraction` of n; easy = the m least similar, hard = the m
    most similar (ties: lower index first), random = a seeded uniform sample of m.
    """
    n = len(sim)
    if n == 0:
        raise AlignkitError("no pairs to select from")
    if count is not None and count > n:
        raise AlignkitError(f"--count {count} is more than the {n} pairs to select from")
    m = count if count is not None else fraction_count(n, fraction, "--fraction")
    if strategy == "easy":
        order = torch.sort(sim, stable=True).indices
    elif strategy == "hard":
        order = torch.sort(sim, descending=True, stable=True).indices
    elif strategy == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    elif strategy == "centroid":
        raise AlignkitError(
            "--strategy centroid needs multi-response data (prompt, responses, scores): "
            "with pairs there is only one pair per prompt to choose"
        )
    else:
        raise AlignkitError(f"unknown --strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    return order[:m].sort().values


# ------------------------------------------------------------------- per-prompt pairs


@dataclass
class PromptPairs:
    """One oriented pair per selected prompt (flat response indices).

    prompt, chosen, rejected, similarity: (M,); candidates: similarities of every valid
    pair of every prompt (for the report); counts: prompts / too_few_responses /
    no_valid_pair / centroid_pair_filtered / selected.
    """

    prompt: Tensor
    chosen: Tensor
    rejected: Tensor
    similarity: Tensor
    candidates: Tensor
    counts: dict[str, int] = field(default_factory=dict)


def select_per_prompt(
    emb: Tensor,
    offsets: Tensor,
    scores: Tensor,
    strategy: str,
    *,
    rows: Tensor | None = None,
    lengths: Tensor | None = None,
    max_length: int = 0,
    min_score_ratio: float = 0.0,
    seed: int = 0,
    chunk: int = 16384,
) -> PromptPairs:
    """Pick one pair per prompt from multi-response data.

    emb: (U, d) unit embeddings; rows: (R,) embedding row of each flat response (default
    identity); offsets: (P+1,) prompt p owns responses offsets[p]:offsets[p+1]; scores,
    lengths: (R,). A pair is valid when both responses have <= max_length tokens (0 = no
    limit), their scores differ and (if min_score_ratio) high >= ratio * low.
    """
    if strategy not in STRATEGIES:
        raise AlignkitError(f"unknown --strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    sizes = offsets[1:] - offsets[:-1]
    gen = torch.Generator().manual_seed(seed)
    parts: list[dict[str, Tensor]] = []
    counts = dict.fromkeys(("too_few_responses", "no_valid_pair", "centroid_pair_filtered"), 0)
    for k in sorted(set(sizes.tolist())):
        prompts = (sizes == k).nonzero().squeeze(1)
        for start in range(0, len(prompts), chunk):
            p = prompts[start : start + chunk]
            idx = offsets[p, None] + torch.arange(k)  # (c, k) flat response indices
            eligible = torch.ones_like(idx, dtype=torch.bool)
            if max_length and lengths is not None:
                eligible = lengths[idx] <= max_length
            part = _select_chunk(
                _chunk_embeddings(emb, idx if rows is None else rows[idx]),
                scores[idx].double(),
                eligible,
                strategy,
                min_score_ratio,
                gen,
            )
            for name in counts:
                counts[name] += int(part.pop(name))
            part.update(prompt=p, idx=idx)
            parts.append(part)
    return _merge(parts, counts, len(sizes))


def _chunk_embeddings(emb: Tensor, rows: Tensor) -> Tensor:
    """(c, k, d) float32 embeddings of the matrix rows `rows` (c, k): a view (no copy of a
    float32 matrix) when the rows are consecutive, as in data stored prompt by prompt."""
    c, k = rows.shape
    first = int(rows[0, 0])
    if bool((rows.flatten() == torch.arange(first, first + c * k)).all()):
        return emb[first : first + c * k].view(c, k, -1).float()
    return emb[rows].float()


def _select_chunk(
    e: Tensor, s: Tensor, eligible: Tensor, strategy: str, min_ratio: float, gen: torch.Generator
) -> dict[str, Tensor]:
    """e: (c, k, d), s: (c, k), eligible: (c, k) -> the chosen pair (i, j) of each prompt."""
    c, k, _ = e.shape
    gram = e @ e.transpose(1, 2)  # (c, k, k) cosine similarities
    valid = _valid_pairs(s, eligible, min_ratio)  # (c, k, k), i < j
    enough = eligible.sum(1) >= 2
    if strategy == "centroid":
        i, j = _centroid_pairs(gram, eligible)
        ar = torch.arange(c)
        ok = enough & (valid | valid.transpose(1, 2))[ar, i, j]
        filtered = enough & valid.flatten(1).any(1) & ~ok
    else:
        key = {"easy": gram, "hard": -gram}.get(strategy)
        if key is None:  # random: a uniform key per valid pair
            key = torch.rand(gram.shape, generator=gen)
        flat = key.masked_fill(~valid, math.inf).flatten(1).argmin(1)
        i, j = flat // k, flat % k
        ok = valid.flatten(1).any(1)
        filtered = torch.zeros(c, dtype=torch.bool)
    ar = torch.arange(c)
    si, sj = s[ar, i], s[ar, j]
    chosen, rejected = torch.where(si > sj, i, j), torch.where(si > sj, j, i)
    return {
        "ok": ok,
        "chosen": chosen,
        "rejected": rejected,
        "similarity": gram[ar, i, j],
        "candidates": gram[valid],
        "too_few_responses": (~enough).sum(),
        "no_valid_pair": (enough & ~valid.flatten(1).any(1)).sum(),
        "centroid_pair_filtered": filtered.sum(),
    }


def _valid_pairs(s: Tensor, eligible: Tensor, min_ratio: float) -> Tensor:
    """(c, k, k) bool: i < j, both eligible, different scores, ratio high/low reached."""
    k = s.shape[1]
    si, sj = s[:, :, None], s[:, None, :]
    ok = torch.ones(k, k, dtype=torch.bool).triu(1) & (si != sj)
    ok = ok & eligible[:, :, None] & eligible[:, None, :]
    if min_ratio > 0:
        ok &= torch.maximum(si, sj) >= min_ratio * torch.minimum(si, sj)
    return ok


def _centroid_pairs(gram: Tensor, eligible: Tensor, iters: int = 20) -> tuple[Tensor, Tensor]:
    """(c,), (c,): per prompt, the eligible responses nearest the two 2-means centres.

    The 2-means split is the one with the smallest within-cluster sum of squares (SSE) — what
    sklearn's `KMeans` (the REAL authors' tool) approximates with random restarts. With up to
    `EXACT_UP_TO` responses every split is scored from the Gram matrix (exact, and cheaper than
    Lloyd's); with more, Lloyd's algorithm runs from every eligible pair as the two seeds and the
    best split is kept. A cluster that empties falls back to the least similar pair.
    """
    c, k, _ = gram.shape
    ar = torch.arange(c)
    pair_ok = (
        torch.ones(k, k, dtype=torch.bool).triu(1) & eligible[:, :, None] & eligible[:, None, :]
    )
    far = gram.masked_fill(~pair_ok, math.inf).flatten(1).argmin(1)
    a, b = far // k, far % k
    if k <= EXACT_UP_TO:
        best = _best_split(gram, eligible)
    else:
        best = _lloyd(gram, eligible, gram[ar, :, b] > gram[ar, :, a], iters)
        best_sse = _within_sse(gram, eligible, best)
        for s1, s2 in torch.ones(k, k, dtype=torch.bool).triu(1).nonzero().tolist():
            second = _lloyd(gram, eligible, gram[:, :, s2] > gram[:, :, s1], iters)
            sse = _within_sse(gram, eligible, second)
            better = pair_ok[:, s1, s2] & (sse < best_sse - 1e-6 * best_sse.abs().clamp(min=1))
            best = torch.where(better[:, None], second, best)
            best_sse = torch.where(better, sse, best_sse)
    dist = _centre_distances(gram, best, eligible)
    first_m, second_m = eligible & ~best, eligible & best
    i = dist[..., 0].masked_fill(~first_m, math.inf).argmin(1)
    j = dist[..., 1].masked_fill(~second_m, math.inf).argmin(1)
    empty = (first_m.sum(1) == 0) | (second_m.sum(1) == 0)
    return torch.where(empty, a, i), torch.where(empty, b, j)


EXACT_UP_TO = 10  # responses per prompt scored by enumerating all 2^(k-1) - 1 splits


def _best_split(gram: Tensor, eligible: Tensor) -> Tensor:
    """(c, k) bool: the second cluster of the SSE-minimal split of each prompt's eligible
    responses, by enumeration. SSE(S) = sum_{i in S} G_ii - (1/|S|) sum_{i,j in S} G_ij."""
    c, k, _ = gram.shape
    codes = torch.arange(1, 2 ** (k - 1))  # the last response is always in the first cluster
    masks = (codes[:, None] >> torch.arange(k)) & 1  # (s, k)
    second = masks.bool()[None] & eligible[:, None, :]  # (c, s, k)
    first = ~masks.bool()[None] & eligible[:, None, :]
    diag = gram.diagonal(dim1=1, dim2=2)  # (c, k)

    def sse(member: Tensor) -> Tensor:
        m = member.to(gram.dtype)
        size = m.sum(-1)
        quad = torch.einsum("csk,ckj,csj->cs", m, gram, m)
        value = (m * diag[:, None, :]).sum(-1) - quad / size.clamp(min=1)
        return value.masked_fill(size == 0, math.inf)

    total = sse(first) + sse(second)  # (c, s)
    pick = total.argmin(1)
    return second[torch.arange(c), pick]


def _lloyd(gram: Tensor, eligible: Tensor, second: Tensor, iters: int) -> Tensor:
    """(c, k) bool: the second cluster after Lloyd's iterations from the split `second`."""
    for _ in range(iters):
        dist = _centre_distances(gram, second, eligible)
        moved = dist[..., 1] < dist[..., 0]
        if torch.equal(moved, second):
            break
        second = moved
    return second


def _within_sse(gram: Tensor, eligible: Tensor, second: Tensor) -> Tensor:
    """(c,) sum over eligible responses of the squared distance to their own centre; a split
    with an empty cluster counts as infinitely bad."""
    dist = _centre_distances(gram, second, eligible)
    own = torch.where(second, dist[..., 1], dist[..., 0])
    sse = (own * eligible).sum(1)
    empty = ((eligible & ~second).sum(1) == 0) | ((eligible & second).sum(1) == 0)
    return sse.masked_fill(empty, math.inf)


def _centre_distances(gram: Tensor, second: Tensor, eligible: Tensor) -> Tensor:
    """(c, k, 2) squared distance of every response to the centre of each cluster."""
    member = torch.stack([eligible & ~second, eligible & second], dim=1).to(gram.dtype)
    coef = member / member.sum(-1, keepdim=True).clamp(min=1)  # (c, 2, k)
    g_a = gram @ coef.transpose(1, 2)  # (c, k, 2)
    quad = (coef * g_a.transpose(1, 2)).sum(-1)  # (c, 2)
    return gram.diagonal(dim1=1, dim2=2)[..., None] - 2 * g_a + quad[:, None, :]


def _merge(parts: list[dict[str, Tensor]], counts: dict[str, int], n_prompts: int) -> PromptPairs:
    """Concatenate chunk results, keep the prompts with a pair, in prompt order."""
    if not parts:
        empty = torch.zeros(0, dtype=torch.long)
        return PromptPairs(
            empty,
            empty,
            empty,
            torch.zeros(0),
            torch.zeros(0),
            {"prompts": n_prompts, **counts, "selected": 0},
        )
    cat = {
        name: torch.cat([p[name] for p in parts])
        for name in ("ok", "chosen", "rejected", "similarity", "prompt", "candidates")
    }
    base = torch.cat([p["idx"][:, 0] for p in parts])  # flat index of each prompt's first response
    ok = cat["ok"]
    order = torch.sort(cat["prompt"][ok]).indices
    pick = {name: cat[name][ok][order] for name in ("chosen", "rejected", "similarity", "prompt")}
    start = base[ok][order]
    return PromptPairs(
        prompt=pick["prompt"],
        chosen=start + pick["chosen"],
        rejected=start + pick["rejected"],
        similarity=pick["similarity"],
        candidates=cat["candidates"],
        counts={"prompts": n_prompts, **counts, "selected": int(ok.sum())},
    )


# ------------------------------------------------------------------- on a dataset


def real_mode(records: Sequence[Any]) -> str:
    """ "pair" or "multi"; an error for empty, one-response or mixed data."""
    if not records:
        raise AlignkitError("REAL: the data has no records")
    kinds = {kind_of(r) for r in records}
    if "point" in kinds:
        bad = next(r for r in records if kind_of(r) == "point")
        raise AlignkitError(
            f"REAL needs two or more responses per prompt (pairs or prompt/responses/scores), "
            f"but {bad.source or 'a record'} has one response only"
        )
    if len(kinds) > 1:
        raise AlignkitError(
            "the data mixes pairs and multi-response records; select them separately"
        )
    return kinds.pop()


def pair_subsets(
    emb: Embeddings,
    strategy: str,
    *,
    fraction: float | None,
    count: int | None,
    max_length: int = 0,
    seed: int = 0,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Pair data embedded as chosen, rejected, chosen, ... -> (sim (n,), eligible (n,), the
    pair indices of every pair strategy: easy, hard, random). Eligible: both responses have
    <= max_length tokens (0 = no limit); `fraction` (default 0.5) or `count` of them kept."""
    n = len(emb.rows) // 2
    chosen, rejected = torch.arange(0, 2 * n, 2), torch.arange(1, 2 * n, 2)
    sim = (emb.of(chosen) * emb.of(rejected)).sum(-1)
    eligible = torch.ones(n, dtype=torch.bool)
    if max_length:
        eligible = (emb.lengths[chosen] <= max_length) & (emb.lengths[rejected] <= max_length)
    pool = eligible.nonzero().squeeze(1)
    if len(pool) == 0:
        raise AlignkitError(f"no pair has both responses within --max-length {max_length}")
    fraction = 0.5 if fraction is None else fraction
    subsets = {
        name: pool[select_pair_subset(sim[pool], name, fraction, seed, count)]
        for name in ("easy", "hard", "random")
    }
    if strategy not in subsets:
        select_pair_subset(sim, strategy, fraction)  # raises the explanation
    return sim, eligible, subsets


def prompt_subsets(
    records: Sequence[Any],
    emb: Embeddings,
    strategy: str,
    *,
    max_length: int = 0,
    min_score_ratio: float = 0.0,
    seed: int = 0,
) -> dict[str, PromptPairs]:
    """Multi-response data embedded record by record -> the pairs of every strategy; an
    error when `strategy` leaves no pair."""
    sizes = torch.tensor([len(r.responses) for r in records])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    scores = torch.tensor([s for r in records for s in r.scores], dtype=torch.float64)
    subsets = {
        name: select_per_prompt(
            emb.matrix,
            offsets,
            scores,
            name,
            rows=emb.rows,
            lengths=emb.lengths,
            max_length=max_length,
            min_score_ratio=min_score_ratio,
            seed=seed,
        )
        for name in STRATEGIES
    }
    picked = subsets[strategy]
    if not len(picked.prompt):
        c = picked.counts
        raise AlignkitError(
            f"no pair is left from {c['prompts']} prompts: {c['too_few_responses']} have fewer "
            f"than 2 responses within --max-length, {c['no_valid_pair']} have only tied scores "
            f"(or pairs below --min-score-ratio), {c['centroid_pair_filtered']} centroid pairs "
            "were tied or below the ratio"
        )
    return subsets
