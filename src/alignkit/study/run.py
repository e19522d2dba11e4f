"""Running a study: for every method x selector x budget x seed, select -> train -> evaluate.

Shared work is done once. Selector scores are computed once per selector (and seed, for the
random control) and cached by content (`select.registry`). The pool is tokenized once and
the reference log-probs of a pool record are computed the first time a cell trains on it
(most records of a small-budget study never are); the held-out pairs are prepared once.
Every cell of a pair method trains on its rows of that table (`SharedData`), so a 4 x 4 x 3
grid runs the reference policy over each record at most once, not 48 times (pair methods; a
point method's view of the pairs is prepared per cell). With `reward_model:`, the reward
model is trained (if given as options) and loaded once, and scores every cell's greedy
answers to the held-out prompts; the online methods (ple, raft, rrhf-online) sample from the
prompts of their cell's subset and learn from that reward model.
Each cell writes its run directory (`cells/<id>/`: subset, metrics, `summary.json`, its
per-pair held-out outcomes `heldout_outcomes.jsonl` for the report's bootstrap; no model
unless `train: {save_model: true}`) and `cell.json` last, with a digest of its settings: a
killed study resumes and skips finished cells whose settings did not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import DistributedType
from torch import nn

from alignkit.data.batching import sorted_chunks
from alignkit.data.formats import record_row
from alignkit.data.loading import load_records, source_identity
from alignkit.data.prompts import distinct_prompts, prompt_json
from alignkit.data.queries import load_queries
from alignkit.data.records import Pair
from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.evaluation.judges import build_judge
from alignkit.evaluation.win_rate import Item, VerdictCache, judge_pairs, load_generations
from alignkit.inference.generation import SamplingConfig
from alignkit.inference.generators import HFGenerator
from alignkit.io import atomic_write, atomic_write_jsonl, atomic_write_text
from alignkit.models import (
    generation_dtype,
    is_peft,
    load_inference_model,
    load_scoring_model,
    load_tokenizer,
)
from alignkit.objectives.losses import dpo_loss
from alignkit.objectives.registry import get_method
from alignkit.online.loop import OnlineTrainer
from alignkit.options import to_dict
from alignkit.rewards.heldout import heldout_metrics, heldout_rows
from alignkit.rewards.loading import RewardModel, load_reward_model
from alignkit.rewards.training import RewardTrainer
from alignkit.scoring.dataset import reference_for
from alignkit.scoring.forward import SequenceScorer
from alignkit.select.registry import (
    ScoreRequest,
    budget_count,
    get_selector,
    keep_indices,
    score_records,
)
from alignkit.study.config import METRICS, Keep, MethodEntry, SelectorEntry, StudyConfig
from alignkit.study.executors import run_cells
from alignkit.study.kept_model import KeptModel
from alignkit.study.report import OUTCOMES
from alignkit.train.checkpoint import Prepared
from alignkit.train.config import TrainConfig
from alignkit.train.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)
CELL_FILE = "cell.json"
SHARED_CACHE = "cache/shared.pt"  # the shared work, for cell processes (`StudyContext.open`)
# seconds of the invocations that ran cells: each cell's run, and per invocation its shared
# work and cells (`record_timings`)
TIMINGS = "timings.json"
GENERATIONS = "eval/generations.jsonl"  # a cell's greedy answers to the held-out prompts
POINTS = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # a judged prompt's points (unparseable: None)


@dataclass(frozen=True)
class Cell:
    method: MethodEntry
    selector: SelectorEntry
    budget: float
    count: int
    seed: int

    @property
    def id(self) -> str:
        budget = f"{self.budget:g}" if self.budget <= 1 else str(int(self.budget))
        return f"{self.method.name}/{self.selector.label}/b{budget}/s{self.seed}"

    def directory(self, root: Path) -> Path:
        return root / "cells" / self.id.replace("/", "__")


def plan_cells(config: StudyConfig, pool_size: int) -> list[Cell]:
    """Every cell of the grid, method-major (cells that share a model run back to back)."""
    cells = []
    for method in config.methods:
        for selector in config.selectors:
            for budget in config.budgets:
                fraction, count = (budget, None) if budget <= 1 else (None, int(budget))
                n = budget_count(pool_size, fraction, count)
                for seed in config.seeds:
                    cells.append(Cell(method, selector, budget, n, seed))
    return cells


class SharedData:
    """Tokenized data with reference log-probs, prepared once and reused by every cell.

    Valid because every cell starts from the same model (`StudyConfig.model`): its reference
    policy, and so the reference log-probs, are the same for all of them. The pool's
    reference log-probs are filled in row by row as cells need them (`with_reference`).
    """

    def __init__(self) -> None:
        self._prepared: dict[tuple, Prepared] = {}
        self._ref: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # key -> (values, done)

    def get(self, key: tuple, build: Callable[[], Prepared]) -> Prepared:
        if key not in self._prepared:
            self._prepared[key] = build()
        return self._prepared[key]

    def find(self, what: str, key: tuple) -> Prepared | None:
        """The prepared pool (`what` = "train") for `key`, if a cell prepared it."""
        return self._prepared.get((what, *key))

    def with_reference(
        self,
        key: tuple,
        full: Prepared,
        rows: list[int],
        compute: Callable[[list[Encoded]], torch.Tensor],
        chunk: int,
    ) -> torch.Tensor:
        """Reference log-probs [len(rows), k] of the given rows of `full`. Rows are scored
        in the chunks `compute` makes of the whole of `full` (`sorted_chunks(lengths,
        chunk)`: `compute` must batch by `chunk`), each chunk the first time a cell needs one
        of its rows, so a row's values do not depend on which cells ran before it or in which
        process. `compute` gets the encodings of whole chunks, re-indexed 0..m-1 in row
        order: sorted by length it splits them into those very chunks."""
        if key not in self._ref:
            n = len(full.encoded)
            self._ref[key] = (torch.zeros(n, full.k), torch.zeros(n, dtype=torch.bool))
        values, done = self._ref[key]
        missing = {r for r in rows if not done[r]}
        if missing:
            chunks = sorted_chunks([e.length for e in full.encoded], chunk)
            todo = sorted(r for c in chunks if not missing.isdisjoint(c) for r in c)
            values[todo] = compute(reindexed(full, todo)).to(values.dtype)
            done[todo] = True
        return values[torch.tensor(rows, dtype=torch.long)]

    def save(self, path: Path) -> None:
        """Everything prepared so far, for cell processes (`load`)."""
        state = {"prepared": self._prepared, "ref": self._ref}
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: Path) -> SharedData:
        """What `save` wrote (a file of the study's own output directory: pickled
        `Prepared` values, hence `weights_only=False`)."""
        shared = cls()
        state = torch.load(path, weights_only=False)
        shared._prepared, shared._ref = state["prepared"], state["ref"]
        return shared


def reindexed(full: Prepared, rows: list[int]) -> list[Encoded]:
    """The encodings of `full`'s `rows`, indexed 0..m-1 in that order."""
    return [
        Encoded(**{**dataclasses.asdict(full.encoded[r]), "index": i}) for i, r in enumerate(rows)
    ]


