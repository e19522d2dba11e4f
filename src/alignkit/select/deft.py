"""DEFT scoring: R_Q of every example under the starting model.

Q_diff and R_Q (both forms) are in `alignkit.scoring.deft`; this module scores every pair of
a dataset with the starting model (`score_r_q`, sharded under a launcher; `r_q_table` on a
`ScoreRequest`: Q_diff counted on its records, then R_Q). The selector
`deft` (`alignkit.select.registry`) keeps the lowest (or highest) R_Q; `alignkit select
deft` writes the subset, the report and the Q_diff it filtered with
(`alignkit.select.outputs.deft_selection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.data.tokenize import Encoded, EncodeSummary, Truncation, encode_records
from alignkit.distributed import distributed_state
from alignkit.errors import AlignkitError
from alignkit.models import autocast_dtype, load_scoring_model
from alignkit.objectives.base import SeqLogps
from alignkit.scoring.deft import (
    R_Q_FORMS,
    TokenDistributions,
    distribution_reward,
    fit_q_diff,
    token_distributions,
)
from alignkit.scoring.forward import mixes_positions, response_hidden_states
from alignkit.scoring.head import decoder_and_head, logit_transform
from alignkit.scoring.packing import PackedBatch
from alignkit.select.common import ScoreRequest
from alignkit.select.configs import Form, ScoreOn

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


def check_finite(scores: Tensor) -> None:
    if not torch.isfinite(scores).all():
        raise AlignkitError("some R_Q scores are not finite; try --precision fp32")


@dataclass
class RQTable:
    """What DEFT's R_Q is computed from, and the table: `encoded` (the records as training
    tokenizes them; with truncation "drop", over-long ones are left out), `dists` (Q_pos,
    Q_neg and Q_diff counted on them), `table` (n, K) R_Q per response (K = 1 for
    `score: chosen`, 2 for `margin`), the `tokenizer` and the encoding summary."""

    encoded: list[Encoded]
    dists: TokenDistributions
    table: torch.Tensor
    tokenizer: Any
    encoding: EncodeSummary


def r_q_table(request: ScoreRequest, truncation: Truncation = "truncate") -> RQTable:
    """DEFT on `request.records`: Q_diff counted on these records, then R_Q of the chosen
    response (`score: chosen`) or of both (`score: margin`), in the log-prob or the bounded
    form (`form: logprob | prob`) under `request.model`."""
    model, tokenizer = load_scoring_model(
        request.model, trust_remote_code=request.trust_remote_code
    )
    encoded, summary = encode_records(request.records, tokenizer, request.max_length, truncation)
    dists = token_distributions(encoded, len(tokenizer), tokenizer.all_special_ids)
    table = score_r_q(
        model,
        encoded,
        dists.q_diff,
        pad_id=tokenizer.pad_token_id,
        form=request.options.get("form", "logprob"),
        score_on=request.options.get("score", "chosen"),
        batch_size=request.batch_size,
        autocast=autocast_dtype(request.precision, next(model.parameters()).device),
    )
    return RQTable(encoded, dists, table, tokenizer, summary)
