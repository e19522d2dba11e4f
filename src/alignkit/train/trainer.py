"""One training loop for every objective (accelerate: CPU, one or many GPUs, DDP/FSDP/ZeRO).

The objective is a parameter (`alignkit.objectives.registry`); the loop does data, reference
log-probs (precomputed once and cached with the tokenized dataset), packed forward passes,
gradient accumulation, schedules, checkpoints with exact resume, logging and saving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedType,
    gather_object,
    set_seed,
)
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from alignkit.data import as_kind, load_records
from alignkit.data.batching import epoch_batches, rank_slice, sorted_chunks
from alignkit.data.labels import (
    LabelReport,
    LabelVariant,
    apply_label_options,
    as_scores,
    point_label_variant,
)
from alignkit.data.loading import REJECTED_FILE, source_identity, write_rejected
from alignkit.data.prompts import chat_records
from alignkit.data.records import Pair, Rejected, rejected_by_reason
from alignkit.data.tokenize import encode_records
from alignkit.distributed import shard_map
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text, iter_jsonl
from alignkit.models import (
    autocast_dtype,
    disable_dropout,
    enable_gradient_checkpointing,
    load_tokenizer,
    load_training_model,
    precision_choice,
    reference_context,
)
from alignkit.objectives import ObjectiveConfig, SeqLogps, compute_loss, get_method
from alignkit.objectives.metrics import pair_eval_metrics
from alignkit.objectives.registry import Method
from alignkit.options import to_dict
from alignkit.runs import (
    absolute_if_local,
    digest,
    flat_config,
    spec_fingerprint,
    truncate_metrics,
)
from alignkit.scoring.dataset import reference_for, score_dataset
from alignkit.scoring.deft import Q_DIFF_FILE, RQSpec, load_q_diff, token_distributions
from alignkit.scoring.forward import SequenceScorer
from alignkit.scoring.packing import PackedBatch, collate
from alignkit.train import checkpoint
from alignkit.train.checkpoint import Prepared
from alignkit.train.config import DataTrainingOptions
from alignkit.train.engines import (
    configure_deepspeed,
    fsdp_layers_to_wrap,
    full_weights_loading,
    make_accelerator,
    tracker_setup,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output: Path
    steps: int
    final_metrics: dict[str, float] = field(default_factory=dict)
    eval_before: dict[str, float] = field(default_factory=dict)
    eval_after: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Trains `config.method` on `config.data`; `run()` does the whole job.

    Subclasses (reward models: `alignkit.rewards.training`; online loops: `alignkit.online.loop`)
    may override the hooks `build_tokenizer`, `build_scorer`, `step_loss`, `build_optimizer`
    and `save_extra`,
    and may call the building blocks `make_scorer` (`build_scorer` + gradient checkpointing,
    on the device), `train_step` (one optimizer step over `grad_accum`
    micro-batches), `reset_batch_order` (after changing the training data), `log_metrics`,
    `save_checkpoint` / `maybe_resume` (exact resume) and `save_final`.
    """

    def __init__(
        self,
        config: DataTrainingOptions,
        accelerator: Accelerator | None = None,
        method: Method | None = None,
    ) -> None:
        self.config = config
        # `method` lets a subclass train an objective that is not in METHODS (reward models)
        self.method: Method = method or get_method(config.method)  # type: ignore[attr-defined]
        self.objective: ObjectiveConfig = config.objective()
        self.owns_accelerator = accelerator is None  # a caller's accelerator is theirs to end
        self.accelerator = accelerator or make_accelerator(
            config, str(config.output) if config.output else None
        )
        self.output = Path(config.output)
        # set by `load`: the records dropped by --skip-invalid, the label options' report and
        # the label variant of the run (binary or continuous, from the training data)
        self.rejected: list[Rejected] = []
        self.label_report: LabelReport | None = None
        self.label_variant: LabelVariant | None = None
        self.device = self.accelerator.device
        self.autocast = autocast_dtype(config.precision, self.device)

    # ----------------------------------------------------------------- data
    def load(self, paths: list[str]) -> list:
        """Read and validate the training records (before any model is loaded: bad data fails
        fast), apply --label-transform / --high-quality-if and decide the run's label variant
        once from the whole training data: with any real-valued label every binary point
        becomes a score 0/1 (`alignkit.data.labels.as_scores`), so every batch trains the
        same objective (ULMA's continuous variant)."""
        records, report = self._read(paths, require_scores=True)
        records = as_kind(records, self.method.kind)
        self.label_variant = point_label_variant(records)
        if self.label_variant == "continuous":
            records = as_scores(records)
        self.label_report = report
        if report.scores:
            log.info(
                "labels: %d real-valued scores%s%s; label variant of the run: %s",
                report.scores,
                f", {report.transform!r} -> range {report.label_range}" if report.transform else "",
                f", {report.high_quality} high quality ({report.high_quality_if!r})"
                if report.high_quality_if
                else "",
                self.label_variant,
            )
        return records

    def load_eval(self, paths: list[str]) -> tuple[list, list[Pair]]:
        """Held-out records in the method's shape (labels as in training: same transform,
        rule and variant), plus the held-out pairs as pairs when the method trains on another
        shape (their implicit-reward metrics are reported too)."""
        records, _ = self._read(paths, require_scores=False)
        pairs = [] if self.method.kind == "pair" else [r for r in records if isinstance(r, Pair)]
        shaped = as_kind(records, self.method.kind)
        if self.label_variant == "continuous":
            shaped = as_scores(shaped)
        elif self.method.name == "ulma" and point_label_variant(shaped) == "continuous":
            raise AlignkitError(
                "--eval-data has real-valued labels but the training data only binary ones: "
                "ULMA's variant is chosen from the training data; evaluate on binary data"
            )
        return shaped, pairs

    def _read(self, paths: list[str], require_scores: bool) -> tuple[list, LabelReport]:
        """`load_records` (with --skip-invalid: rejected records are added to
        OUTPUT/rejected.jsonl) and the label options."""
        cfg = self.config
        records, summary = load_records(paths, cfg.data_format, skip_invalid=cfg.skip_invalid)
        if cfg.skip_invalid:
            self.rejected.extend(summary.rejected)
            if self.accelerator.is_main_process:
                write_rejected(self.output / REJECTED_FILE, self.rejected)
            if self.rejected:
                log.info("invalid records listed in %s", self.output / REJECTED_FILE)
        transform, rule = cfg.label_options()
        return apply_label_options(records, transform, rule, require_scores)

    def data_summary(self) -> dict[str, Any]:
        """The data part of summary.json: dropped records by reason, labels, label variant."""
        cfg = self.config
        out: dict[str, Any] = {"label_variant": self.label_variant}
        if self.label_report is not None and self.label_report.scores:
            out["labels"] = self.label_report.to_json()
        if cfg.skip_invalid:
            out["skip_invalid"] = {
                "rejected": len(self.rejected),
                "by_reason": rejected_by_reason(self.rejected),
                "file": REJECTED_FILE,
            }
        return out

    def prepare(
        self, records: list, tokenizer, scorer: SequenceScorer, with_ref: bool | None = None
    ) -> Prepared:
        """Tokenize and score the reference policy once (if the method needs it, or
        `with_ref`)."""
        cfg = self.config
        # plain-text prompts as chat messages unless --no-chat (TrainConfig; train-rm: as given)
        records = chat_records(records, tokenizer, getattr(cfg, "chat", False))
        encoded, summary = encode_records(records, tokenizer, cfg.max_length, cfg.truncation)
        positions = [e.index for e in encoded]  # --truncation drop leaves gaps
        encoded = [dataclasses.replace(e, index=i) for i, e in enumerate(encoded)]
        k = max(len(e.responses) for e in encoded)
        ref = None
        if self.method.needs_ref if with_ref is None else with_ref:
            ref = self.reference_logps(scorer, encoded, k, tokenizer.pad_token_id)
        description = summary.describe(cfg.max_length, cfg.truncation)
        return Prepared(encoded, ref, k, description, positions)

    def reference_logps(
        self, scorer: SequenceScorer, encoded: list, k: int, pad_id: int
    ) -> torch.Tensor:
        """Reference log-probs of `encoded` (rows indexed 0..n-1): [n, k], one pass of the
        reference policy before any update: the starting model (a LoRA model: its fresh
        adapter disabled, `load_training_model`)."""
        with reference_context(scorer.model):
            return score_dataset(
                scorer,
                encoded,
                batch_size=self.inference_batch(),
                pad_id=pad_id,
                device=self.device,
                autocast=self.autocast,
                rank=self.accelerator.process_index,
                world=self.accelerator.num_processes,
                gather=gather_object,
                desc="reference log-probs",
                k=k,
            )

    def inference_batch(self) -> int:
        """Examples per forward pass without gradients (reference log-probs, held-out
        metrics): twice the training batch, in length-sorted chunks (`sorted_chunks`)."""
        return self.config.batch_size * 2

    def prepare_eval(
        self, records: list, tokenizer, scorer: SequenceScorer, with_ref: bool | None = None
    ) -> Prepared:
        """Hook: `prepare` held-out data (a study shares it across its runs)."""
        return self.prepare(records, tokenizer, scorer, with_ref)

    def prepare_train(self, records: list, tokenizer, scorer: SequenceScorer) -> Prepared:
        """Hook: `prepare` the training data, reusing `OUTPUT/cache/train.pt` when it matches
        (a study hands every run its subset of data prepared once)."""
        cache = self.output / "cache" / "train.pt"
        key = _data_key(self.config, self.method)
        # the reference log-probs depend on the dtype "auto" resolves to on this machine
        key["precision"] = precision_choice(self.config.precision, self.device).stages["reference"]
        prepared = checkpoint.load_prepared(cache, key)
        if prepared is not None:
            log.info("reusing tokenized data and reference log-probs from %s", cache)
            return prepared
        prepared = self.prepare(records, tokenizer, scorer)
        if self.accelerator.is_main_process:
            checkpoint.save_prepared(cache, key, prepared)
        return prepared

    # ---------------------------------------------------------------- steps
    def build_tokenizer(self):
        """Hook: the model's tokenizer (a study keeps one for all its cells)."""
        return load_tokenizer(self.config.model, self.config.trust_remote_code)

    def build_scorer(self, tokenizer) -> nn.Module:
        """The module trained: wraps the model (`.model`) and scores PackedBatches.

        Subclasses (e.g. reward-model training) return another scorer with the same contract.
        """
        cfg = self.config
        model = load_training_model(
            cfg.model, lora=cfg.lora_settings(), trust_remote_code=cfg.trust_remote_code
        )
        if not getattr(cfg, "keep_dropout", True):  # TrainConfig: off unless --keep-dropout
            disable_dropout(model)
        return SequenceScorer(model)

    def start_model(self) -> str:
        """Hook: the model spec training starts from, which is also the reference (`base_model`
        of summary.json: a trained adapter belongs to it)."""
        return self.config.model

    def make_scorer(self, tokenizer) -> nn.Module:
        """`build_scorer`, with --gradient-checkpointing applied, on the training device."""
        with full_weights_loading(self.accelerator):  # never partitioned while loading
            scorer = self.build_scorer(tokenizer)
        if self.config.gradient_checkpointing:
            enable_gradient_checkpointing(scorer.model)
        return scorer.to(self.device)

    def param_groups(self, scorer: nn.Module) -> list[dict]:
        """AdamW's parameter groups: one, every trainable parameter at --lr (subclasses may
        give some parameters their own learning rate)."""
        return [{"params": [p for p in scorer.parameters() if p.requires_grad]}]

    def build_optimizer(self, scorer: nn.Module, total_steps: int):
        """AdamW over the trainable parameters and the configured warm-up + decay schedule."""
        cfg = self.config
        groups = self.param_groups(scorer)
        params = [p for group in groups for p in group["params"]]
        # the fused kernel (CPU and CUDA) updates all parameters in one pass: for SmolLM2-135M
        # on CPU 0.20 instead of 0.54 CPU-seconds per optimizer step (TRL's default, too)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
        scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        return optimizer, scheduler

    def policy_scores(self, scorer, batch: PackedBatch, q_diff) -> SeqLogps:
        """The packed forward pass of the policy over one micro-batch (subclasses may replace
        it: a reward model's scores)."""
        return scorer(
            batch,
            q_diff=q_diff,
            with_tokens=self.method.needs_tokens(self.objective),
            autocast=self.autocast,
        )

    def batch_loss(
        self, batch: PackedBatch, policy: SeqLogps, ref_table
    ) -> tuple[torch.Tensor, dict]:
        """The objective's loss and metrics of one micro-batch from the policy's scores."""
        ref = reference_for(batch, ref_table) if ref_table is not None else None
        return compute_loss(
            self.method, batch.objective_batch(self.method.kind, policy, ref), self.objective
        )

    def step_loss(self, scorer, batch: PackedBatch, ref_table, q_diff) -> tuple[torch.Tensor, dict]:
        """Loss and metrics of one micro-batch: `policy_scores`, then `batch_loss`."""
        return self.batch_loss(batch, self.policy_scores(scorer, batch, q_diff), ref_table)

    def evaluate(
        self, scorer, data: Prepared, pad_id: int, q_diff, pairs: Prepared | None = None
    ) -> dict[str, float]:
        """Mean objective metrics on held-out data (no gradients), prefixed `eval/`.

        `pairs` (held-out pairs of a method that trains on points or ranked lists) adds their
        DPO implicit-reward metrics under TRL's names (`eval/rewards/margins`, ...).
        """
        scorer.eval()
        with torch.no_grad():
            parts = self._eval_map(data, pad_id, lambda b: self._metrics(scorer, b, data, q_diff))
            logps = (
                self._eval_map(pairs, pad_id, lambda b: self._pair_logps(scorer, b, pairs))
                if pairs is not None
                else []
            )
        scorer.train()
        totals: dict[str, float] = {}
        for size, (metrics, _) in parts:
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value * size
        count = sum(size for size, _ in parts)
        out = {f"eval/{k}": v / max(count, 1) for k, v in totals.items()}
        self.held_out_pass(data, [kept for _, (_, kept) in parts])
        if pairs is not None:
            policy, ref = (
                torch.cat([torch.zeros(0, 2), *(p[j] for _, p in logps)]) for j in (0, 1)
            )
            out.update(pair_eval_metrics(policy, ref, self.objective.beta))
            self.held_out_pass(pairs, [p[2] for _, p in logps])
        return out

    def held_out_scores(self, data: Prepared, batch: PackedBatch, policy: SeqLogps) -> Any:
        """Hook: what to keep of the policy's scores of one batch of held-out `data` (None:
        nothing). `evaluate` gathers the kept values over ranks and hands them, in chunk
        order, to `held_out_pass`: a study cell keeps its per-pair outcomes from the same
        forward pass that gives its metrics."""
        return None

    def held_out_pass(self, data: Prepared, kept: list) -> None:
        """Hook: the values `held_out_scores` kept during one evaluation pass over `data`."""

    def _eval_map(self, data: Prepared, pad_id: int, work) -> list[tuple[int, Any]]:
        """`(examples, work(batch))` of every length-sorted chunk of `data`, in chunk order, on
        every rank (`shard_map`). The chunks are those of the reference pass: before any update
        the policy reproduces the reference bit for bit (margins exactly 0). In lockstep:
        every rank makes the same number of forward calls, since a sharded model (FSDP,
        ZeRO-3) gathers its parameters collectively in each one."""
        chunks = sorted_chunks([e.length for e in data.encoded], self.inference_batch())

        def run(chunk: list[int]) -> tuple[int, Any]:
            batch = collate([data.encoded[i] for i in chunk], pad_id, data.k).to(self.device)
            return len(chunk), work(batch)

        return shard_map(chunks, run, self.accelerator, lockstep=True)

    def _metrics(self, scorer, batch: PackedBatch, data: Prepared, q_diff) -> tuple[dict, Any]:
        """The objective's metrics of one held-out batch, and what `held_out_scores` keeps."""
        policy = self.policy_scores(scorer, batch, q_diff)
        _, metrics = self.batch_loss(batch, policy, data.ref)
        values = {name: float(value) for name, value in metrics.items()}
        return values, self.held_out_scores(data, batch, policy)

    def _pair_logps(
        self, scorer, batch: PackedBatch, pairs: Prepared
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(size, 2) policy and reference log-probs (sums over response tokens, as DPO) of a
        batch of held-out (chosen, rejected) pairs, and what `held_out_scores` keeps."""
        assert pairs.ref is not None  # held-out pairs are always prepared with_ref
        scores = scorer(batch, autocast=self.autocast)
        ref = reference_for(batch, pairs.ref).sum.float().cpu()
        return scores.sum.float().cpu(), ref, self.held_out_scores(pairs, batch, scores)

    # ------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        """Load, tokenize, score the reference, train, evaluate, save."""
        cfg, acc = self.config, self.accelerator
        self.claim_output()
        set_seed(cfg.seed)
        train_records = self.load(cfg.data)
        eval_records, eval_pair_records = (
            self.load_eval(cfg.eval_data) if cfg.eval_data else (None, [])
        )
        tokenizer = self.build_tokenizer()
        if getattr(cfg, "q_diff", ""):  # a Q_diff of another tokenizer fails before any pass
            load_q_diff(cfg.q_diff).check_tokenizer(tokenizer, cfg.model)
        scorer = self.make_scorer(tokenizer)
        pad_id = tokenizer.pad_token_id
        self.output.mkdir(parents=True, exist_ok=True)
        train = self.prepare_train(train_records, tokenizer, scorer)
        log.info("training data: %s", train.summary)
        held_out = self.prepare_eval(eval_records, tokenizer, scorer) if eval_records else None
        eval_pairs = (
            self.prepare_eval(eval_pair_records, tokenizer, scorer, with_ref=True)
            if eval_pair_records
            else None
        )
        q_diff = self._q_diff(train, tokenizer)  # DEFT's R_Q: guidance term and/or log
        steps_per_epoch = self.steps_per_epoch(len(train.encoded))
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
        scorer, optimizer, scheduler, start_step = self.start(scorer, total_steps)

        def evaluate() -> dict[str, float]:
            assert held_out is not None
            return self.evaluate(scorer, held_out, pad_id, q_diff, eval_pairs)

        result = TrainResult(self.output, total_steps)
        if held_out is not None and self.evaluate_before:
            # a resumed run logged them before it was interrupted (the model has moved since)
            result.eval_before = self.logged_eval_before() if start_step else evaluate()
            if not start_step:
                self.log_metrics(0, result.eval_before)
        scorer.train()  # from_pretrained returns eval mode (dropout: off unless --keep-dropout)
        progress = Progress(self, total_steps, start_step, steps_per_epoch, scheduler)
        saves = checkpoint.SaveSchedule(cfg.save_steps, cfg.save_minutes)
        for step in range(start_step, total_steps):
            metrics, n_tokens = self.train_step(
                scorer, optimizer, scheduler, train, step, pad_id, q_diff
            )
            done = progress.update(metrics, n_tokens)
            if held_out is not None and _every(cfg.eval_steps, done, total_steps):
                self.log_metrics(done, evaluate())
            if saves.due(acc, done, total_steps):
                self.save_checkpoint(done)
                saves.saved()
        result.final_metrics = progress.close()
        if held_out is not None:
            result.eval_after = evaluate()
        result.eval_after.update(self.after_training(scorer, tokenizer))
        if result.eval_after:
            self.log_metrics(total_steps, result.eval_after)
        if cfg.save_model:
            self.save_final(scorer, tokenizer, result)
        if self.owns_accelerator:
            acc.end_training()
        return result

    def after_training(self, scorer: nn.Module, tokenizer) -> dict[str, float]:
        """Hook: more held-out metrics of the trained model, logged with the evaluation after
        training (a study scores generations with a reward model here)."""
        return {}

    def logged_eval_before(self) -> dict[str, float]:
        """The held-out metrics before training of the step-0 row of metrics.jsonl (what a
        resumed run logged before it was interrupted; rounded as logged)."""
        path = self.output / "metrics.jsonl"
        for _, row in iter_jsonl(path) if path.exists() else ():
            if row.get("step") == 0:
                return {k: v for k, v in row.items() if k.startswith("eval/")}
        return {}

    def steps_per_epoch(self, n_examples: int) -> int:
        """Optimizer steps of one pass over `n_examples` (global batches / grad_accum)."""
        global_batch = self.config.batch_size * self.accelerator.num_processes
        return max(1, math.ceil(n_examples / global_batch) // self.config.grad_accum)

    def start(self, scorer: nn.Module, total_steps: int):
        """Optimizer and schedule, `accelerate.prepare`, resume, config.json and trackers:
        (scorer, optimizer, scheduler, first step)."""
        acc = self.accelerator
        optimizer, scheduler = self.build_optimizer(scorer, total_steps)
        if acc.distributed_type == DistributedType.DEEPSPEED:
            configure_deepspeed(acc, self.config)
        if acc.distributed_type == DistributedType.FSDP:
            fsdp_layers_to_wrap(acc.state.fsdp_plugin, scorer.model)
        # the scheduler is not `prepare`d: batches are sharded by hand, so it must step once per
        # optimizer step (accelerate would step it once per process)
        scorer, optimizer = acc.prepare(scorer, optimizer)
        self.scheduler = scheduler  # saved by alignkit itself (`checkpoint_state`)
        start_step = self.maybe_resume()
        self.write_run_config(to_dict(self.config), start_step)
        return scorer, optimizer, scheduler, start_step

    def write_run_config(self, config: dict[str, Any], start_step: int) -> None:
        """config.json (`config`: the run's options as a dict), metrics.jsonl cut back to the
        resumed step, and the trackers (given the flattened `config`)."""
        acc = self.accelerator
        config = config | precision_choice(self.config.precision, self.device).config_entries()
        if acc.is_main_process:
            atomic_write_text(self.output / "config.json", json.dumps(config, indent=2))
            truncate_metrics(self.output / "metrics.jsonl", start_step)
        if acc.log_with:
            _, init_kwargs = tracker_setup(self.config, str(self.output))
            acc.init_trackers(
                self.config.tracker_project, config=flat_config(config), init_kwargs=init_kwargs
            )

    def train_step(
        self, scorer, optimizer, scheduler, train: Prepared, step, pad_id, q_diff, loss_fn=None
    ):
        """One optimizer step over `grad_accum` micro-batches; returns (metrics, tokens).

        Each micro-batch's loss is `step_loss`, or `loss_fn(scorer, batch) -> (loss, metrics)`
        when given (the online methods pass their strategy's loss, with its rollout)."""
        cfg, acc = self.config, self.accelerator
        world, rank = acc.num_processes, acc.process_index
        global_batch = cfg.batch_size * world
        lengths = [e.length for e in train.encoded]
        n_batches = math.ceil(len(lengths) / global_batch)
        sums: dict[str, float] = {}
        tokens = 0
        # DeepSpeed accumulates itself: it divides the loss by --grad-accum (its
        # gradient_accumulation_steps, `configure_deepspeed`) and steps at the boundary we mark
        deepspeed = acc.distributed_type == DistributedType.DEEPSPEED
        for micro in range(cfg.grad_accum):
            g = step * cfg.grad_accum + micro
            epoch, within = divmod(g, n_batches)
            order = self._epoch_order(lengths, global_batch, epoch)
            idx = rank_slice(order[within], rank, world)
            batch = collate([train.encoded[i] for i in idx], pad_id, train.k).to(self.device)
            tokens += batch.n_tokens() * world
            sync = micro == cfg.grad_accum - 1
            if deepspeed:
                acc.gradient_state._set_sync_gradients(sync)
            with acc.no_sync(scorer) if not sync else contextlib.nullcontext():
                if loss_fn is None:
                    loss, metrics = self.step_loss(scorer, batch, train.ref, q_diff)
                else:
                    loss, metrics = loss_fn(scorer, batch)
                acc.backward(loss if deepspeed else loss / cfg.grad_accum)
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value) / cfg.grad_accum
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(scorer.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if world > 1:
            keys = sorted(sums)
            vec = torch.tensor([sums[k] for k in keys], device=self.device)
            vec = acc.reduce(vec, reduction="mean")
            sums = dict(zip(keys, vec.tolist(), strict=True))
        return sums, tokens

    _order_cache: tuple[int, list[list[int]]] | None = None
    # held-out metrics before training (a study's cells all start from the same model: once)
    evaluate_before = True

    def reset_batch_order(self) -> None:
        """Forget the cached batch order (call after replacing the training data)."""
        self._order_cache = None

    def _epoch_order(self, lengths, global_batch, epoch) -> list[list[int]]:
        if self._order_cache is None or self._order_cache[0] != epoch:
            batches = epoch_batches(lengths, global_batch, self.config.seed, epoch)
            self._order_cache = (epoch, batches)
        return self._order_cache[1]

    def q_diff_data(self, train: Prepared) -> tuple[list, str]:
        """Hook: the examples DEFT's Q_diff is counted on without --q-diff, and what they are
        (a study counts it on its whole pool, the data its `deft` selector filtered)."""
        return train.encoded, "the training data"

    def _q_diff(self, train: Prepared, tokenizer) -> RQSpec | None:
        """What the forward pass computes DEFT's R_Q with, or None when R_Q is not wanted.

        R_Q is computed with --deft-lambda != 0 (with gradient: the guidance term), and with
        --log-r-q or --q-diff at lambda = 0 (without gradient: only logged as deft/r_q). Q_diff
        is the file of --q-diff (the one `select deft` filtered with; its tokenizer must be the
        model's), else counted on the training data; the log says which.
        """
        cfg = self.config
        path = getattr(cfg, "q_diff", "")  # TrainConfig options; other verbs have no DEFT
        lam = self.objective.deft_lambda
        if not (lam or path or getattr(cfg, "log_r_q", False)):
            return None
        what = f"guidance term -{lam:g} * R_Q, R_Q logged" if lam else "R_Q logged, no gradient"
        if path:
            saved = load_q_diff(path)
            saved.check_tokenizer(tokenizer, cfg.model)
            q_diff = saved.q_diff
            log.info("DEFT Q_diff: loaded from %s (%s); %s", path, saved.describe(), what)
        else:
            examples, what_data = self.q_diff_data(train)
            dists = token_distributions(examples, len(tokenizer), tokenizer.all_special_ids)
            q_diff = dists.q_diff
            log.info(
                "DEFT Q_diff: computed from %s (%d preferred, %d dispreferred "
                "tokens; give --q-diff OUTPUT/%s of `select deft` to use the Q_diff the data "
                "was filtered with); %s",
                what_data,
                dists.pos_tokens,
                dists.neg_tokens,
                Q_DIFF_FILE,
                what,
            )
        form = getattr(cfg, "deft_form", "logprob")
        return RQSpec(q_diff.to(self.device), form=form, grad=lam != 0)

    # ------------------------------------------------------- logs and saving
    def save_extra(self, model_dir: Path) -> None:
        """Hook: write extra files into the model directory before it is moved into place."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        acc = self.accelerator
        if not acc.is_main_process:
            return
        row = {"step": step, **{k: round(float(v), 6) for k, v in metrics.items()}}
        with open(self.output / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        tqdm.write(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
        if acc.log_with:
            acc.log(metrics, step=step)

    scheduler: Any = None  # set by `start`
    guard_output = True  # False: the caller manages the run directory (a study's cells)

    def claim_output(self) -> None:
        """Before anything loads: refuse an --output that holds finished work of another run
        (`checkpoint.claim_output`), or delete it with --overwrite."""
        if self.guard_output:
            cfg = self.config
            checkpoint.claim_output(
                self.output,
                self.settings_digest(),
                cfg.resume,
                cfg.overwrite,
                self.accelerator.is_main_process,
            )
            self.accelerator.wait_for_everyone()

    def checkpoint_state(self) -> dict[str, Any]:
        """Hook: the objects (`state_dict` / `load_state_dict`) a checkpoint holds besides
        what `accelerate` holds, saved by alignkit as plain values and tensors."""
        return {"scheduler": self.scheduler}

    def settings_digest(self) -> str:
        """What a checkpoint must share with the run that resumes it: data, method, model."""
        cfg = self.config
        settings = {
            "method": self.method.name,
            "data": [absolute_if_local(path) for path in cfg.data],
            "model": spec_fingerprint(cfg.model),
            "lora": cfg.lora,
        }
        return digest(settings)

    def save_checkpoint(self, step: int) -> None:
        """A resumable checkpoint of everything `accelerate` holds (see `train.checkpoint`)."""
        checkpoint.save_checkpoint(
            self.accelerator,
            self.output,
            step,
            self.config.save_total_limit,
            self.checkpoint_state(),
            self.settings_digest(),
        )

    def maybe_resume(self) -> int:
        """With --resume, load the newest checkpoint; the step to continue from (0: none)."""
        if not self.config.resume:
            return 0
        return checkpoint.resume_latest(
            self.accelerator, self.output, self.checkpoint_state(), self.settings_digest()
        )

    def save_final(self, scorer, tokenizer, result: TrainResult) -> None:
        """OUTPUT/model (`save_pretrained` + `save_extra`) and OUTPUT/summary.json."""
        summary = {
            "steps": result.steps,
            "final_metrics": result.final_metrics,
            "eval_before": result.eval_before,
            "eval_after": result.eval_after,
            "base_model": absolute_if_local(self.start_model()),
            "lora": self.config.lora,
        }
        if self.label_variant is not None:  # data read by `load` (not the online loops)
            summary["data"] = self.data_summary()
        model = self.accelerator.unwrap_model(scorer).model
        state = checkpoint.full_state_dict(self.accelerator, scorer, prefix="model.")
        checkpoint.save_model_dir(
            self.accelerator, model, tokenizer, self.output, self.save_extra, summary, state
        )


class Progress:
    """The progress bar and the periodic training-metrics row of `Trainer.run`."""

    def __init__(self, trainer: Trainer, total: int, start: int, steps_per_epoch: int, scheduler):
        self.trainer, self.total, self.done = trainer, total, start
        self.steps_per_epoch, self.scheduler = steps_per_epoch, scheduler
        self.bar = tqdm(
            total=total,
            initial=start,
            desc=f"train {trainer.method.name}",
            disable=not trainer.accelerator.is_main_process,
        )
        self.t0, self.tokens = time.perf_counter(), 0
        self.metrics: dict[str, float] = {}

    def update(self, metrics: dict[str, float], n_tokens: int) -> int:
        """Count one optimizer step; log its metrics every --logging-steps. The steps done."""
        self.metrics, self.done = metrics, self.done + 1
        self.tokens += n_tokens
        self.bar.update(1)
        every = self.trainer.config.logging_steps
        if self.done % every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.t0
            metrics.update(
                lr=self.scheduler.get_last_lr()[0],
                epoch=self.done / self.steps_per_epoch,
                tokens_per_s=self.tokens / elapsed,
                elapsed_s=elapsed,
            )
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            self.trainer.log_metrics(self.done, metrics)
        return self.done

    def close(self) -> dict[str, float]:
        self.bar.close()
        return self.metrics


def _every(interval: int, done: int, total: int) -> bool:
    """A periodic action (eval, checkpoint) after step `done`: not at the last step, which
    the caller handles itself."""
    return bool(interval) and done % interval == 0 and done < total


def _data_key(cfg: DataTrainingOptions, method: Method) -> dict[str, Any]:
    """What the cached tokenized data depends on (file identity by size and mtime; an `hf:`
    dataset by its fingerprint)."""
    return {
        "files": [source_identity(path) for path in cfg.data],
        "model": spec_fingerprint(cfg.model),  # a model retrained in place is another model
        "lora": cfg.lora,
        "format": cfg.data_format,
        "skip_invalid": cfg.skip_invalid,
        "labels": [option.text if option else None for option in cfg.label_options()],
        "kind": method.kind,
        "needs_ref": method.needs_ref,
        "max_length": cfg.max_length,
        "truncation": cfg.truncation,
        "precision": cfg.precision,
        "chat": getattr(cfg, "chat", False),
    }
