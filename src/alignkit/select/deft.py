"""DEFT: token-distribution reward R_Q for filtering data and guiding any objective.

Q_pos / Q_neg are the token-frequency distributions of preferred / dispreferred responses
(policy tokenizer, response tokens only, special tokens excluded); Q_diff = Q_pos - Q_neg.
R_Q(x, y) = mean_t <Q_diff, log p(. | x, y_<t)> = mean_t <Q_diff, logits_t> (sum(Q_diff) = 0),
computed as h_t . (W^T Q_diff) without any vocabulary-sized softmax (`alignkit.scoring.forward`).
The bounded form mean_t <Q_diff, p(. | x, y_<t)> needs the softmax; it is computed here, in
chunks of response positions.

Filtering (`run_deft`, `alignkit select deft`): score every pair with the starting model and
keep the lowest-R_Q fraction; the same `q_diff_from_encoded` feeds the trainer's
`--deft-lambda` guidance term.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.models import backbone_and_head
from alignkit.objectives.base import SeqLogps
from alignkit.options import opt
from alignkit.scoring.forward import PackedBatch, distribution_reward, packed_hidden_states
from alignkit.select.common import check_vocab, distributed_state

log = logging.getLogger(__name__)

Form = Literal["logprob", "prob"]
ScoreOn = Literal["chosen", "margin"]
_COUNT_CHUNK = 1 << 15  # sequences flattened per bincount (bounds the temporary arrays)
_FORMATS = ["auto", "hh", "trl-pair", "point", "demonstration", "multi"]


# ------------------------------------------------------------------ Q_pos, Q_neg, Q_diff


def token_counts(sequences: Iterable[Sequence[int]], vocab: int) -> np.ndarray:
    """(V,) int64 number of occurrences of every token id in `sequences`.

    Counted in chunks with one C-level flatten + bincount each (no per-token Python work).
    An id outside [0, vocab) means the tokenizer does not match the vocabulary: an error.
    """
    counts = np.zeros(vocab, dtype=np.int64)
    it = iter(sequences)
    while chunk := list(itertools.islice(it, _COUNT_CHUNK)):
        flat = np.fromiter(itertools.chain.from_iterable(chunk), dtype=np.int64)
        if flat.size == 0:
            continue
        if flat.min() < 0 or flat.max() >= vocab:
            raise AlignkitError(
                f"token id {int(flat.max())} is outside the vocabulary of {vocab} tokens: "
                "the tokenizer and the model/vocabulary size do not belong together"
            )
        counts += np.bincount(flat, minlength=vocab)
    return counts


def _normalised(counts: np.ndarray, exclude: Iterable[int]) -> tuple[Tensor, int]:
    """(V,) float64 distribution with `exclude` ids zeroed, and the number of tokens kept."""
    counts = torch.from_numpy(counts).to(torch.float64)
    ex = torch.tensor(sorted(set(exclude)), dtype=torch.long)
    if len(ex):
        counts[ex[(ex >= 0) & (ex < len(counts))]] = 0
    total = int(counts.sum())
    if total == 0:
        raise AlignkitError("no response tokens to build a token distribution from")
    return counts / total, total


def token_distribution(
    sequences: Iterable[Sequence[int]], vocab: int, exclude: Iterable[int]
) -> Tensor:
    """(V,) normalised token frequencies over `sequences`, `exclude` ids removed."""
    return _normalised(token_counts(sequences, vocab), exclude)[0]


@dataclass
class TokenDistributions:
    """Q_pos, Q_neg: (V,) float64 distributions; *_tokens: tokens counted in each."""

    q_pos: Tensor
    q_neg: Tensor
    pos_tokens: int
    neg_tokens: int

    @property
    def q_diff(self) -> Tensor:
        """(V,) float32 Q_pos - Q_neg (sums to 0; > 0 = typical of preferred responses)."""
        return (self.q_pos - self.q_neg).float()


def token_distributions(
    encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]
) -> TokenDistributions:
    """Q_pos over high-quality responses (pair: chosen), Q_neg over the others."""
    special = list(special_ids)
    pos = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if hq]
    neg = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if not hq]
    if not pos or not neg:
        raise AlignkitError(
            "DEFT needs both preferred and dispreferred responses to build Q_diff "
            f"(found {len(pos)} preferred, {len(neg)} dispreferred)"
        )
    q_pos, n_pos = _normalised(token_counts(pos, vocab), special)
    q_neg, n_neg = _normalised(token_counts(neg, vocab), special)
    return TokenDistributions(q_pos, q_neg, n_pos, n_neg)


def q_diff_from_encoded(
    encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]
) -> Tensor:
    """(V,) Q_pos - Q_neg: positives are high-quality responses, negatives the others.

    Pair data: chosen vs rejected; point data: label-1 vs label-0 completions.
    """
    return token_distributions(encoded, vocab, special_ids).q_diff


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


# ------------------------------------------------------------------------- R_Q scoring


def fit_q_diff(q_diff: Tensor, rows: int) -> Tensor:
    """(rows,) Q_diff zero-padded to the LM head's size (models often pad their vocabulary)."""
    if len(q_diff) > rows:
        raise AlignkitError(
            f"Q_diff has {len(q_diff)} entries but the model's vocabulary only {rows}: "
            "it was built with another tokenizer"
        )
    return torch.nn.functional.pad(q_diff, (0, rows - len(q_diff)))


