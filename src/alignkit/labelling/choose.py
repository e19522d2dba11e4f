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
- apl (APL, Muldrew et al.; `alignkit.select.acquisition`): with the policy trained so far
  (`--model runs/round-1`) and its reference (`--ref`, default its base), the pair of a
  prompt is the one DPO's implicit preference is most certain about,
  max |sigma(beta (r_i - r_j)) - 0.5|; prompts are ranked by `--apl-mode`: hybrid keeps the
  `--entropy-keep` x budget prompts of highest predictive entropy -(1/K) sum_k log pi(y_k|x)
  (over the prompt's candidate responses) and ranks them by that certainty (the others
  follow); certainty / entropy rank by one score. So a real project runs round by round:
  label, train, `label select --strategy apl --model runs/round-N`, label, ...

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

STRATEGIES = ("easy", "hard", "centroid", "random", "uncertainty", "apl")
REAL_STRATEGIES = ("easy", "hard", "centroid", "random")
Strategy = Literal["easy", "hard", "centroid", "random", "uncertainty", "apl"]
AplMode = Literal["hybrid", "certainty", "entropy"]


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
        "embedded SmolLM2-135M); apl: the policy trained on the labels so far (a train run)",
    )
    ref: str = opt(
        "",
        "apl: the reference policy (default: the --model run's base; 'none': no reference)",
    )
    beta: float = opt(0.1, "apl: beta of DPO's implicit preference sigma(beta (r_a - r_b))")
    apl_mode: AplMode = opt("hybrid", "apl: rank prompts by entropy then certainty, or by one")
    entropy_keep: float = opt(
        2.0, "apl hybrid: the entropy filter keeps this many times --budget prompts"
    )
    max_length: int = opt(512, "apl: prompt + response tokens scored (longer: truncated)")
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
        if self.strategy == "apl" and not self.model:
            raise AlignkitError(
                "--strategy apl needs --model: the policy trained on the labels so far "
                "(e.g. runs/round-1)"
            )
        if self.strategy != "apl" and self.ref:
            raise AlignkitError("--ref is for --strategy apl")
        if self.entropy_keep < 1:
            raise AlignkitError(f"--entropy-keep must be >= 1, got {self.entropy_keep}")


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


def rank_apl(
    policy: Sequence[Sequence[float]],
    reference: Sequence[Sequence[float]] | None,
    budget: int,
    beta: float = 0.1,
    mode: str = "hybrid",
    entropy_keep: float = 2.0,
    seed: int = 0,
) -> list[Ranked]:
    """APL per prompt: policy, reference: summed log-probs of each candidate response, prompt
    by prompt (reference None: implicit reward = log pi). The pair (i < j) of a prompt is the
    most certain one (ties: the first in (i, j) order); the prompts in `apl_pick` order for
    `budget` (score: the certainty), then the rest by the same rule."""
    import numpy as np

    from alignkit.select.acquisition import apl_pick, predictive_entropy, preference_certainty

    entropy, certainty, ranked = [], [], []
    for p, values in enumerate(policy):
        pol = np.asarray(values, np.float64)
        rewards = pol - (np.asarray(reference[p], np.float64) if reference is not None else 0.0)
        best, i, j = max(
            (float(preference_certainty(rewards[i : i + 1], rewards[j : j + 1], beta)[0]), -i, -j)
            for i in range(len(pol))
            for j in range(i + 1, len(pol))
        )
        entropy.append(float(predictive_entropy(pol[None, :])[0]))
        certainty.append(best)
        ranked.append(Ranked(p, -i, -j, best))
    order: list[int] = []
    left = np.arange(len(ranked))
    while len(left):
        picks = apl_pick(
            np.asarray(entropy)[left], np.asarray(certainty)[left], budget, mode, entropy_keep, seed
        )
        order.extend(left[picks].tolist())
        left = np.setdiff1d(left, left[picks])
    return [ranked[p] for p in order]


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


def _apl_logps(
    cands: Candidates, config: ChooseConfig
) -> tuple[list[list[float]], list[list[float]] | None]:
    """Summed log-probs of every candidate response under the policy `--model` and its
    reference, prompt by prompt."""
    from alignkit.data.records import Point
    from alignkit.models import load_scoring_model
    from alignkit.select.common import ScoreRequest
    from alignkit.select.scorers import encode_all, policy_and_reference

    points = [
        Point(prompt, text, 1.0)
        for prompt, group in zip(cands.prompts, cands.responses, strict=True)
        for text in group
    ]
    request = ScoreRequest(
        records=points,
        model=config.model,
        batch_size=config.batch_size,
        max_length=config.max_length,
        precision=config.precision,
        trust_remote_code=config.trust_remote_code,
    )
    model, tokenizer = load_scoring_model(config.model, trust_remote_code=config.trust_remote_code)
    encoded = encode_all(points, tokenizer, config.max_length, config.model)
    policy, ref = policy_and_reference(model, tokenizer, encoded, request, config.ref)

    def per_prompt(table) -> list[list[float]]:
        out, start = [], 0
        for group in cands.responses:
            out.append(table[start : start + len(group), 0].tolist())
            start += len(group)
        return out

    return per_prompt(policy), per_prompt(ref) if ref is not None else None


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
    elif config.strategy == "apl":
        policy, reference = _apl_logps(cands, config)
        ranked = rank_apl(
            policy,
            reference,
            config.budget or 1,
            config.beta,
            config.apl_mode,
            config.entropy_keep,
            config.seed,
        )
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
