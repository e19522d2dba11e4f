"""Active preference learning in rounds: a study cell that spends its budget round by round.

With `rounds:` in the study config, a cell of budget B splits it into rounds (`round_sizes`).
Before each round the model trained on the labels so far (round 1: the study model) scores
candidate pairs from the unlabelled pool (`candidates:` drawn at random per round, or all of
them) with the cell's acquisition function (`alignkit.select.acquisition`), and the pairs it
picks have their labels revealed by a simulated annotator: the pool's label, flipped with
probability `flip_rate` (one seeded draw per pool pair, made before anything is read). Then
the model trains: on from the previous round's weights on the new pairs (`retrain: false`,
every label seen `epochs` times as in a one-shot cell), or from the study model on every
label so far (`retrain: true`). After every round the held-out metrics are measured, so
one cell gives the whole curve: its rows are reported at 1, 2, ... rounds' worth of labels.

Label-free by construction: the acquisition sees each unlabelled pair as two responses in a
canonical order (`canonical`: the text that sorts first is `a`), never which was chosen;
`tests/study/test_active.py` swaps chosen and rejected in the unrevealed pool and checks
that every round acquires the same pairs.

Outputs per cell: `cells/<id>/round-<r>/` (each round's run directory and `subset.jsonl`,
the labels revealed so far as the annotator gave them), `rounds.json` (the pool indices
acquired per round) and `cell.json` (the last round's row with every round's row under
`rounds`). A killed active cell starts again from round 1.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import torch

from alignkit.data.formats import record_row
from alignkit.data.prompts import chat_records
from alignkit.data.records import Pair
from alignkit.data.tokenize import Encoded, encode_records
from alignkit.io import atomic_write_jsonl, atomic_write_text
from alignkit.models import autocast_dtype, is_peft, reference_context
from alignkit.scoring.dataset import score_dataset
from alignkit.scoring.forward import SequenceScorer
from alignkit.select.acquisition import CandidateScores, acquire, get_acquisition
from alignkit.select.embeddings import embed_texts
from alignkit.study.config import METRICS, StudyConfig
from alignkit.study.run import (
    CELL_FILE,
    Cell,
    CellTrainer,
    StudyContext,
    cell_settings,
    cell_train_config,
    data_key,
    reindexed,
    run_study,
    subset_rows,
)
from alignkit.train.checkpoint import Prepared
from alignkit.train.config import TrainConfig

ROUNDS_FILE = "rounds.json"


def round_sizes(total: int, rounds: int | list[int]) -> list[int]:
    """The labels of each round: a list is taken as given; a number k splits `total` into
    min(k, total) parts that differ by at most one, the larger ones last (so the first
    rounds, trained on the fewest labels, are never the larger)."""
    if isinstance(rounds, list):
        return list(rounds)
    k = max(1, min(int(rounds), total))
    base, extra = divmod(total, k)
    return [base + (i >= k - extra) for i in range(k)]


def annotator_flips(n: int, flip_rate: float, seed: int) -> np.ndarray:
    """(n,) bool: the simulated annotator flips the label of pool pair i when it is revealed.
    One draw for the whole pool, from the seed alone (never from the labels)."""
    if flip_rate <= 0:
        return np.zeros(n, dtype=bool)
    return np.random.default_rng([seed, 7919]).random(n) < flip_rate


def candidate_sample(unlabelled: np.ndarray, size: int, seed: int, round_: int) -> np.ndarray:
    """(m,) sorted pool indices the round scores: `size` drawn at random (seed, round) from
    the unlabelled ones, or all of them (size 0 or more than there are)."""
    if size <= 0 or size >= len(unlabelled):
        return np.sort(unlabelled)
    rng = np.random.default_rng([seed, round_])
    return np.sort(rng.choice(unlabelled, size, replace=False))


def canonical(pair: Pair) -> Pair:
    """The pair as two unjudged responses: `chosen` is the one whose text sorts first."""
    a, b = sorted([pair.chosen, pair.rejected])
    return dataclasses.replace(pair, chosen=a, rejected=b)


def revealed(pair: Pair, flip: bool) -> Pair:
    """The pair as the annotator labels it: as in the pool, or flipped."""
    return dataclasses.replace(pair, chosen=pair.rejected, rejected=pair.chosen) if flip else pair


def flipped(prepared: Prepared, flips: list[bool]) -> Prepared:
    """`prepared` with the responses (and reference columns) of the flagged rows swapped:
    response 0 is the chosen one."""
    if not any(flips):
        return prepared
    encoded = [
        dataclasses.replace(e, responses=[e.responses[1], e.responses[0], *e.responses[2:]])
        if f
        else e
        for e, f in zip(prepared.encoded, flips, strict=True)
    ]
    ref = prepared.ref
    if ref is not None:
        ref = ref.clone()
        rows = torch.tensor([i for i, f in enumerate(flips) if f], dtype=torch.long)
        ref[rows] = ref[rows][:, [1, 0]]
    return dataclasses.replace(prepared, encoded=encoded, ref=ref)


class RoundTrainer(CellTrainer):
    """One round of an active cell: trains on the revealed labels of `keep` (pool indices),
    from `start_state` (the trainable weights of the previous round) when given, and keeps
    the trained model for the next acquisition."""

    def __init__(self, config, context, keep, key, flips: np.ndarray, start_state=None) -> None:
        super().__init__(config, context, keep, key)
        self.flips, self.start_state = flips, start_state
        self.trained: torch.nn.Module | None = None
        self.tokenizer: Any = None

    def build_scorer(self, tokenizer):
        scorer = super().build_scorer(tokenizer)
        if self.start_state is not None:
            result = scorer.model.load_state_dict(self.start_state, strict=False)
            assert not result.unexpected_keys, result.unexpected_keys
        return scorer

    def prepare_train(self, records: list, tokenizer, scorer) -> Prepared:
        prepared = super().prepare_train(records, tokenizer, scorer)
        full = self.shared.find("train", self.key)
        assert full is not None  # pair methods only (validated)
        positions = full.records or [e.index for e in full.encoded]
        rows = subset_rows(full, self.keep)
        return flipped(prepared, [bool(self.flips[positions[r]]) for r in rows])

    def after_training(self, scorer, tokenizer) -> dict[str, float]:
        self.trained = self.accelerator.unwrap_model(scorer).model
        self.tokenizer = tokenizer
        return super().after_training(scorer, tokenizer)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights after training (a LoRA adapter's, or every weight)."""
        assert self.trained is not None
        return {
            name: p.detach().clone()
            for name, p in self.trained.named_parameters()
            if p.requires_grad
        }


