"""One training loop for every objective (accelerate: CPU, one or many GPUs, DDP/FSDP/ZeRO).

The objective is a parameter (`alignkit.objectives.registry`); the loop does data, reference
log-probs (precomputed once and cached with the tokenized dataset), packed forward passes,
gradient accumulation, schedules, checkpoints with exact resume, logging and saving.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from alignkit.data import as_kind, load_records
from alignkit.data.batching import epoch_batches, rank_slice, sorted_chunks
from alignkit.data.records import Pair
from alignkit.data.tokenize import Encoded, encode_records
from alignkit.evaluation.metrics import implicit_reward_metrics
from alignkit.io import atomic_write_text
from alignkit.models import (
    autocast_dtype,
    enable_gradient_checkpointing,
    load_causal_lm,
    load_tokenizer,
    reference_context,
)
from alignkit.objectives import ObjectiveBatch, ObjectiveConfig, compute_loss, get_method
from alignkit.objectives.registry import Method
from alignkit.options import to_dict
from alignkit.scoring.dataset import reference_for, score_dataset
from alignkit.scoring.forward import PackedBatch, SequenceScorer, collate
from alignkit.train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A tokenized dataset with its precomputed reference log-probs."""

    encoded: list[Encoded]
    ref: torch.Tensor | None
    k: int
    summary: str = ""


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
    may override the hooks `build_scorer`, `step_loss`, `build_optimizer` and `save_extra`,
    and may call the building blocks `make_scorer` (`build_scorer` + gradient checkpointing,
    on the device), `train_step` (one optimizer step over `grad_accum`
    micro-batches), `reset_batch_order` (after changing the training data), `log_metrics`,
    `save_checkpoint` / `maybe_resume` (exact resume) and `save_final`.
    """

    def __init__(
        self,
        config: TrainConfig,
        accelerator: Accelerator | None = None,
        method: Method | None = None,
    ) -> None:
        self.config = config
        # `method` lets a subclass train an objective that is not in METHODS (reward models)
        self.method: Method = method or get_method(config.method)
        self.objective = ObjectiveConfig(
            beta=config.beta,
            reduction=config.reduction,  # type: ignore[arg-type]
            logz=config.logz,
            unlikelihood_form=config.unlikelihood_form,  # type: ignore[arg-type]
            rrhf_sft_weight=config.rrhf_sft_weight,
            deft_lambda=config.deft_lambda,
        )
        trackers = [t for t in config.report_to if t != "none"]
        self.owns_accelerator = accelerator is None  # a caller's accelerator is theirs to end
        # cpu=True without CUDA: that is what makes accelerate pick up torchrun's gloo ranks
        self.accelerator = accelerator or Accelerator(
            log_with=trackers or None,
            project_dir=str(config.output) if config.output else None,
            cpu=not torch.cuda.is_available(),
        )
        self.output = Path(config.output)
        self.device = self.accelerator.device
        self.autocast = autocast_dtype(config.precision, self.device)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- data
    def load(self, paths: list[str]) -> list:
        """Read and validate records (before any model is loaded: bad data fails fast)."""
        records, _ = load_records(paths, self.config.data_format)
        return as_kind(records, self.method.kind)

    def load_eval(self, paths: list[str]) -> tuple[list, list[Pair]]:
        """Held-out records in the method's shape, plus the held-out pairs as pairs when the
        method trains on another shape (their implicit-reward metrics are reported too)."""
        records, _ = load_records(paths, self.config.data_format)
        pairs = [] if self.method.kind == "pair" else [r for r in records if isinstance(r, Pair)]
        return as_kind(records, self.method.kind), pairs

    def prepare(
        self, records: list, tokenizer, scorer: SequenceScorer, with_ref: bool | None = None
    ) -> Prepared:
        """Tokenize and score the reference policy once (if the method needs it, or
        `with_ref`)."""
        cfg = self.config
        encoded, summary = encode_records(records, tokenizer, cfg.max_length, cfg.truncation)  # type: ignore[arg-type]
        k = max(len(e.responses) for e in encoded)
        ref = None
        if self.method.needs_ref if with_ref is None else with_ref:
            with reference_context(scorer.model):
                ref = score_dataset(
                    scorer,
                    encoded,
                    batch_size=cfg.batch_size * 2,
                    pad_id=tokenizer.pad_token_id,
                    device=self.device,
                    autocast=self.autocast,
                    rank=self.accelerator.process_index,
                    world=self.accelerator.num_processes,
                    gather=gather_object,
                    desc="reference log-probs",
                    k=k,
                )
        return Prepared(encoded, ref, k, summary.describe(cfg.max_length, cfg.truncation))  # type: ignore[arg-type]

    def _cached_prepare(self, records: list, tokenizer, scorer: SequenceScorer) -> Prepared:
        """`prepare` the training data, reusing `OUTPUT/cache/train.pt` when it matches."""
        cache = self.output / "cache" / "train.pt"
        key = _data_key(self.config, self.method)
        if cache.exists():
            saved = torch.load(cache, weights_only=False)
            if saved.get("key") == key:
                log.info("reusing tokenized data and reference log-probs from %s", cache)
                return saved["prepared"]
        prepared = self.prepare(records, tokenizer, scorer)
        if self.accelerator.is_main_process:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"key": key, "prepared": prepared}, tmp)
            os.replace(tmp, cache)
        return prepared

    # ---------------------------------------------------------------- steps
    def build_scorer(self, tokenizer) -> nn.Module:
        """The module trained: wraps the model (`.model`) and scores PackedBatches.

        Subclasses (e.g. reward-model training) return another scorer with the same contract.
        """
        cfg = self.config
        model = load_causal_lm(
            cfg.model, lora=cfg.lora_settings(), trust_remote_code=cfg.trust_remote_code
        )
        return SequenceScorer(model)

    def make_scorer(self, tokenizer) -> nn.Module:
        """`build_scorer`, with --gradient-checkpointing applied, on the training device."""
        scorer = self.build_scorer(tokenizer)
        if self.config.gradient_checkpointing:
            enable_gradient_checkpointing(scorer.model)
        return scorer.to(self.device)

    def build_optimizer(self, scorer: nn.Module, total_steps: int):
        """AdamW over the trainable parameters and the configured warm-up + decay schedule."""
        cfg = self.config
        params = [p for p in scorer.parameters() if p.requires_grad]
        # the fused kernel (CPU and CUDA) updates all parameters in one pass: for SmolLM2-135M
        # on CPU 0.20 instead of 0.54 CPU-seconds per optimizer step (TRL's default, too)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
        scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        return optimizer, scheduler

    def step_loss(self, scorer, batch: PackedBatch, ref_table, q_diff) -> tuple[torch.Tensor, dict]:
        """Loss and metrics of one micro-batch (subclasses may replace the objective)."""
        ob = self.objective_batch(scorer, batch, ref_table, q_diff)
        return compute_loss(self.method, ob, self.objective)

    def objective_batch(self, scorer, batch: PackedBatch, ref_table, q_diff) -> ObjectiveBatch:
        policy = scorer(
            batch,
            q_diff=q_diff,
            with_tokens=self.method.needs_tokens(self.objective),
            autocast=self.autocast,
        )
        ref = reference_for(batch, ref_table) if ref_table is not None else None
        return ObjectiveBatch(
            kind=self.method.kind,
            policy=policy,
            labels=batch.labels,
            binary=batch.binary,
            high_quality=batch.high_quality,
            mask=batch.mask,
            ref=ref,
        )

    def evaluate(
        self, scorer, data: Prepared, pad_id: int, q_diff, pairs: Prepared | None = None
    ) -> dict[str, float]:
        """Mean objective metrics on held-out data (no gradients), prefixed `eval/`.

        `pairs` (held-out pairs of a method that trains on points or ranked lists) adds their
        DPO implicit-reward metrics under TRL's names (`eval/rewards/margins`, ...).
        """
        totals: dict[str, float] = {}
        n = 0
        scorer.eval()
        with torch.no_grad():
            for batch, size in self._eval_batches(data, pad_id):
                _, metrics = self.step_loss(scorer, batch, data.ref, q_diff)
                for name, value in metrics.items():
                    totals[name] = totals.get(name, 0.0) + float(value) * size
                n += size
            logps = self._pair_logps(scorer, pairs, pad_id) if pairs is not None else None
        scorer.train()
        gathered = gather_object([(totals, n, logps)])
        count = sum(c for _, c, _ in gathered)
        merged: dict[str, float] = {}
        for part_totals, _, _ in gathered:
            for name, value in part_totals.items():
                merged[name] = merged.get(name, 0.0) + value
        out = {f"eval/{k}": v / max(count, 1) for k, v in merged.items()}
        if pairs is not None:
            policy, ref = (torch.cat([g[2][j] for g in gathered]) for j in (0, 1))
            out.update(pair_eval_metrics(policy, ref, self.config.beta))
        return out

    def _eval_batches(self, data: Prepared, pad_id: int):
        """This rank's share of `data` as (batch, examples) in the same length-sorted chunks as
        the reference pass: before any update the policy reproduces the reference bit for bit
        (margins exactly 0)."""
        acc = self.accelerator
        chunks = sorted_chunks([e.length for e in data.encoded], self.config.batch_size * 2)
        for chunk in chunks[acc.process_index :: acc.num_processes]:
            part = [data.encoded[i] for i in chunk]
            yield collate(part, pad_id, data.k).to(self.device), len(part)

    def _pair_logps(
        self, scorer, pairs: Prepared, pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 2) policy and reference log-probs (sums over response tokens, as DPO) of this
        rank's held-out (chosen, rejected) pairs."""
        policy, ref = [torch.zeros(0, 2)], [torch.zeros(0, 2)]
        for batch, _ in self._eval_batches(pairs, pad_id):
            policy.append(scorer(batch, autocast=self.autocast).sum.float().cpu())
            ref.append(reference_for(batch, pairs.ref).sum.float().cpu())  # type: ignore[arg-type]
        return torch.cat(policy), torch.cat(ref)

    # ------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        set_seed(cfg.seed)
        train_records = self.load(cfg.data)
        eval_records, eval_pair_records = (
            self.load_eval(cfg.eval_data) if cfg.eval_data else (None, [])
        )
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        scorer = self.make_scorer(tokenizer)
        pad_id = tokenizer.pad_token_id
        self.output.mkdir(parents=True, exist_ok=True)

        train = self._cached_prepare(train_records, tokenizer, scorer)
        log.info("training data: %s", train.summary)
        evald = self.prepare(eval_records, tokenizer, scorer) if eval_records else None
        eval_pairs = (
            self.prepare(eval_pair_records, tokenizer, scorer, with_ref=True)
            if eval_pair_records
            else None
        )
        q_diff = self._q_diff(train, tokenizer, len(tokenizer)) if cfg.deft_lambda else None

        world = acc.num_processes
        global_batch = cfg.batch_size * world
        n_batches = math.ceil(len(train.encoded) / global_batch)
        steps_per_epoch = max(1, n_batches // cfg.grad_accum)
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))

        optimizer, scheduler = self.build_optimizer(scorer, total_steps)
        # the scheduler is not `prepare`d: batches are sharded by hand, so it must step once per
        # optimizer step (accelerate would step it once per process)
        scorer, optimizer = acc.prepare(scorer, optimizer)
        acc.register_for_checkpointing(scheduler)
        start_step = self.maybe_resume()
        if acc.is_main_process:
            atomic_write_text(self.output / "config.json", json.dumps(to_dict(cfg), indent=2))
            _truncate_metrics(self.output / "metrics.jsonl", start_step)
        if acc.log_with:
            acc.init_trackers("alignkit", config=_flat_config(cfg))

        result = TrainResult(self.output, total_steps)
        if evald is not None:
            result.eval_before = self.evaluate(scorer, evald, pad_id, q_diff, eval_pairs)
            self.log_metrics(0, result.eval_before)

        scorer.train()  # from_pretrained returns eval mode; dropout (e.g. LoRA's) must be on
        bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc=f"train {cfg.method}",
            disable=not acc.is_main_process,
        )
        t0, tokens = time.perf_counter(), 0
        metrics: dict[str, float] = {}
        for step in range(start_step, total_steps):
            metrics, n_tok = self.train_step(
                scorer, optimizer, scheduler, train, step, pad_id, q_diff
            )
            tokens += n_tok
            bar.update(1)
            done = step + 1
            if done % cfg.logging_steps == 0 or done == total_steps:
                elapsed = time.perf_counter() - t0
                metrics.update(
                    lr=scheduler.get_last_lr()[0],
                    epoch=done / steps_per_epoch,
                    tokens_per_s=tokens / elapsed,
                    elapsed_s=elapsed,
                )
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                self.log_metrics(done, metrics)
            if (
                evald is not None
                and cfg.eval_steps
                and done % cfg.eval_steps == 0
                and done < total_steps
            ):
                self.log_metrics(done, self.evaluate(scorer, evald, pad_id, q_diff, eval_pairs))
            if cfg.save_steps and done % cfg.save_steps == 0 and done < total_steps:
                self.save_checkpoint(done)
        bar.close()
        result.final_metrics = metrics
        if evald is not None:
            result.eval_after = self.evaluate(scorer, evald, pad_id, q_diff, eval_pairs)
            self.log_metrics(total_steps, result.eval_after)
        if cfg.save_model:
            self.save_final(scorer, tokenizer, result)
        if self.owns_accelerator:
            acc.end_training()
        return result

    def train_step(self, scorer, optimizer, scheduler, train: Prepared, step, pad_id, q_diff):
        """One optimizer step over `grad_accum` micro-batches; returns (metrics, tokens)."""
        cfg, acc = self.config, self.accelerator
        world, rank = acc.num_processes, acc.process_index
        global_batch = cfg.batch_size * world
        lengths = [e.length for e in train.encoded]
        n_batches = math.ceil(len(lengths) / global_batch)
        sums: dict[str, float] = {}
        tokens = 0
        for micro in range(cfg.grad_accum):
            g = step * cfg.grad_accum + micro
            epoch, within = divmod(g, n_batches)
            order = self._epoch_order(lengths, global_batch, epoch)
            idx = rank_slice(order[within], rank, world)
            batch = collate([train.encoded[i] for i in idx], pad_id, train.k).to(self.device)
            tokens += batch.n_tokens() * world
            sync = micro == cfg.grad_accum - 1
            ctx = acc.no_sync(scorer) if not sync else _null()
            with ctx:
                loss, metrics = self.step_loss(scorer, batch, train.ref, q_diff)
                acc.backward(loss / cfg.grad_accum)
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

    def reset_batch_order(self) -> None:
        """Forget the cached batch order (call after replacing the training data)."""
        self._order_cache = None

    def _epoch_order(self, lengths, global_batch, epoch) -> list[list[int]]:
        if self._order_cache is None or self._order_cache[0] != epoch:
            batches = epoch_batches(lengths, global_batch, self.config.seed, epoch)
            self._order_cache = (epoch, batches)
        return self._order_cache[1]

    def _q_diff(self, train: Prepared, tokenizer, vocab: int) -> torch.Tensor:
        from alignkit.select.deft import q_diff_from_encoded

        return q_diff_from_encoded(train.encoded, vocab, tokenizer.all_special_ids).to(self.device)

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

    def _checkpoints(self) -> list[Path]:
        root = self.output / "checkpoints"
        found = [p for p in root.glob("step-*") if (p / "alignkit_state.json").exists()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def save_checkpoint(self, step: int) -> None:
        """accelerate state (weights, optimizer, scheduler, RNG) written atomically."""
        acc = self.accelerator
        root = self.output / "checkpoints"
        final, tmp = root / f"step-{step}", root / f".tmp-step-{step}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            atomic_write_text(tmp / "alignkit_state.json", json.dumps({"step": step}))
            os.replace(tmp, final)
            for old in self._checkpoints()[: -self.config.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def maybe_resume(self) -> int:
        if not self.config.resume:
            return 0
        found = self._checkpoints()
        if not found:
            log.info("--resume: no checkpoint in %s, starting from scratch", self.output)
            return 0
        latest = found[-1]
        self.accelerator.load_state(str(latest))
        step = json.loads((latest / "alignkit_state.json").read_text())["step"]
        log.info("resumed from %s (step %d)", latest, step)
        return step

    def save_final(self, scorer, tokenizer, result: TrainResult) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        model = acc.unwrap_model(scorer).model
        if acc.is_main_process:
            tmp = self.output / ".tmp-model"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            self.save_extra(tmp)
            final = self.output / "model"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            summary = {
                "steps": result.steps,
                "final_metrics": result.final_metrics,
                "eval_before": result.eval_before,
                "eval_after": result.eval_after,
                "base_model": _absolute_if_local(self.config.model),
                "lora": self.config.lora,
            }
            atomic_write_text(self.output / "summary.json", json.dumps(summary, indent=2))
        acc.wait_for_everyone()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _data_key(cfg: TrainConfig, method: Method) -> dict[str, Any]:
    """What the cached tokenized data depends on (file identity by size and mtime)."""
    files = []
    for path in cfg.data:
        st = os.stat(path)
        files.append((os.path.abspath(path), st.st_size, int(st.st_mtime_ns)))
    return {
        "files": files,
        "model": cfg.model,
        "lora": cfg.lora,
        "format": cfg.data_format,
        "kind": method.kind,
        "needs_ref": method.needs_ref,
        "max_length": cfg.max_length,
        "truncation": cfg.truncation,
        "precision": cfg.precision,
    }


def _absolute_if_local(name: str) -> str:
    """A local model path made absolute (so run directories work from anywhere)."""
    return os.path.abspath(name) if os.path.exists(name) else name


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget logged rows past the checkpoint; on a fresh run, start empty."""
    if not path.exists():
        return
    keep = []
    if step > 0:
        for line in path.read_text().splitlines():
            if line.strip() and json.loads(line).get("step", 0) <= step:
                keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _flat_config(cfg: TrainConfig) -> dict[str, Any]:
    return {
        k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in to_dict(cfg).items()
    }


def pair_eval_metrics(policy: torch.Tensor, ref: torch.Tensor, beta: float) -> dict[str, float]:
    """`alignkit.evaluation.metrics.implicit_reward_metrics` of (n, 2) held-out (chosen,
    rejected) log-probs under TRL's names: eval/rewards/{chosen,rejected,margins,accuracies}
    and eval/rewards/dpo_loss."""
    if policy.numel() == 0:
        return {}
    values = implicit_reward_metrics(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], beta)
    names = {
        "reward_chosen": "chosen",
        "reward_rejected": "rejected",
        "margin": "margins",
        "accuracy": "accuracies",
        "dpo_loss": "dpo_loss",
    }
    return {f"eval/rewards/{names[k]}": v for k, v in values.items()}