def response_hidden(model: nn.Module, batch: PackedBatch, autocast: torch.dtype | None) -> Tensor:
    """(N, d) final hidden states at the N positions that predict response tokens: the
    packed, block-masked forward of `SequenceScorer` without the LM head."""
    decoder, _ = backbone_and_head(model)
    hidden = packed_hidden_states(decoder, batch, autocast)
    return hidden.reshape(-1, hidden.shape[-1])[batch.pred_index]


def probability_reward(
    hidden: Tensor,
    head: nn.Module,
    q_diff: Tensor,
    batch: PackedBatch,
    autocast: torch.dtype | None = None,
    chunk: int = 256,
) -> Tensor:
    """(B, K) bounded R_Q = mean_t <Q_diff, softmax(logits_t)>, in [min Q_diff, max Q_diff].

    hidden: (N, d) response positions; the (chunk, V) logits are never larger than `chunk`
    rows at a time.
    """
    device = hidden.device
    parts = []
    for part in hidden.split(chunk):
        with torch.autocast(
            device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            logits = head(part)
        parts.append(torch.softmax(logits.float(), dim=-1) @ q_diff.float())
    per_token = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)
    b, k = batch.shape
    sums = torch.zeros(b * k, dtype=per_token.dtype, device=device)
    sums = sums.index_add(0, batch.seq_id, per_token).view(b, k)
    return sums / batch.counts.clamp(min=1)


class DistributionRewardScorer(nn.Module):
    """Scores R_Q only (no log-probs): `forward(batch)` -> SeqLogps with sum = r_q = (B, K).

    Log-prob form: decoder + one d-vector W^T Q_diff (no LM head at all), so scoring costs
    about one backbone forward. Probability form: LM head + softmax at response positions.
    Plugs into `alignkit.scoring.dataset.score_dataset` (sharding, ordering, progress bar).
    """

    def __init__(self, model: nn.Module, q_diff: Tensor, form: Form = "logprob") -> None:
        super().__init__()
        if form not in ("logprob", "prob"):
            raise AlignkitError(f"unknown R_Q form {form!r}; choose logprob or prob")
        self.model = model
        self.form = form
        _, head = backbone_and_head(model)
        q_diff = fit_q_diff(q_diff.float(), int(head.weight.shape[0]))
        self.register_buffer("q_diff", q_diff, persistent=False)

    def forward(self, batch: PackedBatch, autocast: torch.dtype | None = None) -> SeqLogps:
        _, head = backbone_and_head(self.model)
        hidden = response_hidden(self.model, batch, autocast)
        q = self.q_diff.to(hidden.device)
        if self.form == "logprob":
            r_q = distribution_reward(hidden.float(), head, q, batch)
        else:
            r_q = probability_reward(hidden, head, q, batch, autocast)
        return SeqLogps(sum=r_q, count=batch.counts, r_q=r_q)