class CandidateScorer:
    """Scores candidate pairs with a model for an acquisition function, label-free: it sees
    the canonical pool (`canonical`) only. Reference log-probs are computed once per pool
    pair and shared by the cells (`SharedData`): with the adapter disabled for a LoRA model,
    else with the study model loaded once per process (`StudyContext.frozen_model`)."""

    def __init__(self, context: StudyContext, key: tuple, cell: Cell, train: TrainConfig) -> None:
        # `train`: the cell's training options, so candidates are encoded as the cell trains
        self.context, self.key, self.cell, self.train = context, key, cell, train
        self.config: StudyConfig = context.config
        self.canonical = [canonical(p) for p in context.pool]

    def base(self) -> tuple[torch.nn.Module, Any]:
        """The study model (eval mode): round 1's model and a full fine-tuning run's
        reference."""
        return self.context.frozen_model()

    def scores(
        self, model, tokenizer, candidates: np.ndarray, labelled: np.ndarray
    ) -> tuple[np.ndarray, CandidateScores]:
        """(the candidates that could be encoded, their scores) for the cell's acquisition."""
        needs = get_acquisition(self.cell.selector.name).needs
        max_length, truncation = self.train.max_length, self.train.truncation
        precision = self.train.precision
        device = next(model.parameters()).device
        autocast = autocast_dtype(precision, device)  # type: ignore[arg-type]
        out = CandidateScores(n=len(candidates))
        if "logps" in needs:
            full = self.context.shared.get(
                ("acquire", *self.key),
                lambda: _prepared(
                    chat_records(self.canonical, tokenizer, bool(self.train.chat)),
                    tokenizer,
                    max_length,
                    truncation,
                ),
            )
            rows = subset_rows(full, candidates)
            positions = full.records or [e.index for e in full.encoded]
            candidates = np.array([positions[r] for r in rows], dtype=np.int64)
            batch = self.train.batch_size * 2

            def logps(scoring_model, encoded: list[Encoded]) -> torch.Tensor:
                return score_dataset(
                    SequenceScorer(scoring_model),
                    encoded,
                    batch_size=batch,
                    pad_id=tokenizer.pad_token_id,
                    device=device,
                    autocast=autocast,
                    k=2,
                    desc="acquisition log-probs",
                )

            def reference(encoded: list[Encoded]) -> torch.Tensor:
                ref_model = model if is_peft(model) else self.base()[0]
                with reference_context(ref_model):
                    return logps(ref_model, encoded)

            out.policy = logps(model, reindexed(full, rows)).double().numpy()
            shared = self.context.shared
            out.reference = (
                shared.with_reference(("acquire", *self.key), full, rows, reference, batch)
                .double()
                .numpy()
            )
            out.n = len(candidates)
        if "embeddings" in needs:
            pairs = [self.canonical[i] for i in [*candidates.tolist(), *labelled.tolist()]]
            texts = [t for p in pairs for t in (p.chosen, p.rejected)]
            size = int(self.config.selection.get("batch_size", 16))
            emb = embed_texts(model, tokenizer, texts, batch_size=size, autocast=autocast)
            vectors = emb.of(torch.arange(len(texts))).double().numpy()
            a, b = vectors[0::2], vectors[1::2]
            n = len(candidates)
            out.similarity = (a[:n] * b[:n]).sum(-1)
            out.features = a[:n] - b[:n]
            out.prior = a[n:] - b[n:]
        return candidates, out


