"""DEFT selection: keep the examples with the lowest token-distribution reward R_Q.

Q_diff and R_Q (both forms) are in `alignkit.scoring.deft`; this module scores every pair of
a dataset with the starting model (`score_r_q`, sharded under a launcher) and keeps the
lowest-R_Q fraction (`select_deft`; `--keep highest` keeps the highest). The end-to-end run
that writes the subset and the report is `alignkit.select.pipeline.run_deft`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from alignkit.data.formats import DataFormat
from alignkit.data.tokenize import Encoded, Truncation
from alignkit.errors import AlignkitError
from alignkit.models import Precision, distributed_state
from alignkit.objectives.base import SeqLogps
from alignkit.options import opt
from alignkit.scoring.deft import (
    R_Q_FORMS,
    RQForm,
    TokenDistributions,
    distribution_reward,
    encoded_fingerprint,
    fit_q_diff,
    token_distributions,
    tokenizer_identity,
)
from alignkit.scoring.forward import mixes_positions, response_hidden_states
from alignkit.scoring.head import decoder_and_head, logit_transform
from alignkit.scoring.packing import PackedBatch
from alignkit.select.common import (
    KEEPS,
    Keep,
    check_vocab,
    fraction_count,
    keep_indices,
    rejected_path,
    require_data_and_output,
    skip_invalid_option,
)

log = logging.getLogger(__name__)

Form = RQForm  # the R_Q form (alignkit.scoring.deft)
ScoreOn = Literal["chosen", "margin"]


# ------------------------------------------------------------------------ Q_diff report


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


class DistributionRewardScorer(nn.Module):
    """Scores R_Q only (no log-probs): `forward(batch)` -> SeqLogps with sum = r_q = (B, K).

    Log-prob form with a linearly post-processed head: decoder + one d-vector W^T Q_diff
    (no LM head at all), so scoring costs about one backbone forward. Otherwise (bounded
    form, or a soft-capped head) the LM head runs on the response positions, a chunk at a time.
    Plugs into `alignkit.scoring.dataset.score_dataset` (sharding, ordering, progress bar).
    """

    def __init__(self, model: nn.Module, q_diff: Tensor, form: Form = "logprob") -> None:
        super().__init__()
        if form not in R_Q_FORMS:
            raise AlignkitError(f"unknown R_Q form {form!r}; choose logprob or prob")
        self.model = model
        self.form: Form = form
        self.logit_transform = logit_transform(model)
        decoder, head = decoder_and_head(model, self.logit_transform)
        self.unpack = mixes_positions(decoder)
        self.register_buffer("q_diff", fit_q_diff(q_diff.float(), head.rows), persistent=False)

    def forward(self, batch: PackedBatch, autocast: torch.dtype | None = None) -> SeqLogps:
        decoder, head = decoder_and_head(self.model, self.logit_transform)
        hidden = response_hidden_states(decoder, batch, autocast, self.unpack)
        r_q = distribution_reward(
            hidden, head, self.q_diff, batch.seq_id, batch.counts, self.form, autocast=autocast
        )
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
        encoded = [chosen_only(e) for e in encoded]
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


def chosen_only(e: Encoded) -> Encoded:
    """The example with its first (chosen) response only."""
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
    return fraction_count(n, fraction, "--keep-fraction")


def keep_lowest(scores: Tensor, count: int) -> Tensor:
    """(count,) indices of the `count` lowest scores, in ascending index order.

    Ties at the cut go to the lower index, so the result is deterministic. (`select deft`
    uses `keep_indices`, which orders ties by a seeded shuffle like every selector.)
    """
    check_finite(scores)
    order = torch.sort(scores, stable=True).indices
    return order[:count].sort().values


def check_finite(scores: Tensor) -> None:
    if not torch.isfinite(scores).all():
        raise AlignkitError("some R_Q scores are not finite; try --precision fp32")


# ------------------------------------------------------------------------- the command


@dataclass
class DeftConfig:
    """Options of `alignkit select deft` (field help texts are the CLI's --help)."""

    data: list[str] = opt([], "pair data files to select from", metavar="PATH")
    output: str = opt(
        "",
        "output directory: subset.jsonl, scores.jsonl, dropped.jsonl, q_diff.safetensors "
        "(for train --q-diff), report.json/.md, r_q_hist.png",
    )
    model: str = opt(
        "default", "starting model: HF id, local path, or 'default' (embedded SmolLM2-135M)"
    )
    data_format: DataFormat = opt("auto", "format of the data files")
    keep_fraction: float | None = opt(None, "fraction of examples to keep (default: 0.05)")
    keep_count: int = opt(0, "keep exactly this many examples instead (0 = use the fraction)")
    fraction: float | None = opt(None, "the same as --keep-fraction (the shape of every selector)")
    count: int | None = opt(None, "the same as --keep-count (the shape of every selector)")
    keep: Keep = opt("lowest", "keep the lowest R_Q (DEFT) or the highest")
    seed: int = opt(0, "seed of the order of tied scores at the cut")
    score: ScoreOn = opt(
        "chosen", "what is filtered on: R_Q of the chosen response, or chosen minus rejected"
    )
    form: Form = opt(
        "logprob",
        "R_Q form: logprob = mean_t <Q_diff, log p_t> (no softmax), prob = mean_t "
        "<Q_diff, p_t> (bounded)",
    )
    batch_size: int = opt(8, "examples per forward pass")
    max_length: int = opt(1024, "max tokens of prompt + one response")
    truncation: Truncation = opt("truncate", "over-long examples: truncate or drop")
    precision: Precision = opt("auto", "bf16 autocast, fp32, or auto")
    top_tokens: int = opt(20, "tokens listed in the report per Q_diff sign")
    trust_remote_code: bool = opt(False, "allow model code from the model repository")
    skip_invalid: bool = skip_invalid_option()

    def validate(self) -> None:
        require_data_and_output(self.data, self.output)
        self._fold_aliases()
        if self.keep not in KEEPS:
            raise AlignkitError(f"--keep must be lowest or highest, got {self.keep!r}")
        if self.keep_count and self.keep_fraction is not None:
            raise AlignkitError("give --keep-fraction or --keep-count, not both")
        if self.keep_count < 0:
            raise AlignkitError(f"--keep-count must be >= 0, got {self.keep_count}")
        keep_count_for(1, self.keep_fraction, None)  # range check of the fraction
        if self.batch_size <= 0 or self.top_tokens < 0:
            raise AlignkitError("--batch-size must be > 0 and --top-tokens >= 0")

    def _fold_aliases(self) -> None:
        """--fraction / --count are --keep-fraction / --keep-count under their common names."""
        if self.fraction is not None:
            if self.keep_fraction is not None and self.keep_fraction != self.fraction:
                raise AlignkitError("--fraction and --keep-fraction are one option; give one")
            self.keep_fraction = self.fraction
        if self.count is not None:
            if self.count < 1:
                raise AlignkitError(f"--count must be >= 1, got {self.count}")
            if self.keep_count and self.keep_count != self.count:
                raise AlignkitError("--count and --keep-count are one option; give one")
            self.keep_count = self.count


@dataclass
class DeftSelection:
    """Everything the DEFT report is made of (scores are in the order of `encoded`).

    table: (n, K) R_Q per response; scores: (n,) filtered on; keep: (m,) rows of `encoded`;
    tokenizer: `tokenizer_identity` of the tokenizer Q_diff was counted in; fingerprint:
    `encoded_fingerprint` of the data it was counted from; special_ids: the ids excluded.
    """

    records: list[Any]
    encoded: list[Encoded]
    table: Tensor
    scores: Tensor
    keep: Tensor
    dists: TokenDistributions
    tokens: dict[str, list[dict]]
    encoding: str
    tokenizer: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    special_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0


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
    records, _ = load_records(
        config.data,
        config.data_format,
        skip_invalid=config.skip_invalid,
        rejected_path=rejected_path(config.output, config.skip_invalid, state),
    )
    require_pairs(records, "DEFT")
    tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    model = load_causal_lm(config.model, trust_remote_code=config.trust_remote_code)
    check_vocab(model, tokenizer)
    model.to(state.device).eval()
    truncation = config.truncation
    encoded, enc = encode_records(records, tokenizer, config.max_length, truncation)
    dists = token_distributions(encoded, len(tokenizer), tokenizer.all_special_ids)
    table = score_r_q(
        model,
        encoded,
        dists.q_diff,
        pad_id=tokenizer.pad_token_id,
        form=config.form,
        score_on=config.score,
        batch_size=config.batch_size,
        autocast=autocast_dtype(config.precision, state.device),
        state=state,
    )
    scores = selection_scores(table, config.score)
    count = keep_count_for(len(scores), config.keep_fraction, config.keep_count)
    check_finite(scores)
    return DeftSelection(
        records=list(records),
        encoded=encoded,
        table=table,
        scores=scores,
        keep=torch.from_numpy(
            keep_indices(scores.double().numpy(), count, config.keep, config.seed)
        ),
        dists=dists,
        tokens=top_tokens(dists, tokenizer, config.top_tokens),
        encoding=enc.describe(config.max_length, truncation),
        tokenizer=tokenizer_identity(tokenizer, config.model),
        fingerprint=encoded_fingerprint(encoded),
        special_ids=sorted(tokenizer.all_special_ids),
        seconds=time.perf_counter() - start,
    )