def subset_rows(full: Prepared, keep: np.ndarray) -> list[int]:
    """The rows of `full` holding the kept pool records, in `keep`'s order (records the
    encoder dropped as too long are skipped)."""
    positions = full.records or [e.index for e in full.encoded]
    row_of = {pos: row for row, pos in enumerate(positions)}
    return [row_of[i] for i in keep.tolist() if i in row_of]


def subset_of(full: Prepared, rows: list[int], ref: torch.Tensor | None = None) -> Prepared:
    """`full`'s `rows` re-indexed 0..m-1, with their reference log-probs `ref` (or none)."""
    encoded = reindexed(full, rows)
    return Prepared(encoded, ref, full.k, f"{len(encoded)} of the pool's {len(full.encoded)}")


class CellTrainer(Trainer):
    """The core Trainer for one cell: a pair method's data comes from `SharedData`; the
    held-out metrics before training are the same for every cell and are not recomputed."""

    evaluate_before = False
    guard_output = False  # the study manages its cells' directories

    def __init__(self, config, context: StudyContext, keep: np.ndarray, key: tuple) -> None:
        super().__init__(config)
        self.context, self.keep, self.key = context, keep, key
        self.shared, self.pool = context.shared, context.pool
        self.heldout: Prepared | None = None  # the held-out pairs, with reference log-probs
        self.heldout_pairs: list = []
        self.outcome_parts: list = []  # `held_out_scores` of the last pass over `heldout`
        self.eval_s = 0.0  # seconds in held-out evaluation (cell.json: the cell's own work)

    def evaluate(self, *args, **kwargs) -> dict[str, float]:
        start = time.perf_counter()
        out = super().evaluate(*args, **kwargs)
        self.eval_s += time.perf_counter() - start
        return out

    def build_tokenizer(self):
        cfg = self.config
        return self.context.tokenizer(cfg.model, cfg.trust_remote_code)

    def build_scorer(self, tokenizer) -> nn.Module:
        """The study's kept model (`StudyContext.kept_model`), as a fresh load gives it: a
        new adapter drawn from the cell's seed (set by `run` before), or the weights as
        loaded; dropout off unless the cell keeps it. Under a launcher (several processes, FSDP, DeepSpeed) the model is loaded
        per cell: those wrap and shard it in place."""
        if self.accelerator.distributed_type != DistributedType.NO:
            return super().build_scorer(tokenizer)
        cfg = self.config
        kept = self.context.kept_model(cfg.model, cfg.trust_remote_code)
        keep_dropout = bool(cfg.keep_dropout)  # off unless --keep-dropout, as `train`
        return SequenceScorer(
            kept.fresh(cfg.lora_settings(), cfg.gradient_checkpointing, keep_dropout)
        )

    def prepare_train(self, records: list, tokenizer, scorer) -> Prepared:
        if self.method.kind != "pair":  # point / multi views of a pair differ per method
            return super().prepare_train(records, tokenizer, scorer)
        build = lambda: self.prepare(self.pool, tokenizer, scorer, with_ref=False)  # noqa: E731
        full = self.shared.get(("train", *self.key), build)
        rows = subset_rows(full, self.keep)
        if not self.method.needs_ref:
            return subset_of(full, rows)
        pad_id = tokenizer.pad_token_id
        compute = lambda enc: self.reference_logps(scorer, enc, full.k, pad_id)  # noqa: E731
        ref = self.shared.with_reference(self.key, full, rows, compute, self.inference_batch())
        return subset_of(full, rows, ref)

    def prepare_shared(self) -> None:
        """The part of `run` that a pair method's cells share, without training: the pool's
        tokens, the reference log-probs of the rows of `keep`, the held-out data (done once
        before the cells run; cell processes read them from the study's cache)."""
        cfg = self.config
        eval_records, eval_pairs = self.load_eval(cfg.eval_data) if cfg.eval_data else (None, [])
        tokenizer = self.build_tokenizer()
        scorer = self.make_scorer(tokenizer)
        self.prepare_train([], tokenizer, scorer)
        if eval_records:
            self.prepare_eval(eval_records, tokenizer, scorer)
        if eval_pairs:
            self.prepare_eval(eval_pairs, tokenizer, scorer, with_ref=True)

    def q_diff_data(self, train: Prepared) -> tuple[list, str]:
        """DEFT guidance counts Q_diff on the whole pool (as the `deft` selector does), not on
        the cell's subset: one Q_diff for filtering and guidance."""
        pool = self.shared.find("train", self.key)
        if pool is None:  # a point method: its own view of the data
            return super().q_diff_data(train)
        return pool.encoded, f"the study's pool ({len(pool.encoded)} examples)"

    def load_eval(self, paths: list[str]) -> tuple[list, list[Pair]]:
        """The held-out data, cut to the study's `eval_limit` first records."""
        records, pairs = super().load_eval(paths)
        limit = self.context.config.eval_limit
        records, pairs = (records[:limit], pairs[:limit]) if limit else (records, pairs)
        self.heldout_pairs = pairs or [r for r in records if isinstance(r, Pair)]
        return records, pairs

    def prepare_eval(self, records: list, tokenizer, scorer, with_ref: bool | None = None):
        view = (self.method.kind, self.method.needs_ref) if with_ref is None else ("pairs", True)
        build = lambda: self.prepare(records, tokenizer, scorer, with_ref)  # noqa: E731
        prepared = self.shared.get(("eval", *view, *self.key), build)
        if view in (("pair", True), ("pairs", True)):  # the held-out pairs the metrics read
            self.heldout = prepared
        return prepared

    def held_out_scores(self, data: Prepared, batch, policy) -> Any:
        """Per held-out pair of the batch: its row, the policy's and the reference's log-probs
        (a pair method's reduction of the token log-probs; other methods' held-out pairs
        summed, as `pair_eval_metrics`)."""
        if data is not self.heldout or data.ref is None:
            return None
        reduction = self.objective.reduction if self.method.kind == "pair" else "sum"
        ref = reference_for(batch, data.ref).reduced(reduction)
        rows = batch.index.cpu()
        return rows, policy.reduced(reduction).detach().double().cpu(), ref.double().cpu()

    def held_out_pass(self, data: Prepared, kept: list) -> None:
        if data is self.heldout and kept and all(part is not None for part in kept):
            self.outcome_parts = kept

    def write_outcomes(self) -> None:
        """`heldout_outcomes.jsonl`: per held-out pair (`index` in the held-out data, `id` of
        its content), the implicit-reward difference of the trained policy, from the forward
        pass of the last evaluation (the one that gave the metrics): `margin` = beta *
        [(log pi - log pi_ref)(chosen) - (...)(rejected)], `margin_unscaled` without beta,
        `correct` (margin > 0) and `dpo_loss`."""
        data, parts = self.heldout, self.outcome_parts
        if data is None or not parts or not self.accelerator.is_main_process:
            return
        rows, policy, ref = (torch.cat([p[j] for p in parts]) for j in range(3))
        beta = self.objective.beta
        losses, chosen, rejected = dpo_loss(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], beta)
        unscaled = (policy[:, 0] - ref[:, 0]) - (policy[:, 1] - ref[:, 1])
        out = []
        for n, row in enumerate(rows.tolist()):
            index = data.records[row] if data.records else row
            out.append(
                {
                    "index": index,
                    "id": pair_digest(self.heldout_pairs[index]),
                    "margin": float(chosen[n] - rejected[n]),
                    "margin_unscaled": float(unscaled[n]),
                    "correct": bool(chosen[n] > rejected[n]),
                    "dpo_loss": float(losses[n]),
                }
            )
        atomic_write_jsonl(self.output / OUTCOMES, sorted(out, key=lambda r: r["index"]))

    def after_training(self, scorer, tokenizer) -> dict[str, float]:
        """With a reward model or a judge: greedy answers to the held-out prompts
        (`eval/generations.jsonl`), and their mean reward. First, the per-pair held-out
        outcomes (`write_outcomes`)."""
        self.write_outcomes()
        config = self.context.config
        if not config.generates:
            return {}
        prompts = self.context.eval_prompts()
        queries = load_queries(str(prompts), tokenizer, True, 0).queries
        policy = self.accelerator.unwrap_model(scorer).model
        sampling = SamplingConfig(
            max_new_tokens=config.reward_max_new_tokens, do_sample=False, batch_size=16
        )
        generator = HFGenerator(
            policy, tokenizer, generation_dtype(self.config.precision, self.device)
        )
        scorer.eval()
        reward = self.context.reward()
        rows = heldout_rows(queries, generator, reward, sampling)
        atomic_write_jsonl(self.output / GENERATIONS, rows)
        return heldout_metrics(rows) if reward is not None else {}