def _prepared(records: list, tokenizer, max_length: int, truncation: str) -> Prepared:
    """The records tokenized as training tokenizes them (no reference log-probs)."""
    encoded, summary = encode_records(records, tokenizer, max_length, truncation)
    positions = [e.index for e in encoded]
    encoded = [dataclasses.replace(e, index=i) for i, e in enumerate(encoded)]
    return Prepared(encoded, None, 2, summary.describe(max_length, truncation), positions)


def run_active_cell(context: StudyContext, cell: Cell) -> dict[str, Any]:
    """Acquire, reveal, train and evaluate round by round; write cell.json last (the last
    round's row, every round's row under `rounds`)."""
    config, pool = context.config, context.pool
    out = cell.directory(context.root)
    sizes = round_sizes(cell.count, config.rounds)
    flips = annotator_flips(len(pool), config.flip_rate, cell.seed)
    beta = float({**config.train, **cell.method.options}.get("beta", 0.1))
    settings = cell_settings(config, cell)
    first = cell_train_config(config, cell, out)
    key = data_key(config, first)
    scorer = CandidateScorer(context, key, cell, first)  # encoded as the cell trains
    labelled = np.zeros(0, dtype=np.int64)
    model, tokenizer, state = None, None, None
    rows: list[dict[str, Any]] = []
    acquired: list[list[int]] = []
    for r, size in enumerate(sizes, 1):
        round_dir = out / f"round-{r}"
        train = cell_train_config(config, cell, round_dir)
        train.validate()
        unlabelled = np.setdiff1d(np.arange(len(pool)), labelled)
        candidates = candidate_sample(unlabelled, config.candidates, cell.seed, r)
        if get_acquisition(cell.selector.name).needs and model is None:
            model, tokenizer = scorer.base()
        if model is not None:
            candidates, scores = scorer.scores(model, tokenizer, candidates, labelled)
        else:
            scores = CandidateScores(n=len(candidates))
        picks = acquire(
            cell.selector.name,
            cell.selector.options,
            scores,
            size,
            beta=beta,
            seed=cell.seed * 1000 + r,
        )
        new = candidates[picks]
        acquired.append(sorted(int(i) for i in new))
        labelled = np.concatenate([labelled, new])
        keep = labelled if config.retrain or state is None else new
        atomic_write_jsonl(
            round_dir / "subset.jsonl",
            [record_row(revealed(pool[i], bool(flips[i])), source=False) for i in keep],
        )
        trainer = RoundTrainer(
            train, context, np.asarray(keep), key, flips, None if config.retrain else state
        )
        result = trainer.run()
        model, tokenizer = trainer.trained, trainer.tokenizer
        state = None if config.retrain else trainer.trained_state()
        rows.append(
            {
                "id": f"{cell.id}/r{r}",
                "method": cell.method.name,
                "selector": cell.selector.label,
                "budget": float(len(labelled)),
                "count": int(len(labelled)),
                "seed": cell.seed,
                "keep": "acquired",
                "round": r,
                "of_rounds": len(sizes),
                "flipped": int(flips[labelled].sum()),
                "selected_score_mean": None,
                "metrics": {n: result.eval_after.get(METRICS[n][0]) for n in config.metrics},
                "steps": result.steps,
                "settings": settings,
            }
        )
    atomic_write_jsonl(
        out / "subset.jsonl",
        [record_row(revealed(pool[i], bool(flips[i])), source=False) for i in labelled],
    )
    atomic_write_text(
        out / ROUNDS_FILE,
        json.dumps({"sizes": sizes, "acquired": acquired, "retrain": config.retrain}, indent=1),
    )
    row = {**rows[-1], "id": cell.id, "rounds": rows}
    atomic_write_text(out / CELL_FILE, json.dumps(row, indent=2))
    return row


def run_active_study(config: StudyConfig, progress=print) -> dict[str, Any]:
    """`run_study` with active cells (`run_active_cell`)."""
    return run_study(config, progress, runner=run_active_cell)
