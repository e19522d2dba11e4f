"""The scorers of the built-in selectors: one float64 per record, in record order.

Each takes a `ScoreRequest` (`alignkit.select.common`) whose options are already merged with
the selector's defaults and checked (`alignkit.select.registry` does that, caches the result
and checks the record kinds). Model-free: `random_scores` (a seeded uniform draw),
`length_scores` (tokens; needs a tokenizer only). With the causal LM `request.model`:
`perplexity_scores`, `reward_gap_scores` (implicit reward of the model against a reference),
`deft_scores` (R_Q, `alignkit.select.deft`), `real_scores` (REAL's cosine similarity of the
chosen and rejected embeddings, `alignkit.select.embeddings`). The reward-model margin needs
`alignkit.rewards` (a higher layer) and is registered from there
(`alignkit.rewards.selection`).

Log-probs are the packed forward of training (`alignkit.scoring.forward.SequenceScorer` via
`alignkit.scoring.dataset.score_dataset`): the prompt as training renders it, each response
tokenized alone with EOS appended, prompt + response truncated to `request.max_length`.

Under a launcher (`accelerate launch`, `torchrun`) the model scorers split their forward
passes over the processes themselves and return the whole (n,) on every process: log-probs
by length-sorted batch (`sequence_logps`), R_Q likewise (`score_r_q`), embeddings by text
(`embed_texts`). DEFT's Q_diff is counted on all records by every process (a token count,
cheap). `length` is split by the registry (`Selector.split_records`); `random` is one seeded
draw over all records and is not split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignkit.data.prompts import chat_records
from alignkit.data.records import Pair, Point
from alignkit.data.tokenize import Encoded, encode_records
from alignkit.distributed import distributed_state
from alignkit.errors import AlignkitError
from alignkit.models import (
    autocast_dtype,
    cache_dir,
    load_scoring_model,
    load_tokenizer,
    reference_context,
)
from alignkit.runs import ModelSpec, chat_format, resolve_model_spec
from alignkit.scoring.dataset import score_dataset
from alignkit.scoring.forward import SequenceScorer
from alignkit.select.common import ScoreRequest
from alignkit.select.deft import chosen_only, r_q_table, selection_scores
from alignkit.select.embeddings import Embeddings, embed_texts

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ model-free


def random_scores(request: ScoreRequest) -> np.ndarray:
    """A seeded uniform draw in [0, 1): keeping the lowest `count` is a seeded random subset
    (another seed, another subset)."""
    return np.random.default_rng(request.seed).random(len(request.records))


def answers(records: Sequence[Any]) -> list[str]:
    """The answer each record is judged by: a pair's chosen response, a point's completion."""
    out = []
    for r in records:
        if isinstance(r, Pair):
            out.append(r.chosen)
        elif isinstance(r, Point):
            out.append(r.completion)
        else:
            raise AlignkitError(f"{r.source or 'a record'}: expected a pair or a point")
    return out


def length_scores(request: ScoreRequest) -> np.ndarray:
    """Tokens of the chosen answer (`what: chosen`; a point's completion), or of the chosen
    plus the rejected answer (`what: pair`), in the tokenizer of `request.model`; the text
    alone, without special tokens and without truncation."""
    records = request.records
    tokenizer = load_tokenizer(request.model, request.trust_remote_code)
    what = request.options.get("what", "chosen")
    if what == "pair":
        bad = [r for r in records if not isinstance(r, Pair)]
        if bad:
            raise AlignkitError(
                f"length with what=pair needs preference pairs; {bad[0].source or 'a record'} "
                "is not one (use what=chosen)"
            )
        texts = [t for r in records for t in (r.chosen, r.rejected)]
    else:
        texts = answers(records)
    counts = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])
    if what == "pair":
        counts = counts[0::2] + counts[1::2]
    return counts.astype(np.float64)


# ------------------------------------------------------------------ with a causal LM


def encode_all(
    records: Sequence[Any], tokenizer: Any, max_length: int, model: str
) -> list[Encoded]:
    """Every record encoded as training encodes it for the model spec `model`: plain-text
    prompts in the prompt format of `runs.chat_format` (the run's recorded one, else the chat
    template), over-long examples truncated, none dropped, in record order."""
    records = chat_records(list(records), tokenizer, chat_format(None, model))
    encoded, _ = encode_records(records, tokenizer, max_length, "truncate")
    if [e.index for e in encoded] != list(range(len(records))):
        raise AlignkitError("internal: encoding dropped or reordered records")
    return encoded


def autocast_for(model: nn.Module, precision: str) -> torch.dtype | None:
    return autocast_dtype(precision, next(model.parameters()).device)  # type: ignore[arg-type]


def sequence_logps(
    model: nn.Module, encoded: Sequence[Encoded], pad_id: int, request: ScoreRequest
) -> np.ndarray:
    """(n, K) summed log-probs of every response under `model` (float64).

    Under a launcher each process scores every world-th length-sorted batch — the very
    batches of a one-process run, so the numbers are the same — and every process gets the
    whole table back in the order of `encoded` (`score_dataset`)."""
    from accelerate.utils import gather_object

    state = distributed_state()
    table = score_dataset(
        SequenceScorer(model),
        encoded,
        batch_size=request.batch_size,
        pad_id=pad_id,
        device=next(model.parameters()).device,
        autocast=autocast_for(model, request.precision),
        rank=state.process_index,
        world=state.num_processes,
        gather=gather_object,
        desc="log-probs",
    )
    return table.double().numpy()


def perplexity_scores(request: ScoreRequest) -> np.ndarray:
    """exp(-sum_t log p(y_t) / n) of the chosen answer (a point's completion) under
    `request.model`; n counts the answer's tokens including the EOS that training appends."""
    model, tokenizer = load_scoring_model(
        request.model, trust_remote_code=request.trust_remote_code
    )
    encoded = [
        chosen_only(e)
        for e in encode_all(request.records, tokenizer, request.max_length, request.model)
    ]
    sums = sequence_logps(model, encoded, tokenizer.pad_token_id, request)[:, 0]
    tokens = np.array([len(e.responses[0]) for e in encoded], dtype=np.float64)
    return np.exp(-sums / tokens)


NO_REFERENCE = (
    "without a reference the gap is log pi(chosen) - log pi(rejected), a difference of summed "
    "log-probs that the answers' lengths dominate (a longer answer has a lower log-prob), not "
    "an implicit reward"
)


ADAPTER_OFF = ""  # the reference of a LoRA policy: the same model with its adapter disabled


def reward_gap_reference(spec: ModelSpec, ref: str) -> str:
    """The reference of `reward_gap_scores` for the policy `spec` and the option `ref`: `ref`
    when it is a model spec; "none" when asked for (logged as a warning); else the policy's
    own base: `ADAPTER_OFF` for a LoRA adapter, the `base_model` of a full fine-tuning run. A
    policy without a base and no `ref` is refused: its gap would be length-confounded
    (`NO_REFERENCE`)."""
    if ref == "none":
        log.warning("reward-gap: ref none: %s", NO_REFERENCE)
        return ref
    if ref:
        return ref
    if spec.adapter:
        return ADAPTER_OFF
    if spec.base:
        return spec.base
    raise AlignkitError(
        f"reward-gap: {spec.name} has no base model to be the reference, and {NO_REFERENCE}. "
        "Give --ref MODEL (the model it was trained from; in a study: options: {ref: MODEL}), "
        "or --ref none to score that difference anyway"
    )


def check_reward_gap(model: str, options: Mapping[str, Any]) -> None:
    """The reward-gap selector's check: `model` has a reference (`reward_gap_reference`)."""
    reward_gap_reference(resolve_model_spec(model), str(options.get("ref") or ""))


def reward_gap_scores(request: ScoreRequest) -> np.ndarray:
    """Implicit-reward gap [log pi(c) - log pi_ref(c)] - [log pi(r) - log pi_ref(r)] of the
    policy `request.model` against the reference `options["ref"]` (`reward_gap_reference`): a
    model spec; "" (the default) = the policy's own base: the adapter disabled for a LoRA
    model, the `base_model` of a full fine-tuning run (refused where the policy has none);
    "none": no reference, the gap is log pi(c) - log pi(r) (with a warning). Summed
    log-probs, as DPO's reward. Near zero: a pair the model barely separates; negative: the
    model prefers the rejected answer."""
    spec = resolve_model_spec(request.model)
    ref = reward_gap_reference(spec, str(request.options.get("ref") or ""))
    model, tokenizer = load_scoring_model(
        request.model, trust_remote_code=request.trust_remote_code
    )
    encoded = encode_all(request.records, tokenizer, request.max_length, request.model)
    policy, ref_table = policy_and_reference(model, tokenizer, encoded, request, ref)
    gap = policy[:, 0] - policy[:, 1]
    if ref_table is not None:
        gap = gap - (ref_table[:, 0] - ref_table[:, 1])
    return gap


def policy_and_reference(
    model: nn.Module, tokenizer: Any, encoded: Sequence[Encoded], request: ScoreRequest, ref: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, K) summed log-probs of every response under the policy `model` (loaded from
    `request.model`) and under its reference `ref`: a model spec; "" = the policy's own base
    (the adapter disabled for a LoRA model, the `base_model` of a full fine-tuning run);
    where the policy has no base, or with "none", there is no reference (None)."""
    spec = resolve_model_spec(request.model)
    pad = tokenizer.pad_token_id
    policy = sequence_logps(model, encoded, pad, request)
    if ref == "" and spec.adapter:
        log.info("reference = %s with the adapter disabled", spec.base)
        with reference_context(model):
            return policy, sequence_logps(model, encoded, pad, request)
    if ref == "" and spec.base:
        ref = spec.base
    if not ref or ref == "none":
        log.info("no reference model: log pi alone")
        return policy, None
    log.info("reference = %s", ref)
    reference, _ = load_scoring_model(ref, tokenizer, trust_remote_code=request.trust_remote_code)
    return policy, sequence_logps(reference, encoded, pad, request)


def deft_scores(request: ScoreRequest) -> np.ndarray:
    """DEFT's R_Q (`r_q_table`) of every record: of the chosen response, or chosen minus
    rejected (`score: margin`)."""
    r_q = r_q_table(request)
    if [e.index for e in r_q.encoded] != list(range(len(request.records))):
        raise AlignkitError("internal: encoding dropped or reordered records")
    return selection_scores(r_q.table, request.options.get("score", "chosen")).double().numpy()


def response_embeddings(request: ScoreRequest, texts: list[str], cache: Path) -> Embeddings:
    """REAL's embeddings (`alignkit.select.embeddings`) of `texts` under `request.model`,
    cached on disk under `cache`. Responses are embedded whole: `max_length` does not apply."""
    model, tokenizer = load_scoring_model(
        request.model, trust_remote_code=request.trust_remote_code
    )
    return embed_texts(
        model,
        tokenizer,
        texts,
        batch_size=request.batch_size,
        autocast=autocast_for(model, request.precision),
        cache_dir=cache,
    )


def real_scores(request: ScoreRequest) -> np.ndarray:
    """REAL on pairs: cosine similarity of the chosen and the rejected response's embeddings
    (`response_embeddings`; cached on disk under `cache_dir/embeddings`, default
    `$ALIGNKIT_CACHE/embeddings`). Easy pairs = least similar (keep lowest), hard = most
    similar (keep highest)."""
    records = request.records
    texts = [t for r in records for t in (r.chosen, r.rejected)]
    root = Path(request.cache_dir) if request.cache_dir else cache_dir()
    emb = response_embeddings(request, texts, root / "embeddings")
    n = len(records)
    chosen, rejected = torch.arange(0, 2 * n, 2), torch.arange(1, 2 * n, 2)
    return (emb.of(chosen) * emb.of(rejected)).sum(-1).double().numpy()