class StudyContext:
    """What the cells of one study process share: the pool, the prepared data, the selector
    scores, the model and its tokenizer (loaded once: `kept_model`) and the reward model
    (trained or loaded once, on first use)."""

    def __init__(
        self, config: StudyConfig, pool: list, root: Path, shared: SharedData | None = None
    ) -> None:
        self.config, self.pool, self.root = config, pool, root
        self.shared = shared or SharedData()
        self.scores = Scores(config, pool, root)
        self.reward_prompts = root / "reward_prompts.jsonl"
        self._reward: RewardModel | None = None
        self._eval_prompts_written = False
        self._kept: KeptModel | None = None
        self._tokenizers: dict[tuple[str, bool], Any] = {}
        self._frozen: tuple[nn.Module, Any] | None = None

    @classmethod
    def open(cls, config: StudyConfig) -> StudyContext:
        """The context of a cell process: the pool read again, the shared work read from
        the study's cache (written by `prepare` before the processes started)."""
        root = Path(config.output)
        pool, _ = load_records(config.data, skip_invalid=config.skip_invalid)
        context = cls(config, pool, root, SharedData.load(root / SHARED_CACHE))
        context._eval_prompts_written = context.reward_prompts.is_file()
        return context

    def kept_model(self, spec: str, trust_remote_code: bool) -> KeptModel:
        """The model every cell of this process trains, loaded once (one model at a time)."""
        if self._kept is None or self._kept.key != (spec, trust_remote_code):
            self._kept = None  # freed before the next one loads
            self._kept = KeptModel(spec, trust_remote_code)
        return self._kept

    def tokenizer(self, spec: str, trust_remote_code: bool):
        """The tokenizer of `spec`, loaded once."""
        key = (spec, trust_remote_code)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(spec, trust_remote_code)
        return self._tokenizers[key]

    def frozen_model(self) -> tuple[nn.Module, Any]:
        """The study model ready to score (eval mode, no gradients), loaded once: what an
        active cell's first round acquires with, and a full fine-tuning run's reference
        while the kept model trains."""
        if self._frozen is None:
            spec = self.config.model
            trust = bool(self.config.train.get("trust_remote_code", False))
            model, tokenizer = load_scoring_model(spec, trust_remote_code=trust)
            if is_peft(model):  # a saved adapter: the model it gives, not its base
                model = model.merge_and_unload()  # type: ignore[operator]
            self._frozen = (model, tokenizer)
        return self._frozen

    def release(self) -> None:
        """Drop the models this process loaded (before cell processes load their own)."""
        self._kept, self._frozen, self._reward = None, None, None

    def prepare(self, cells: list[Cell], save: bool = False) -> None:
        """The work cells share, done once before any of them runs: the selector scores,
        the reward model (trained if given as options) and the untrained model's reward, the
        held-out prompts, and per pair method the pool's tokens, the reference log-probs of
        every row its cells train on and the held-out data. With `save`, written to
        OUTPUT/cache/shared.pt for cell processes (`open`)."""
        config = self.config
        keeps: dict[tuple, tuple[TrainConfig, set[int]]] = {}
        for cell in cells:  # an active cell acquires its rows round by round
            rows = set() if config.active else set(cell_keep(self, cell)[1].tolist())
            if cell.method.online or get_method(cell.method.method).kind != "pair":
                continue
            train = cell_train_config(config, cell, cell.directory(self.root))
            method = get_method(train.method)
            group = (data_key(config, train), method.needs_ref)
            keeps.setdefault(group, (train, set()))[1].update(rows)
        if config.reward_model:
            self.before_training()
        if config.generates:
            self.eval_prompts()
        for (key, _), (train, rows) in keeps.items():
            train.validate()
            trainer = CellTrainer(train, self, np.array(sorted(rows), dtype=np.int64), key)
            trainer.prepare_shared()
        if save:
            self.shared.save(self.root / SHARED_CACHE)

    def reward_spec(self) -> str:
        """The reward model's spec; `reward_model:` given as train-rm options is trained
        into OUTPUT/reward_model first (once: a finished run with the same options is kept)."""
        spec = self.config.reward_model
        if not isinstance(spec, dict):
            return spec
        out = self.root / "reward_model"
        train = self.config.reward_train_config(str(out))
        options = {k: v for k, v in to_dict(train).items() if k != "overwrite"}  # not a result
        digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
        done = out / "study-settings.txt"
        if not (done.is_file() and done.read_text() == digest and (out / "model").is_dir()):
            log.info("training the study's reward model into %s", out)
            trainer = RewardTrainer(train)
            trainer.guard_output = False  # retrained in place when its options change
            trainer.run()
            atomic_write_text(done, digest)
        return str(out)

    def reward(self) -> RewardModel | None:
        """The study's reward model (None without `reward_model:`)."""
        if not self.config.reward_model:
            return None
        if self._reward is None:
            self._reward = load_reward_model(
                self.reward_spec(),
                batch_size=16,
                precision=str(self.config.train.get("precision", "auto")),
            )
        return self._reward

    def before_training(self) -> dict[str, float]:
        """The study model's own mean reward on the held-out prompts (greedy, untrained): the
        line every cell's `reward` is read against. Computed once, kept in before.json."""
        if not self.config.reward_model:
            return {}
        path = self.root / "before.json"
        key = [self.reward_spec(), self.config.model, self.config.reward_prompts]
        key.append(self.config.reward_max_new_tokens)
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return stored["metrics"]
        loaded = load_inference_model(self.config.model)
        device = next(loaded.model.parameters()).device
        precision = str(self.config.train.get("precision", "auto"))
        generator = HFGenerator(loaded.model, loaded.tokenizer, generation_dtype(precision, device))
        queries = load_queries(str(self.eval_prompts()), loaded.tokenizer, True, 0).queries
        sampling = SamplingConfig(
            max_new_tokens=self.config.reward_max_new_tokens, do_sample=False, batch_size=16
        )
        reward = self.reward()
        assert reward is not None
        metrics = heldout_metrics(heldout_rows(queries, generator, reward, sampling))
        atomic_write_text(path, json.dumps({"key": key, "metrics": metrics}, indent=2))
        return metrics

    def eval_prompts(self) -> Path:
        """A queries file of the first `reward_prompts` distinct held-out prompts."""
        if not self._eval_prompts_written:
            config = self.config
            records, _ = load_records(config.eval_data, skip_invalid=config.skip_invalid)
            rows = prompt_rows(records)[: config.reward_prompts]
            if not rows:
                raise AlignkitError("study: reward_prompts is 0 or the held-out data is empty")
            atomic_write_jsonl(self.reward_prompts, rows)
            self._eval_prompts_written = True
        return self.reward_prompts