def score_r_q(
    model: nn.Module,
    encoded: Sequence[Encoded],
    q_diff: Tensor,
    *,
    pad_id: int,
    form: Form = "logprob",
    score_on: ScoreOn = "chosen",
    batch_size: int = 8,
    autocast: torch.dtype | None = None,
    state: Any = None,
) -> Tensor:
    """(n, K) R_Q of every example's responses (K = 1 for "chosen", 2 for "margin").

    Length-sorted batches; under a launcher each process scores a shard and every process
    gets the whole table back in the order of `encoded`.
    """
    from accelerate.utils import gather_object

    from alignkit.scoring.dataset import score_dataset

    if not encoded:
        raise AlignkitError("no examples to score")
    state = state or distributed_state()
    if score_on == "chosen":
        encoded = [_chosen_only(e) for e in encoded]
    elif score_on != "margin":
        raise AlignkitError(f"unknown --score {score_on!r}; choose chosen or margin")
    scorer = DistributionRewardScorer(model, q_diff, form)
    scorer.train(model.training)  # score_dataset restores this mode afterwards
    return score_dataset(
        scorer,
        encoded,
        batch_size=batch_size,
        pad_id=pad_id,
        device=next(model.parameters()).device,
        autocast=autocast,
        rank=state.process_index,
        world=state.num_processes,
        gather=gather_object,
        desc="R_Q",
    )


def _chosen_only(e: Encoded) -> Encoded:
    return Encoded(e.prompt, e.responses[:1], e.labels[:1], e.high_quality[:1], e.binary, e.index)


def selection_scores(table: Tensor, score_on: ScoreOn) -> Tensor:
    """(n,) the score DEFT filters on: R_Q(chosen), or R_Q(chosen) - R_Q(rejected)."""
    return table[:, 0] - table[:, 1] if score_on == "margin" else table[:, 0]


def keep_count_for(n: int, keep_fraction: float | None, keep_count: int | None) -> int:
    """How many of `n` examples to keep (`keep_count` wins; fraction rounds, at least 1)."""
    if keep_count:
        if keep_count > n:
            raise AlignkitError(f"--keep-count {keep_count} is more than the {n} examples scored")
        return keep_count
    fraction = 0.05 if keep_fraction is None else keep_fraction
    if not 0 < fraction <= 1:
        raise AlignkitError(f"--keep-fraction must be in (0, 1], got {fraction}")
    return max(1, math.floor(fraction * n + 0.5))


def keep_lowest(scores: Tensor, count: int) -> Tensor:
    """(count,) indices of the `count` lowest scores, in ascending index order.

    Ties at the cut go to the lower index, so the result is deterministic.
    """
    if not torch.isfinite(scores).all():
        raise AlignkitError("some R_Q scores are not finite; try --precision fp32")
    order = torch.sort(scores, stable=True).indices
    return order[:count].sort().values


# ------------------------------------------------------------------------- the command


@dataclass
class DeftConfig:
    """Options of `alignkit select deft` (field help texts are the CLI's --help)."""

    data: list[str] = opt([], "pair data files to select from", metavar="PATH")
    output: str = opt(
        "", "output directory: subset.jsonl, scores.jsonl, report.json/.md, r_q_hist.png"
    )
    model: str = opt(
        "default", "starting model: HF id, local path, or 'default' (embedded SmolLM2-135M)"
    )
    data_format: str = opt("auto", "format of the data files", choices=_FORMATS)
    keep_fraction: float | None = opt(
        None, "fraction of examples to keep, lowest R_Q first (default: 0.05)"
    )
    keep_count: int = opt(0, "keep exactly this many examples instead (0 = use the fraction)")
    score: str = opt(
        "chosen",
        "what is filtered on: R_Q of the chosen response, or chosen minus rejected",
        choices=["chosen", "margin"],
    )
    form: str = opt(
        "logprob",
        "R_Q form: logprob = mean_t <Q_diff, log p_t> (no softmax), prob = mean_t "
        "<Q_diff, p_t> (bounded)",
        choices=["logprob", "prob"],
    )
    batch_size: int = opt(8, "examples per forward pass")
    max_length: int = opt(1024, "max tokens of prompt + one response")
    truncation: str = opt(
        "truncate", "over-long examples: truncate or drop", choices=["truncate", "drop"]
    )
    precision: str = opt("auto", "bf16 autocast, fp32, or auto", choices=["auto", "bf16", "fp32"])
    top_tokens: int = opt(20, "tokens listed in the report per Q_diff sign")
    trust_remote_code: bool = opt(False, "allow model code from the model repository")

    def validate(self) -> None:
        if not self.data:
            raise AlignkitError("no data: give --data PATH")
        if not self.output:
            raise AlignkitError("no output directory: give --output DIR")
        if self.keep_count and self.keep_fraction is not None:
            raise AlignkitError("give --keep-fraction or --keep-count, not both")
        if self.keep_count < 0:
            raise AlignkitError(f"--keep-count must be >= 0, got {self.keep_count}")
        keep_count_for(1, self.keep_fraction, None)  # range check of the fraction
        if self.batch_size <= 0 or self.top_tokens < 0:
            raise AlignkitError("--batch-size must be > 0 and --top-tokens >= 0")


