"""`alignkit study --dry-run`: the cells, the work they share, and a wall-time estimate.

The estimate comes from a short calibration on this machine (`calibrate`): the study's model
is loaded (timed) and a few batches of the pool, tokenized at the study's `max_length`, go
through the reference forward pass and a few training steps of the first method, exactly as
a cell runs them: tokens per second of a forward pass and of a training step. Then
(`plan_study`, pure arithmetic on a `Calibration`):

- a cell: its set-up (the kept model handed over fresh: `KeptModel.fresh`, timed) +
  training tokens / train tok/s + held-out forward tokens / forward tok/s, where training tokens = steps x pairs per step x tokens per pair (steps as the
  trainer counts them: ceil(count / batch_size) // grad_accum per epoch, or max_steps) and
  the held-out forward is eval_limit (or all) pairs x tokens per held-out pair;
- an active cell: that per round (a set-up, the round's training: the new pairs, or all so far
  with `retrain`), plus each round's acquisition forward over its candidates;
- shared, once: the model load (the process keeps it for every cell), the pool's tokens, the
  reference log-probs of the pool rows the cells train on (nested subsets: the largest
  budget per selector, per seed for the random control and for active cells; scored in whole
  length-sorted chunks of the pool, `chunked_rows`), of the held-out pairs, and of the acquisition candidates; and one pass over the pool per
  model-based selector (its scores are cached on disk afterwards), at the rate the selector
  itself showed on two disjoint samples of the pool (its fixed cost and its seconds per
  record: a REAL pass embeds each response text alone, once, and a second REAL selector
  reads the first one's embeddings).

Not estimated: generation (`reward_model:`, `judge:`, online methods) and the report.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from alignkit.report import markdown_table
from alignkit.select.acquisition import get_acquisition
from alignkit.select.registry import get_selector
from alignkit.study.active import round_sizes
from alignkit.study.config import StudyConfig
from alignkit.study.run import Cell, plan_cells


@dataclass(frozen=True)
class Calibration:
    """What one forward and one training step cost on this machine, for this study.

    forward_tps, train_tps: tokens per second (packed pair tokens: prompt + both responses);
    load_s: seconds to load the model; pair_tokens, eval_tokens: mean tokens of a pool pair
    and of a held-out pair at the study's max_length (in the prompt format the cells use);
    fresh_s: a cell's set-up (the kept model with a new adapter, or its weights restored);
    tokenize_s: seconds to tokenize one pool pair (in the cells' prompt format);
    selector_passes: per model-based selector (its label): (fixed seconds, seconds per
    pool record) of its pass over the pool."""

    forward_tps: float
    train_tps: float
    load_s: float
    pair_tokens: float
    eval_tokens: float
    fresh_s: float = 0.0
    tokenize_s: float = 0.0
    selector_passes: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class CellEstimate:
    id: str
    steps: int
    tokens: int  # training plus forward tokens of the cell
    seconds: float


@dataclass
class Plan:
    cells: list[CellEstimate]
    shared: list[tuple[str, int, float]]  # (what, tokens, seconds)
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(c.seconds for c in self.cells) + sum(s for _, _, s in self.shared)


def train_steps(count: int, train: dict[str, Any]) -> int:
    """Optimizer steps of a cell training on `count` pairs (as `Trainer` counts them)."""
    if int(train.get("max_steps", 0)):
        return int(train["max_steps"])
    per_epoch = max(1, math.ceil(count / int(train.get("batch_size", 8))))
    per_epoch = max(1, per_epoch // int(train.get("grad_accum", 1)))
    return max(1, math.ceil(float(train.get("epochs", 1.0)) * per_epoch))


def training_pairs(count: int, train: dict[str, Any]) -> int:
    """Pairs the forward-and-backward passes of a cell go through: steps x pairs per step
    (one epoch never goes through more pairs than there are)."""
    per_step = int(train.get("batch_size", 8)) * int(train.get("grad_accum", 1))
    return train_steps(count, train) * min(count, per_step)


def plan_study(config: StudyConfig, pool_size: int, eval_size: int, cal: Calibration) -> Plan:
    """Every cell's steps, tokens and estimated seconds, and the shared work."""
    cells = plan_cells(config, pool_size)
    eval_pairs = min(config.eval_limit, eval_size) if config.eval_limit else eval_size
    eval_tokens = eval_pairs * cal.eval_tokens
    estimates, notes = [], []
    acquisition_rows = 0
    for cell in cells:
        options = {**config.train, **cell.method.options}
        if config.active:
            steps, tokens, seconds, candidates = _active_cell(cell, config, options, pool_size, cal)
            acquisition_rows += candidates
            seconds += len(round_sizes(cell.count, config.rounds)) * eval_tokens / cal.forward_tps
            tokens += len(round_sizes(cell.count, config.rounds)) * int(eval_tokens)
        else:
            steps = train_steps(cell.count, options)
            train_tokens = training_pairs(cell.count, options) * cal.pair_tokens
            tokens = int(train_tokens + eval_tokens)
            seconds = cal.fresh_s + train_tokens / cal.train_tps + eval_tokens / cal.forward_tps
        estimates.append(CellEstimate(cell.id, steps, tokens, seconds))
    shared = [("load the model (kept for every cell)", 0, cal.load_s)]
    shared.append((f"tokenize the {pool_size} pool pairs", 0, pool_size * cal.tokenize_s))
    rows = min(pool_size, _reference_rows(config, cells))
    computed = chunked_rows(rows, pool_size, 2 * int(config.train.get("batch_size", 8)))
    what = f"reference log-probs of {rows} pool pairs (~{computed} with their chunks)"
    shared.append(_forward(what, computed, cal.pair_tokens, cal))
    shared.append(
        _forward(
            f"reference log-probs of {eval_pairs} held-out pairs", eval_pairs, cal.eval_tokens, cal
        )
    )
    if acquisition_rows:
        rows = min(pool_size, acquisition_rows)
        shared.append(
            _forward(
                f"acquisition reference log-probs (<= {rows} pairs)", rows, cal.pair_tokens, cal
            )
        )
    if not config.active:
        for selector in model_selectors(config):
            what = f"{selector.label} scores of the pool (cached)"
            if selector.label in cal.selector_passes:
                fixed, per_record = cal.selector_passes[selector.label]
                shared.append((what, 0, fixed + per_record * pool_size))
            else:
                shared.append(_forward(what, pool_size, cal.pair_tokens, cal))
    if config.generates or any(m.online for m in config.methods):
        notes.append("generation (reward_model, judge, online methods) is not estimated")
    return Plan(estimates, shared, notes)


def model_selectors(config: StudyConfig) -> list:
    """The study's selectors that run a model over the pool, one per distinct name and
    options (in the grid's order)."""
    seen, out = set(), []
    for selector in config.selectors:
        key = (selector.name, str(sorted(selector.options.items())))
        if get_selector(selector.name).needs_model and key not in seen:
            seen.add(key)
            out.append(selector)
    return out


def chunked_rows(rows: int, pool_size: int, chunk: int) -> int:
    """Pool pairs the reference actually scores to give `rows` of them: whole chunks of the
    length-sorted pool (`SharedData.with_reference`, `chunk` = the inference batch, twice the
    training batch), so a row's values never depend on which cells asked first. With the
    rows spread over the C = ceil(pool / chunk) chunks, C (1 - (1 - 1/C)^rows) of them are
    touched (64 rows of a 1,600-pair pool in chunks of 16: 47 chunks, ~750 pairs)."""
    if rows <= 0:
        return 0
    count = math.ceil(pool_size / chunk)
    touched = count * (1 - (1 - 1 / count) ** rows)
    return min(pool_size, max(rows, round(touched * chunk)))


def _forward(what: str, pairs: int, per_pair: float, cal: Calibration) -> tuple[str, int, float]:
    tokens = pairs * per_pair
    return what, int(tokens), tokens / cal.forward_tps


def _reference_rows(config: StudyConfig, cells: list[Cell]) -> int:
    """Pool rows the cells train on, counted once: subsets are nested across budgets, and
    the same across seeds except for the random control and active cells."""
    largest: dict[tuple, int] = {}
    for cell in cells:
        per_seed = config.active or cell.selector.name == "random"
        key = (cell.selector.label, cell.seed if per_seed else None)
        largest[key] = max(largest.get(key, 0), cell.count)
    return sum(largest.values())


def _active_cell(
    cell: Cell, config: StudyConfig, options: dict[str, Any], pool_size: int, cal: Calibration
) -> tuple[int, int, float, int]:
    """(steps, tokens, seconds without the held-out passes, acquisition rows) of an active
    cell: per round a model load, the acquisition forward and the round's training."""
    needs = get_acquisition(cell.selector.name).needs
    steps, tokens, seconds, rows = 0, 0.0, 0.0, 0
    labelled = 0
    for size in round_sizes(cell.count, config.rounds):
        unlabelled = pool_size - labelled
        candidates = min(config.candidates, unlabelled) if config.candidates else unlabelled
        if needs:
            passes = ("logps" in needs) + ("embeddings" in needs)
            forward = passes * candidates * cal.pair_tokens
            tokens += forward
            seconds += forward / cal.forward_tps
            rows += candidates if "logps" in needs else 0
        labelled += size
        trained = labelled if config.retrain or labelled == size else size
        steps += train_steps(trained, options)
        train_tokens = training_pairs(trained, options) * cal.pair_tokens
        tokens += train_tokens
        seconds += cal.fresh_s + train_tokens / cal.train_tps
    if needs:
        seconds += cal.load_s  # the frozen study model that scores round 1's candidates
    return steps, int(tokens), seconds, rows


def plan_markdown(plan: Plan, cal: Calibration) -> str:
    """The plan as printed: shared work, then one row per cell, then the total."""
    lines = [
        f"calibration: forward {cal.forward_tps:,.0f} tok/s, training step "
        f"{cal.train_tps:,.0f} tok/s, model load {cal.load_s:.1f} s, "
        f"{cal.pair_tokens:.0f} tokens per pool pair, {cal.eval_tokens:.0f} per held-out pair, "
        f"cell set-up {cal.fresh_s:.1f} s"
        + "".join(
            f", {label}: {fixed:.1f} s + {1000 * rate:.0f} ms per record"
            for label, (fixed, rate) in cal.selector_passes.items()
        ),
        "",
        "shared work (once):",
        markdown_table(
            ("work", "tokens", "est. seconds"),
            [
                (what, f"{tokens:,}" if tokens else "", f"{sec:.0f}")
                for what, tokens, sec in plan.shared
            ],
        ),
        "",
        markdown_table(
            ("cell", "steps", "tokens", "est. seconds"),
            [(c.id, str(c.steps), f"{c.tokens:,}", f"{c.seconds:.0f}") for c in plan.cells]
            + [
                (
                    "**total**",
                    "",
                    "",
                    f"{plan.total_seconds:.0f} ({plan.total_seconds / 60:.1f} min)",
                )
            ],
        ),
    ]
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------ the calibration


def calibrate(config: StudyConfig, pool: list, held_out: list, batches: int = 3) -> Calibration:
    """Measure the study's model on this machine: the load, a cell's set-up (the kept model
    handed over fresh), the reference forward of 4 inference batches drawn from the pool
    (at least `batches` training batches) and `batches` training steps on them, through the trainer's own code (the first
    pair method's options); then each model-based selector's pass (`selector_passes`)."""
    import random

    from alignkit.data.prompts import chat_records
    from alignkit.data.tokenize import encode_records
    from alignkit.models import enable_gradient_checkpointing, load_tokenizer
    from alignkit.scoring.forward import SequenceScorer
    from alignkit.study.kept_model import KeptModel
    from alignkit.train.trainer import Trainer

    method = next((m for m in config.methods if not m.online), config.methods[0])
    with tempfile.TemporaryDirectory() as tmp:
        train = config.train_config(method, data=config.data, output=tmp, seed=0)
        trainer = Trainer(train)
        tokenizer = load_tokenizer(train.model, train.trust_remote_code)
        start = time.perf_counter()
        kept = KeptModel(train.model, train.trust_remote_code)
        load_s = time.perf_counter() - start

        def fresh() -> SequenceScorer:
            model = kept.fresh(
                train.lora_settings(), train.gradient_checkpointing, bool(train.keep_dropout)
            )
            if train.gradient_checkpointing:
                enable_gradient_checkpointing(model)
            return SequenceScorer(model).to(trainer.device)

        fresh()  # the first cell's; later cells also drop the previous cell's adapter
        start = time.perf_counter()
        scorer = fresh()
        fresh_s = time.perf_counter() - start
        # the reference pass as the study runs it: in chunks of the inference batch (4 here)
        size = batches * train.batch_size * train.grad_accum
        size = min(len(pool), max(size, 4 * trainer.inference_batch()))
        sample = random.Random(0).sample(pool, size)
        trainer.prepare(sample[: train.batch_size], tokenizer, scorer)  # warm-up, same shapes
        start = time.perf_counter()
        trainer.prepare(sample, tokenizer, scorer, with_ref=False)
        tokenize_s = time.perf_counter() - start
        start = time.perf_counter()
        prepared = trainer.prepare(sample, tokenizer, scorer, with_ref=True)
        forward_s = max(1e-6, time.perf_counter() - start - tokenize_s)
        tokens = sum(e.length for e in prepared.encoded)
        scorer, optimizer, scheduler, _ = trainer.start(scorer, batches + 1)
        pad = tokenizer.pad_token_id
        trainer.train_step(scorer, optimizer, scheduler, prepared, 0, pad, None)  # warm-up
        start, trained = time.perf_counter(), 0
        for step in range(1, batches + 1):
            _, n = trainer.train_step(scorer, optimizer, scheduler, prepared, step, pad, None)
            trained += n
        train_s = time.perf_counter() - start
        shown = chat_records(held_out[:64], tokenizer, train.chat)  # as the cells see them
        held, _ = encode_records(shown, tokenizer, train.max_length, train.truncation)
    return Calibration(
        forward_tps=tokens / forward_s,
        train_tps=trained / train_s,
        load_s=load_s,
        pair_tokens=tokens / len(prepared.encoded),
        eval_tokens=sum(e.length for e in held) / max(1, len(held)),
        fresh_s=fresh_s,
        tokenize_s=tokenize_s / len(sample),
        selector_passes={} if config.active else selector_passes(config, pool),
    )


def selector_passes(config: StudyConfig, pool: list) -> dict[str, tuple[float, float]]:
    """(fixed seconds, seconds per record) of each model-based selector's pass over the pool,
    from its time on two disjoint random samples (one and three of its batches), each with
    its own cache that the selectors share as they do in the study."""
    import random

    from alignkit.select.registry import score_records
    from alignkit.study.run import score_request

    batch = int(config.selection.get("batch_size", 8))
    small = min(batch, len(pool) // 4)
    large = min(3 * batch, len(pool) - small)
    selectors = model_selectors(config)
    if not selectors or large <= small:
        return {}
    order = random.Random(1).sample(range(len(pool)), small + large)
    samples = ([pool[i] for i in order[:small]], [pool[i] for i in order[small:]])
    seconds: dict[str, list[float]] = {s.label: [] for s in selectors}
    for sample in samples:
        with tempfile.TemporaryDirectory() as cache:
            for selector in selectors:
                start = time.perf_counter()
                score_records(selector.name, score_request(config, selector, sample, 0, cache))
                seconds[selector.label].append(time.perf_counter() - start)
    out = {}
    for label, (t_small, t_large) in seconds.items():
        per_record = max(0.0, (t_large - t_small) / (large - small))
        out[label] = (max(0.0, t_small - per_record * small), per_record)
    return out