def pair_digest(pair: Pair) -> str:
    """A short id of a pair's content (prompt, chosen, rejected): the same held-out pair in
    every cell, so the report can check that cells were evaluated on the same items."""
    text = json.dumps([prompt_json(pair.prompt), pair.chosen, pair.rejected])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prompt_rows(records: list) -> list[dict[str, Any]]:
    """`{"prompt": ...}` rows of the records' distinct prompts, in first-seen order."""
    return [{"prompt": prompt_json(prompt)} for prompt, _ in distinct_prompts(records)]


CellRunner = Callable[["StudyContext", Cell], dict[str, Any]]


def run_study(
    config: StudyConfig,
    progress: Callable[[str], None] = print,
    runner: CellRunner | None = None,
) -> dict[str, Any]:
    """Run (or resume) every cell, then write study.json, study.md and the plots.

    The shared work is done first (`StudyContext.prepare`), then the cells that are not
    finished run where `config.execution()` says (`study.executors`; their seconds go to
    OUTPUT/timings.json), each by `runner`
    (default `run_cell`; active studies pass `alignkit.study.active.run_active_cell`). A
    cell's row may carry `rounds`: the rows of its rounds, each reported as a cell at its
    number of labels."""
    from alignkit.study.report import write_report

    root = Path(config.output)
    root.mkdir(parents=True, exist_ok=True)
    pool, _ = load_records(config.data, skip_invalid=config.skip_invalid)
    if not all(isinstance(r, Pair) for r in pool):
        raise AlignkitError(
            "study: the pool (data:) must be preference pairs (hh or trl-pair records)"
        )
    cells = plan_cells(config, len(pool))
    atomic_write_text(root / "plan.json", json.dumps([c.id for c in cells], indent=1))
    context = StudyContext(config, pool, root)
    rows: dict[str, dict[str, Any]] = {}
    for cell in cells:
        row = _finished(cell, config, root)
        if row is not None:
            rows[cell.id] = row
            progress(_progress_line(len(rows), len(cells), cell, row, None))
    todo = [cell for cell in cells if cell.id not in rows]
    execution = config.execution()
    began = time.perf_counter()
    context.prepare(todo, save=execution.in_processes(len(todo)))
    timings: dict[str, Any] = {"shared_s": time.perf_counter() - began, "cells_s": {}}
    start = time.perf_counter()
    done = run_cells(context, todo, runner or run_cell, execution)
    for n, (cell, row, seconds) in enumerate(done):
        rows[cell.id] = row
        timings["cells_s"][cell.id] = seconds
        rate = (time.perf_counter() - start) / (n + 1)  # wall seconds per cell, all executors
        progress(_progress_line(len(rows), len(cells), cell, row, rate * (len(todo) - n - 1)))
    # cells_wall_s: the cells, all executors together; wall_s: shared work and cells
    timings["cells_wall_s"] = time.perf_counter() - start
    timings["wall_s"] = time.perf_counter() - began
    if todo:
        record_timings(root / TIMINGS, timings)
    results = [r for cell in cells for r in rows[cell.id].get("rounds") or [rows[cell.id]]]
    add_win_rates(context, cells, results)
    if config.active:  # the rounds' rows are the points of the curve: their counts
        budgets = sorted({float(r["budget"]) for r in results})
        config = dataclasses.replace(config, budgets=budgets)
    return write_report(config, results, root, len(pool), context.before_training())