@dataclass
class DeftSelection:
    """Everything the DEFT report is made of (scores are in the order of `encoded`).

    table: (n, K) R_Q per response; scores: (n,) filtered on; keep: (m,) rows of `encoded`.
    """

    records: list[Any]
    encoded: list[Encoded]
    table: Tensor
    scores: Tensor
    keep: Tensor
    dists: TokenDistributions
    tokens: dict[str, list[dict]]
    encoding: str
    seconds: float = 0.0


@dataclass
class DeftResult:
    """Where the outputs are, and the headline numbers (also in report.json)."""

    output: Path
    subset: Path
    scored: int
    kept: int
    cut: float
    summary: dict[str, Any] = field(default_factory=dict)


def require_pairs(records: Sequence[Any], what: str) -> None:
    """An error unless `records` is a non-empty list of preference pairs."""
    from alignkit.data import kind_of

    if not records:
        raise AlignkitError(f"{what}: the data has no records")
    bad = [r for r in records if kind_of(r) != "pair"]
    if bad:
        raise AlignkitError(
            f"{what} selection needs preference pairs (prompt, chosen, rejected), but "
            f"{len(bad)} of {len(records)} records are not, e.g. {bad[0].source or '?'} is a "
            f"{kind_of(bad[0])}"
        )


def select_deft(config: DeftConfig, state: Any = None) -> DeftSelection:
    """Load, tokenize, build Q_diff, score R_Q with the starting model, pick the lowest."""
    from alignkit.data import load_records
    from alignkit.data.tokenize import encode_records
    from alignkit.models import autocast_dtype, load_causal_lm, load_tokenizer

    config.validate()
    start = time.perf_counter()
    state = state or distributed_state()
    records, _ = load_records(config.data, config.data_format)
    require_pairs(records, "DEFT")
    tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    model = load_causal_lm(config.model, trust_remote_code=config.trust_remote_code)
    check_vocab(model, tokenizer)
    model.to(state.device).eval()
    truncation = config.truncation
    encoded, enc = encode_records(records, tokenizer, config.max_length, truncation)  # type: ignore[arg-type]
    dists = token_distributions(encoded, len(tokenizer), tokenizer.all_special_ids)
    table = score_r_q(
        model,
        encoded,
        dists.q_diff,
        pad_id=tokenizer.pad_token_id,
        form=config.form,  # type: ignore[arg-type]
        score_on=config.score,  # type: ignore[arg-type]
        batch_size=config.batch_size,
        autocast=autocast_dtype(config.precision, state.device),  # type: ignore[arg-type]
        state=state,
    )
    scores = selection_scores(table, config.score)  # type: ignore[arg-type]
    count = keep_count_for(len(scores), config.keep_fraction, config.keep_count)
    return DeftSelection(
        records=list(records),
        encoded=encoded,
        table=table,
        scores=scores,
        keep=keep_lowest(scores, count),
        dists=dists,
        tokens=top_tokens(dists, tokenizer, config.top_tokens),
        encoding=enc.describe(config.max_length, truncation),  # type: ignore[arg-type]
        seconds=time.perf_counter() - start,
    )


def run_deft(config: DeftConfig) -> DeftResult | None:
    """`alignkit select deft`: select, then write the subset, scores and report (main
    process only; the others return None)."""
    from alignkit.select import pipeline as report

    state = distributed_state()
    selection = select_deft(config, state)
    result = None
    if state.is_main_process:
        summary = report.write_deft(Path(config.output), config, selection)
        result = DeftResult(
            output=Path(config.output),
            subset=Path(config.output) / report.SUBSET,
            scored=len(selection.scores),
            kept=len(selection.keep),
            cut=summary["cut"],
            summary=summary,
        )
    state.wait_for_everyone()
    return result
