"""Choose which pairs of an unlabelled pool are worth a label (`alignkit label select`).

A pool holds K >= 2 generated responses per prompt and no scores. Each prompt gives at most
one pair; its candidates are its distinct non-blank responses (with `drop_unfinished`, only
those that ended by themselves). The strategy picks the pair of each prompt and ranks the
prompts; the first `budget` prompts of that ranking give the pairs:

- easy (REAL): the least similar pair of a prompt (cosine of response embeddings,
  `alignkit.select.embeddings`); prompts ranked by that similarity, lowest first.
- hard (REAL): the most similar pair; prompts ranked by similarity, highest first.
- centroid (REAL): the responses nearest the two 2-means centres of the prompt's responses;
  prompts in a random order drawn with the seed (the strategy picks within a prompt, not
  between prompts).
- random: a random pair per prompt (seeded); prompts in a seeded random order.
- uncertainty: the pair with the smallest |R(a) - R(b)| under a reward model (the pair the
  reward model is least sure about); prompts ranked by that gap, smallest first.

Ties in a ranking keep pool order. A budget larger than the number of prompts with a pair
gives one pair per such prompt (no second pair of a prompt). Within a pair, `a` is the
response that comes first in the pool: the pair is unordered (nobody prefers either yet).
The REAL pair of each prompt comes from `alignkit.select.real.select_per_prompt`, given
distinct placeholder scores (-index) only because it needs scored responses; they orient a
pair (a = earlier response) and never choose it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from alignkit.data.records import Prompt
from alignkit.distributed import distributed_state
from alignkit.errors import AlignkitError
from alignkit.labelling.pairs import LabelPair, PoolEntry, read_pool, write_pairs
from alignkit.model_options import TRUST_REMOTE_CODE_HELP, Precision
from alignkit.options import opt

STRATEGIES = ("easy", "hard", "centroid", "random", "uncertainty")
REAL_STRATEGIES = ("easy", "hard", "centroid", "random")
Strategy = Literal["easy", "hard", "centroid", "random", "uncertainty"]


@dataclass
class ChooseConfig:
    """Options of `alignkit label select` (field help texts are the CLI's --help)."""

    pool: str = opt("", "pool file (jsonl, `alignkit generate`'s output)", metavar="POOL.jsonl")
    output: str = opt("", "pairs file to write (jsonl)", metavar="PAIRS.jsonl")
    strategy: Strategy = opt("easy", "how the pair of each prompt is chosen and ranked")
    budget: int | None = opt(None, "number of pairs to label (required, >= 1)", metavar="N")
    seed: int = opt(0, "seed of the random and centroid orders and of random pairs")
    model: str = opt(
        "",
        "REAL strategies: base model of the response embeddings (default: 'default', the "
        "embedded SmolLM2-135M)",
    )
    reward_model: str = opt(
        "",
        "uncertainty: reward model spec (train-rm run dir, HF id, or package.module:function)",
    )
    drop_unfinished: bool = opt(
        False, "leave out responses cut at the generation limit (finished: false)"
    )
    batch_size: int = opt(16, "responses per forward pass (embeddings or rewards)")
    precision: Precision = opt(
        "auto", "bf16 autocast, fp32, or auto (embedding model, or a reward model's forward)"
    )
    trust_remote_code: bool = opt(False, TRUST_REMOTE_CODE_HELP + " (--model, --reward-model)")
    cache_dir: str = opt("", "embedding cache (default: $ALIGNKIT_CACHE/embeddings)")

    def validate(self) -> None:
        if not self.pool or not self.output:
            raise AlignkitError("give --pool POOL.jsonl and --output PAIRS.jsonl")
        if self.strategy not in STRATEGIES:
            raise AlignkitError(f"unknown --strategy {self.strategy!r}; choose {STRATEGIES}")
        if self.budget is None:
            raise AlignkitError("give --budget N, the number of pairs to label")
        if self.budget < 1:
            raise AlignkitError(f"--budget must be >= 1, got {self.budget}")
        if self.batch_size < 1:
            raise AlignkitError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.strategy == "uncertainty":
            if not self.reward_model:
                raise AlignkitError("--strategy uncertainty needs --reward-model SPEC")
            if self.model:
                raise AlignkitError(
                    "--model is for the REAL strategies; uncertainty uses only --reward-model"
                )
        elif self.reward_model:
            raise AlignkitError(
                f"--reward-model is for --strategy uncertainty, not {self.strategy}"
            )


# ------------------------------------------------------------------ candidates


@dataclass
class Candidates:
    """The prompts that can give a pair, their candidate responses, and the counts."""

    prompts: list[Prompt] = field(default_factory=list)
    responses: list[list[str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def candidates(entries: Sequence[PoolEntry], drop_unfinished: bool = False) -> Candidates:
    """Each entry's distinct non-blank responses (in pool order); entries left with fewer
    than 2 are counted in `counts["too_few_responses"]` and left out."""
    out = Candidates(counts={"prompts": len(entries), "too_few_responses": 0})
    for entry in entries:
        kept = [
            text
            for text, done in zip(entry.responses, entry.finished, strict=True)
            if text.strip() and (done or not drop_unfinished)
        ]
        kept = list(dict.fromkeys(kept))
        if len(kept) < 2:
            out.counts["too_few_responses"] += 1
            continue
        out.prompts.append(entry.prompt)
        out.responses.append(kept)
    return out


# ------------------------------------------------------------------ ranking


@dataclass(frozen=True)
class Ranked:
    """The pair (i, j), i < j, of candidate prompt `prompt`, with its strategy score."""

    prompt: int
    i: int
    j: int
    score: float


def rank_real(
    emb: Any, sizes: Sequence[int], strategy: str, seed: int = 0, rows: Any = None
) -> list[Ranked]:
    """The REAL pair of every prompt, ranked (see the module docstring).

    emb: (U, d) unit embeddings; rows: (R,) embedding row of each flat response (default:
    identity); sizes: responses per prompt (each >= 2), stored prompt by prompt."""
    import torch

    from alignkit.select.real import select_per_prompt

    sizes_t = torch.tensor(list(sizes), dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes_t.cumsum(0)])
    local = torch.cat([torch.arange(k) for k in sizes]) if len(sizes) else torch.zeros(0)
    # distinct placeholder scores: every pair is valid and a = the earlier response
    picked = select_per_prompt(emb, offsets, -local.double(), strategy, rows=rows, seed=seed)
    ranked = [
        Ranked(p, c - int(offsets[p]), r - int(offsets[p]), float(s))
        for p, c, r, s in zip(
            picked.prompt.tolist(),
            picked.chosen.tolist(),
            picked.rejected.tolist(),
            picked.similarity.tolist(),
            strict=True,
        )
    ]
    if strategy == "easy":
        return sorted(ranked, key=lambda x: (x.score, x.prompt))
    if strategy == "hard":
        return sorted(ranked, key=lambda x: (-x.score, x.prompt))
    random.Random(seed).shuffle(ranked)
    return ranked


def rank_uncertainty(rewards: Sequence[Sequence[float]]) -> list[Ranked]:
    """Per prompt the pair (i < j) with the smallest |R_i - R_j| (ties: the first in
    (i, j) order); prompts ranked by that gap, smallest first (ties: pool order)."""
    ranked = []
    for p, values in enumerate(rewards):
        gap, i, j = min(
            (abs(values[i] - values[j]), i, j)
            for i in range(len(values))
            for j in range(i + 1, len(values))
        )
        ranked.append(Ranked(p, i, j, gap))
    return sorted(ranked, key=lambda x: (x.score, x.prompt))


def take_budget(
    ranked: Sequence[Ranked], cands: Candidates, budget: int, strategy: str
) -> list[LabelPair]:
    """The pairs of the first `budget` ranked prompts (all of them when fewer), in rank
    order; a pair already taken (a repeated prompt with the same answers) is not repeated."""
    pairs: list[LabelPair] = []
    seen: set[str] = set()
    for r in ranked:
        if len(pairs) == budget:
            break
        texts = cands.responses[r.prompt]
        pair = LabelPair.make(cands.prompts[r.prompt], texts[r.i], texts[r.j], r.score, strategy)
        if pair.pair_id not in seen:
            seen.add(pair.pair_id)
            pairs.append(pair)
    return pairs


# ------------------------------------------------------------------ scoring the pool


def _embed(cands: Candidates, config: ChooseConfig) -> tuple[Any, Any]:
    """(matrix, rows) of the embeddings of every candidate response, prompt by prompt."""
    from pathlib import Path

    from alignkit.models import autocast_dtype, cache_dir, load_scoring_model
    from alignkit.select.embeddings import embed_texts

    state = distributed_state()
    model, tokenizer = load_scoring_model(
        config.model or "default", trust_remote_code=config.trust_remote_code
    )
    texts = [t for group in cands.responses for t in group]
    emb = embed_texts(
        model,
        tokenizer,
        texts,
        batch_size=config.batch_size,
        autocast=autocast_dtype(config.precision, state.device),
        cache_dir=Path(config.cache_dir) if config.cache_dir else cache_dir() / "embeddings",
        state=state,
    )
    return emb.matrix, emb.rows


def _rewards(cands: Candidates, config: ChooseConfig) -> list[list[float]]:
    """R(prompt, response) of every candidate response, prompt by prompt."""
    from alignkit.rewards.loading import check_reward_spec, load_reward_model

    check_reward_spec(config.reward_model)
    reward = load_reward_model(
        config.reward_model,
        batch_size=config.batch_size,
        precision=config.precision,
        trust_remote_code=config.trust_remote_code,
    )
    prompts = [p for p, group in zip(cands.prompts, cands.responses, strict=True) for _ in group]
    flat = reward.score(prompts, [t for group in cands.responses for t in group])
    out, start = [], 0
    for group in cands.responses:
        out.append(flat[start : start + len(group)])
        start += len(group)
    return out


@dataclass
class ChooseResult:
    """The chosen pairs (rank order) and the counts for the summary."""

    pairs: list[LabelPair]
    counts: dict[str, int]


def choose_pairs(config: ChooseConfig) -> ChooseResult:
    """Read the pool, pick and rank one pair per prompt, keep the first `budget`."""
    config.validate()
    cands = candidates(read_pool(config.pool), config.drop_unfinished)
    if not cands.prompts:
        raise AlignkitError(
            f"no prompt of {config.pool} has 2 distinct non-blank responses"
            + (" that finished (--drop-unfinished)" if config.drop_unfinished else "")
        )
    if config.strategy == "uncertainty":
        ranked = rank_uncertainty(_rewards(cands, config))
    else:
        matrix, rows = _embed(cands, config)
        sizes = [len(group) for group in cands.responses]
        ranked = rank_real(matrix, sizes, config.strategy, config.seed, rows)
    pairs = take_budget(ranked, cands, config.budget, config.strategy)
    counts = {**cands.counts, "with_pair": len(ranked), "selected": len(pairs)}
    return ChooseResult(pairs, counts)


def run_choose(config: ChooseConfig) -> int:
    """`alignkit label select`: write the pairs file and print a summary."""
    result = choose_pairs(config)
    write_pairs(config.output, result.pairs)
    c = result.counts
    print(
        f"label select {config.strategy}: {c['selected']} pairs from {c['prompts']} prompts "
        f"({c['with_pair']} with a pair, {c['too_few_responses']} with fewer than 2 distinct "
        f"responses)"
    )
    if config.budget > c["selected"]:
        print(
            f"  note: --budget {config.budget} is more than the {c['selected']} prompts with "
            "a pair: one pair per prompt was taken"
        )
    print(f"  written: {config.output}")
    return 0