def record_timings(path: Path, timings: dict[str, Any]) -> None:
    """Add one invocation's `timings` (shared_s, cells_s, cells_wall_s, wall_s) to the study's
    timings file: `cells_s` keeps every cell's seconds from the invocation that ran it (a
    resumed study adds its cells to those of the first), `runs` lists each invocation's
    totals, and the top-level shared_s / cells_wall_s / wall_s are the latest invocation's."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    this = {k: timings[k] for k in ("shared_s", "cells_wall_s", "wall_s")}
    this["cells"] = len(timings["cells_s"])
    merged = {
        **this,
        "cells_s": {**before.get("cells_s", {}), **timings["cells_s"]},
        "runs": [*before.get("runs", []), this],
    }
    atomic_write_text(path, json.dumps(merged, indent=1))


class Scores:
    """Selector scores of the pool, computed once per selector (and per seed for the random
    control, whose scores are the seeded draw), cached on disk by content."""

    def __init__(self, config: StudyConfig, pool: list, root: Path) -> None:
        self.config, self.pool, self.cache = config, pool, root / "cache" / "scores"
        self._memory: dict[tuple, np.ndarray] = {}

    def of(self, selector: SelectorEntry, seed: int) -> np.ndarray:
        seeded = selector.name == "random"
        key = (selector.label, seed if seeded else None)
        if key not in self._memory:
            seed = seed if seeded else 0
            request = score_request(self.config, selector, self.pool, seed, str(self.cache))
            self._memory[key] = score_records(selector.name, request)
        return self._memory[key]


def score_request(
    config: StudyConfig, selector: SelectorEntry, records: list, seed: int, cache_dir: str | None
) -> ScoreRequest:
    """What the study asks `selector` to score `records` with (the `selection:` options);
    scores (and REAL's embeddings) cached under `cache_dir`."""
    opts = config.selection
    return ScoreRequest(
        records=records,
        options=dict(selector.options),
        model=str(opts.get("model", config.model)),
        seed=seed,
        batch_size=int(opts.get("batch_size", 8)),
        max_length=int(opts.get("max_length", 512)),
        precision=str(opts.get("precision", "auto")),
        cache_dir=cache_dir,
    )


def keep_rule(selector: SelectorEntry) -> Keep:
    """The cell's keep rule: the entry's, else the selector's default for its options."""
    return selector.keep or get_selector(selector.name).keep_for(selector.options)


def cell_keep(context: StudyContext, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
    """(the selector's scores of the pool, the pool indices the cell keeps)."""
    values = context.scores.of(cell.selector, cell.seed)
    return values, keep_indices(values, cell.count, keep_rule(cell.selector), seed=cell.seed)


def data_key(config: StudyConfig, train: TrainConfig) -> tuple:
    """What a cell's shared data depends on: the model and its reference policy, the
    lengths, the precision, and the batch (the chunks its reference log-probs and held-out
    metrics are computed in: `Trainer.inference_batch`)."""
    return (
        config.model,
        train.max_length,
        train.truncation,
        train.precision,
        train.lora,
        train.batch_size,
    )


def run_cell(context: StudyContext, cell: Cell) -> dict[str, Any]:
    """Select the cell's subset, train on it, evaluate; write cell.json last."""
    config, pool = context.config, context.pool
    out = cell.directory(context.root)
    values, keep = cell_keep(context, cell)
    subset = out / "subset.jsonl"
    atomic_write_jsonl(subset, [record_row(pool[i], source=False) for i in keep])
    if cell.method.online:
        result = _run_online(context, cell, keep, out)
    else:
        train = cell_train_config(config, cell, out)
        train.validate()
        trainer = CellTrainer(train, context, keep, data_key(config, train))
        result = trainer.run()
    row = {
        "id": cell.id,
        "method": cell.method.name,
        "selector": cell.selector.label,
        "budget": cell.budget,
        "count": int(len(keep)),
        "seed": cell.seed,
        "keep": keep_rule(cell.selector),
        "selected_score_mean": float(values[keep].mean()) if len(keep) else None,
        "metrics": {name: result.eval_after.get(METRICS[name][0]) for name in config.metrics},
        "steps": result.steps,
        "settings": cell_settings(config, cell),
    }
    if not cell.method.online:
        row["eval_s"] = round(trainer.eval_s, 3)
    atomic_write_text(out / CELL_FILE, json.dumps(row, indent=2))
    return row


def _run_online(context: StudyContext, cell: Cell, keep: np.ndarray, out: Path) -> TrainResult:
    """An online cell: the subset's distinct prompts are its queries; its greedy answers to
    the held-out prompts are scored by the study's reward model after training."""
    reward = context.reward()
    assert reward is not None  # validated: online methods need `reward_model:`
    atomic_write_jsonl(out / "queries.jsonl", prompt_rows([context.pool[i] for i in keep]))
    online = cell_online_config(context.config, cell, out, str(context.eval_prompts()))
    online.reward_model = context.reward_spec()  # for the run's config.json: the object is used
    trainer = OnlineTrainer(online, reward=reward)
    trainer.evaluate_before = False  # the same for every cell
    trainer.guard_output = False  # the study manages its cells' directories
    result = trainer.run()
    final = out / "eval" / f"iter-{online.iterations:04d}.jsonl"
    atomic_write_text(out / GENERATIONS, final.read_text(encoding="utf-8"))
    return result


def add_win_rates(context: StudyContext, cells: list[Cell], results: list[dict]) -> None:
    """With `judge:`: each cell's answers to the held-out prompts against the baseline cell's
    of the same seed, judged in both orders (ties count half; verdicts cached on disk, so a
    resumed study asks only new questions). The baseline cell itself gets none."""
    config = context.config
    if not config.judge:
        return
    judge = build_judge(config.judge)
    cache = VerdictCache(context.root / "cache" / "judge.jsonl")
    base = config.baseline_key()
    by_seed = {c.seed: c for c in cells if (c.method.name, c.selector.label, c.budget) == base}
    for cell, row in zip(cells, results, strict=True):
        baseline = by_seed[cell.seed]
        if baseline is cell:
            row["metrics"]["win_rate"] = None
            continue
        mine = load_generations(str(cell.directory(context.root) / GENERATIONS))
        theirs = load_generations(str(baseline.directory(context.root) / GENERATIONS))
        items = [Item(p, a, b) for (p, a), (_, b) in zip(mine, theirs, strict=True)]
        report = judge_pairs(items, judge, cache, concurrency=1)
        row["metrics"]["win_rate"] = report["win_rate_ties_half"]
        row["win_rate_against"] = baseline.id
        summary = {k: v for k, v in report.items() if k != "per_prompt"}
        points = [POINTS.get(r["outcome"]) for r in report["per_prompt"]]  # for the bootstrap
        out = cell.directory(context.root) / "win_rate.json"
        text = json.dumps({"against": baseline.id, **summary, "points": points}, indent=2)
        atomic_write_text(out, text)


def cell_train_config(config: StudyConfig, cell: Cell, out: Path) -> TrainConfig:
    """The cell's `alignkit train` options. The model is not saved (`cell.json` holds the
    metrics; add `save_model: true` under `train:` to keep every cell's model), and no
    periodic checkpoint is written (a cell never resumes: a killed study runs it again)."""
    values = {"save_model": False, "save_minutes": 0, **config.train}
    return config.train_config(
        cell.method,
        **{k: v for k, v in values.items() if k in ("save_model", "save_minutes")},
        data=[str(out / "subset.jsonl")],
        eval_data=list(config.eval_data),
        output=str(out),
        seed=cell.seed,
        resume=False,
        skip_invalid=config.skip_invalid,
    )


def cell_online_config(config: StudyConfig, cell: Cell, out: Path, eval_queries: str):
    """An online cell's options: no checkpoints or model unless the study's `online:` or
    the method's options ask for them; the reward model is the study's (an object)."""
    values = {"save_model": False, "save_every": 0, **config.online, **cell.method.options}
    return config.online_config(
        cell.method,
        save_model=values["save_model"],
        save_every=values["save_every"],
        queries=str(out / "queries.jsonl"),
        eval_queries=eval_queries,
        output=str(out),
        seed=cell.seed,
        resume=False,
    )


def cell_settings(config: StudyConfig, cell: Cell) -> str:
    """A digest of everything a cell's result depends on: its training options, selector,
    budget, seed and the pool and held-out files; a finished cell whose digest differs (the
    YAML changed) is run again rather than reported."""
    if cell.method.online:
        train = to_dict(cell_online_config(config, cell, Path("cell"), "eval"))
    else:
        train = to_dict(cell_train_config(config, cell, Path("cell")))
    for how in ("overwrite", "save_minutes"):  # how a run is kept, not what a cell computes
        train.pop(how, None)
    parts = {
        "train": train,
        "eval_limit": config.eval_limit,
        "reward": [config.reward_model, config.reward_prompts, config.reward_max_new_tokens],
        "selector": [cell.selector.name, cell.selector.options, cell.selector.keep],
        "budget": cell.budget,
        "selection": config.selection,
        "files": [source_identity(p) for p in [*config.data, *config.eval_data]],
    }
    if config.active:
        parts["rounds"] = [config.rounds, config.retrain, config.flip_rate, config.candidates]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _finished(cell: Cell, config: StudyConfig, root: Path) -> dict[str, Any] | None:
    path = cell.directory(root) / CELL_FILE
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    if row.get("settings") != cell_settings(config, cell):
        return None
    # the keep rule the cell applied: a selector's default that changed since runs it again
    if not config.active and row.get("keep") != keep_rule(cell.selector):
        return None
    return row


def _progress_line(n: int, total: int, cell: Cell, row: dict, eta_s: float | None) -> str:
    metrics = " ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row["metrics"].items()
    )
    eta = "resumed" if eta_s is None else f"ETA {eta_s / 60:.1f} min"
    return f"[{n}/{total}] {cell.id} ({row['count']} pairs): {metrics} | {eta}"
