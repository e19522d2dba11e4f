"""The online loop shared by PLE, RAFT, online RRHF, RLOO and PPO: generate -> score -> build
-> train.

`OnlineTrainer` subclasses the core `Trainer` and reuses its pieces rather than copying them:
model loading (`build_scorer`), AdamW + schedule (`build_optimizer`), the optimizer step
with gradient accumulation, DDP no-sync and metric reduction (`train_step`, given the
strategy's loss), the steps of a pass (`steps_per_epoch`), checkpoints with exact resume
(`save_checkpoint` / `maybe_resume`), config.json and trackers (`write_run_config`),
metrics.jsonl (`log_metrics`, `logged_eval_before`) and the final `save_pretrained`
(`save_final`). Records are built as `Pair`/`Multi`/`Point` and tokenized by
`encode_records`, so a batch is the same `PackedBatch` (K responses in one packed row) as in
offline training. A strategy (`online/samples.py`: `Strategy`; `ple`, `ranked`, `rloo`,
`ppo`) supplies what differs per method.

Per iteration i (1-based in files and logs): the queries of the iteration are split over the
processes, each samples and scores its share, the samples are gathered so every process
holds the same training set, the strategy's rollout pass runs (RLOO, PPO: a no-gradient
`Rollout` value; the others: None), and the policy takes `steps_per_epoch(examples)`
optimizer steps on it, each micro-batch's loss being `strategy.loss(scorer, batch, rollout)`
(PPO repeats the pass `num_ppo_epochs` times unless `strategy.stop_early`). Then the strategy's
state advances (PLE: tau <- alpha * tau) and a checkpoint (model with PPO's value head,
optimizer, scheduler, RNG, tau, replay buffer) is saved, so a killed run resumes at the
iteration it was in. In metrics.jsonl, `step` is the number of completed
iterations (0 = the evaluation before training).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from torch import nn

from alignkit.data.batching import rank_slice
from alignkit.data.queries import Query, QuerySet, iteration_indices, load_queries
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.inference.generation import Completion, eos_token_ids
from alignkit.inference.generators import (
    Generator,
    HFGenerator,
    VLLMGenerator,
    choose_backend,
    engine_kwargs,
    vllm_available,
)
from alignkit.inference.remote import EndpointGenerator
from alignkit.io import atomic_write_jsonl
from alignkit.models import generation_dtype, load_tokenizer, resolve_model
from alignkit.objectives import ObjectiveConfig
from alignkit.online.config import (
    OnlineConfig,
    PLEConfig,
    PPOConfig,
    RAFTConfig,
    RLOOConfig,
    RRHFOnlineConfig,
)
from alignkit.online.ple import PLEStrategy
from alignkit.online.policy import initial_sft, load_policy, policy_source
from alignkit.online.ppo import PPOStrategy
from alignkit.online.principles import load_principle
from alignkit.online.ranked import RAFTStrategy, RRHFStrategy
from alignkit.online.rloo import RLOOStrategy
from alignkit.online.samples import Metrics, RolloutInputs, Sampled, Strategy
from alignkit.rewards.heldout import heldout_metrics, heldout_rows
from alignkit.rewards.loading import RewardModel, ScoreFn, load_reward_model
from alignkit.runs import absolute_if_local, digest, resolve_model_spec, spec_fingerprint
from alignkit.train.checkpoint import Prepared
from alignkit.train.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)

RewardSpec = str | ScoreFn | RewardModel


def make_strategy(config: OnlineConfig, objective: ObjectiveConfig) -> Strategy:
    """The strategy of a config's method, with its options."""
    if isinstance(config, PLEConfig):
        return PLEStrategy(
            load_principle(config.principle),
            config.principle_mode,
            config.tau0,
            config.alpha,
            config.rank_form,
            config.reduction,
            rank_loss=config.rank_loss,
            weighted_sft=config.weighted_sft,
        )
    if isinstance(config, RAFTConfig):
        return RAFTStrategy(config.num_samples, config.selection, config.top_fraction, objective)
    if isinstance(config, RRHFOnlineConfig):
        return RRHFStrategy(config.num_samples, objective)
    if isinstance(config, RLOOConfig):
        return RLOOStrategy(config.num_samples, config.kl_coef, config.temperature, objective)
    if isinstance(config, PPOConfig):
        return PPOStrategy(config.num_samples, config.ppo_settings(), objective)
    raise AlignkitError(f"no online method for {type(config).__name__}")


def sampled_token_ids(group: Sequence[Completion]) -> list[tuple[int, ...]]:
    """The sampled ids of a query's completions, or [] (train on re-tokenized text) when the
    generator returned none. An empty answer (EOS at once) has ids () and text "": it keeps
    them, and does not cost the other answers of its group theirs."""
    if all(c.token_ids or not c.text for c in group):
        return [c.token_ids for c in group]
    return []


def missing_eos_penalised(
    scores: Sequence[float], finished: Sequence[bool], penalty: float
) -> list[float]:
    """--missing-eos-penalty (TRL's missing_eos_penalty): score - penalty for every answer cut
    at --max-new-tokens before EOS, the score itself for the others."""
    return [s - (0.0 if done else penalty) for s, done in zip(scores, finished, strict=True)]


def sample_seed(seed: int, iteration: int, rank: int) -> int:
    """The sampling seed of one process in one iteration (a resumed run repeats it)."""
    return seed + 100_003 * (iteration + 1) + rank


class LoopState:
    """What a checkpoint must hold besides weights, optimizer and scheduler: plain values
    saved by alignkit inside the same atomic checkpoint (`OnlineTrainer.checkpoint_state`)."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.iteration = 0  # iterations completed
        self.optimizer_steps = 0
        self.buffer: list[dict[str, Any]] = []  # --replay all: earlier iterations' samples

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "optimizer_steps": self.optimizer_steps,
            "buffer": list(self.buffer),
            "strategy": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.optimizer_steps = int(state["optimizer_steps"])
        self.buffer = list(state["buffer"])
        self.strategy.load_state_dict(state["strategy"])


@dataclass
class Session:
    """Everything an iteration uses, set up once per run."""

    tokenizer: Any
    scorer: nn.Module  # prepared by accelerate (possibly DDP-wrapped)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: Generator
    reward: RewardModel
    queries: QuerySet
    eval_queries: list[Query]
    eval_generator: Generator | None = None  # None: `generator`

    @property
    def evaluator(self) -> Generator:
        """Who answers the held-out queries: the policy itself when a server that is never
        updated samples (its answers would measure the server's model, not the policy)."""
        return self.eval_generator or self.generator

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


class OnlineTrainer(Trainer):
    """Runs an online method; `run()` does the whole job (initial SFT included)."""

    def __init__(
        self,
        config: OnlineConfig,
        reward: RewardSpec | None = None,
        generator: Generator | None = None,
        accelerator: Accelerator | None = None,
    ) -> None:
        if reward is None and not config.reward_model:
            raise AlignkitError("no reward model: give --reward-model DIR|HF_ID|module:function")
        super().__init__(config.train_config(), accelerator)
        self.online = config
        self.reward_spec: RewardSpec = reward if reward is not None else config.reward_model
        self.strategy = make_strategy(config, self.objective)
        self.state = LoopState(self.strategy)
        self._injected_generator = generator

    # ------------------------------------------------------------- the policy
    def policy_source(self) -> str:
        """The model spec the loop starts from (the initial SFT's run if any)."""
        return policy_source(self.online, self.output)

    def start_model(self) -> str:
        return self.policy_source()

    def build_scorer(self, tokenizer) -> nn.Module:
        return self.strategy.make_scorer(load_policy(self.online, self.policy_source()))

    def save_extra(self, model_dir: Path) -> None:
        self.strategy.save_extra(model_dir)  # PPO: the value head

    def param_groups(self, scorer: nn.Module) -> list[dict[str, Any]]:
        """The strategy's optimizer groups (PPO: the value head at --critic-lr)."""
        return self.strategy.param_groups(scorer) or super().param_groups(scorer)

    # ------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        # the scheduler is `prepare`d here: accelerate saves it (read with weights_only)
        return {"loop": self.state}

    def settings_digest(self) -> str:
        cfg = self.online
        settings = {
            "method": type(cfg).__name__,
            "queries": absolute_if_local(cfg.queries),
            "sft_data": [absolute_if_local(path) for path in cfg.sft_data],
            "model": spec_fingerprint(cfg.model),
            "reward": cfg.reward_model,  # empty: a reward given in code
            "lora": cfg.lora,
        }
        return digest(settings)

    # ------------------------------------------------------------------ setup
    def planned_steps(self) -> int:
        """Optimizer steps of the whole run (for the learning-rate schedule)."""
        cfg = self.online
        total = 0
        for it in range(cfg.iterations):
            n_queries = cfg.queries_per_iteration * (it + 1 if cfg.replay == "all" else 1)
            examples = self.strategy.examples(n_queries)
            total += self.steps_per_epoch(examples) * self.strategy.epochs
        return total

    def build_generator(self, scorer: nn.Module, tokenizer) -> Generator:
        if self._injected_generator is not None:
            return self._injected_generator
        acc, cfg = self.accelerator, self.online
        if cfg.remote:
            return self.remote_generator()
        policy = acc.unwrap_model(scorer).model
        backend = choose_backend(
            cfg.generator, acc.num_processes, torch.cuda.is_available(), vllm_available()
        )
        log.info("generation backend: %s", backend)
        if backend == "hf":
            dtype = generation_dtype(cfg.precision, self.device)
            return HFGenerator(policy, tokenizer, dtype, acc.is_main_process)
        engine = engine_kwargs(  # the starting architecture; `sync` pushes the policy's weights
            resolve_model(resolve_model_spec(self.policy_source()).root_weights),
            cfg.vllm_gpu_memory_utilization,
            cfg.seed,
            cfg.max_length + cfg.max_new_tokens,
        )
        return VLLMGenerator(tokenizer, engine)  # weights pushed by `sync` in `run`

    def remote_generator(self) -> EndpointGenerator:
        """--endpoint URL: a server samples, with its own weights; `sync` loads the trained
        adapter into it (--generator-sync-url) or warns that the samples are off-policy."""
        cfg, acc = self.online, self.accelerator
        token = [uuid.uuid4().hex[:8]]  # a fresh adapter name per run (a resumed one too)
        if acc.num_processes > 1:
            broadcast_object_list(token)
        generator = EndpointGenerator(
            cfg.client(model_flag="--generator-model"),
            cfg.generator_model or None,
            concurrency=cfg.concurrency,
            sync_url=cfg.generator_sync_url or None,
            sync_dir=self.output / "sync",
            run_name=f"alignkit-{token[0]}",
            main=acc.is_main_process,
            barrier=acc.wait_for_everyone,
        )
        log.info("generation: %s (sync: %s)", generator.label, cfg.generator_sync_url or "none")
        return generator

    def setup(self) -> Session:
        """Load queries, reward, policy and generator; prepare with accelerate;
        `run` then resumes from the newest checkpoint (`checkpoint_state`: the loop state)."""
        cfg, acc = self.online, self.accelerator
        if cfg.queries_per_iteration % acc.num_processes:
            raise AlignkitError(
                f"--queries-per-iteration ({cfg.queries_per_iteration}) must be a multiple of "
                f"the number of processes ({acc.num_processes})"
            )
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        queries = load_queries(cfg.queries, tokenizer, cfg.chat, cfg.max_prompt_tokens)
        log.info("queries: %s", queries.describe(cfg.max_prompt_tokens))
        eval_queries: list[Query] = []
        if cfg.eval_queries:
            eval_queries = load_queries(cfg.eval_queries, tokenizer, cfg.chat, 0).queries
        reward = load_reward_model(
            self.reward_spec,
            batch_size=cfg.reward_batch_size,
            device=self.device,
            precision=cfg.precision,
            trust_remote_code=cfg.trust_remote_code,
            label=cfg.reward_label,
            output=cfg.reward_output,
        )
        scorer = self.make_scorer(tokenizer)
        self.strategy.init_critic(scorer, reward)  # PPO: the value head's start
        # RLOO, PPO: the reference is the starting policy (the fresh adapter disabled, else a
        # frozen copy; `load_training_model`)
        self.strategy.attach_reference(scorer)
        optimizer, scheduler = self.build_optimizer(scorer, self.planned_steps())
        scorer, optimizer, scheduler = acc.prepare(scorer, optimizer, scheduler)
        generator = self.build_generator(scorer, tokenizer)
        session = Session(
            tokenizer, scorer, optimizer, scheduler, generator, reward, queries, eval_queries
        )
        if eval_queries and cfg.remote and not cfg.generator_sync_url:
            policy = acc.unwrap_model(scorer).model
            dtype = generation_dtype(cfg.precision, self.device)
            session.eval_generator = HFGenerator(policy, tokenizer, dtype, False)
        return session

    # ------------------------------------------------------------- the steps
    def sample(self, session: Session, iteration: int) -> list[Sampled]:
        """This iteration's queries, sampled and scored on every process, gathered."""
        cfg, acc = self.online, self.accelerator
        idx = iteration_indices(
            len(session.queries.queries), cfg.queries_per_iteration, cfg.seed, iteration
        )
        mine = [
            session.queries.queries[i].prompt
            for i in rank_slice(idx, acc.process_index, acc.num_processes)
        ]
        sampling = cfg.sampling(sample_seed(cfg.seed, iteration, acc.process_index))
        responses = self.strategy.generate(mine, session.generator, sampling)
        flat_prompts = [p for p, group in zip(mine, responses, strict=True) for _ in group]
        flat = [c.text for group in responses for c in group]
        finished = [c.finished for group in responses for c in group]
        rewards = session.reward.score(flat_prompts, flat)
        scores = iter(missing_eos_penalised(rewards, finished, cfg.missing_eos_penalty))
        samples = [
            Sampled(
                p,
                [c.text for c in group],
                [next(scores) for _ in group],
                [c.finished for c in group],
                sampled_token_ids(group),
            )
            for p, group in zip(mine, responses, strict=True)
        ]
        return list(gather_object(samples))

    def train_on(self, session: Session, samples: Sequence[Sampled]) -> dict[str, float]:
        """The rollout of the records built from `samples`, then one pass of optimizer steps
        over them (PPO: `num_ppo_epochs` passes), each micro-batch's loss `strategy.loss`."""
        records, metrics = self.strategy.build(samples)
        encoded, summary = encode_records(
            records, session.tokenizer, self.config.max_length, "truncate"
        )
        if summary.prompt_truncated or summary.response_truncated:
            log.info("training data: %s", summary.describe(self.config.max_length, "truncate"))
        eos = eos_token_ids(session.tokenizer)
        encoded = self.strategy.training_tokens(encoded, samples, eos, self.config.max_length)
        data = Prepared(encoded, None, max(len(e.responses) for e in encoded))
        session.scorer.train()  # from_pretrained gives eval mode; dropout (LoRA's) must be on
        self.reset_batch_order()  # new data: the core recomputes its batch order
        rollout, rollout_metrics = self.strategy.rollout(self.rollout_inputs(session, data))
        metrics.update(rollout_metrics)
        loss = functools.partial(self.strategy.loss, rollout=rollout, autocast=self.autocast)
        steps = self.steps_per_epoch(len(encoded)) * self.strategy.epochs
        per_step = []
        for step in range(steps):
            step_metrics, _ = self.train_step(
                session.scorer,
                session.optimizer,
                session.scheduler,
                data,
                step,
                session.pad_id,
                None,
                loss_fn=loss,
            )
            per_step.append(step_metrics)
            if self.strategy.stop_early(step_metrics):
                break
        self.state.optimizer_steps += len(per_step)
        metrics.update(_average(per_step))
        metrics.update(
            {"train/steps": float(len(per_step)), "lr": session.scheduler.get_last_lr()[0]}
        )
        return metrics

    def rollout_inputs(self, session: Session, data: Prepared) -> RolloutInputs:
        acc = self.accelerator
        return RolloutInputs(
            acc.unwrap_model(session.scorer),
            data.encoded,
            data.k,
            session.pad_id,
            self.device,
            self.autocast,
            self.config.batch_size,
            acc.process_index,
            acc.num_processes,
        )

    def replayed(self, samples: list[Sampled]) -> list[Sampled]:
        """What an iteration trains on: its samples, after earlier ones with --replay all."""
        return [Sampled.from_dict(row) for row in self.state.buffer] + samples

    def end_iteration(self, session: Session, iteration: int, samples: list[Sampled]) -> Metrics:
        """Keep the samples for replay, push the weights to the generator, advance the state;
        the run's counters."""
        if self.online.replay == "all":
            self.state.buffer.extend(x.to_dict() for x in samples)
        session.generator.sync(self.accelerator.unwrap_model(session.scorer).model)
        self.strategy.end_iteration()
        self.state.iteration = iteration + 1
        return {
            "optimizer_steps": float(self.state.optimizer_steps),
            "queries/kept": float(len(session.queries.queries)),
            "queries/dropped": float(session.queries.dropped),
        }

    # ------------------------------------------------------------- evaluation
    def evaluate_reward(self, session: Session, step: int) -> dict[str, float]:
        """Held-out reward of greedy unguided responses (batches shared over processes)."""
        rows = heldout_rows(
            session.eval_queries,
            session.evaluator,
            session.reward,
            self.online.sampling(),
            state=self.accelerator,
        )
        self._write(f"eval/iter-{step:04d}.jsonl", rows)
        return heldout_metrics(rows)

    # ------------------------------------------------------------------- run
    def run(self) -> TrainResult:
        """Initial SFT, setup and resume; then per iteration sample -> `train_on` (rollout and
        optimizer steps) -> evaluate, log, checkpoint; then the final evaluation and model."""
        cfg, acc = self.online, self.accelerator
        self.claim_output()
        set_seed(cfg.seed)
        self.output.mkdir(parents=True, exist_ok=True)
        if cfg.sft_data:
            initial_sft(cfg, self.output)
        session = self.setup()
        start = self.maybe_resume()
        if start != self.state.iteration:
            raise AlignkitError(
                f"checkpoint of iteration {start} holds the state of iteration {self.state.iteration}"
            )
        session.generator.sync(acc.unwrap_model(session.scorer).model)  # resumed weights
        self.write_run_config(cfg.public_dict(), start)
        result = TrainResult(self.output, 0)
        result.eval_before = self._eval_before(session, start)
        for it in range(start, cfg.iterations):
            t0 = time.perf_counter()
            samples = self.sample(session, it)
            t1 = time.perf_counter()
            self._write(f"generations/iter-{it + 1:04d}.jsonl", self.strategy.rows(samples))
            metrics = self.strategy.sample_metrics(samples)
            metrics.update(self.train_on(session, self.replayed(samples)))
            counters = self.end_iteration(session, it, samples)
            metrics.update({"time/generate_s": t1 - t0, "time/train_s": time.perf_counter() - t1})
            metrics.update(counters)
            done = it + 1
            if (
                session.eval_queries
                and cfg.eval_every
                and done % cfg.eval_every == 0
                and done < cfg.iterations
            ):
                metrics.update(self.evaluate_reward(session, done))
            self.log_metrics(done, metrics)
            result.final_metrics = metrics
            if cfg.save_every and done % cfg.save_every == 0 and done < cfg.iterations:
                self.save_checkpoint(done)
        result.steps = self.state.optimizer_steps
        if session.eval_queries:
            result.eval_after = self.evaluate_reward(session, cfg.iterations)
            self.log_metrics(cfg.iterations, result.eval_after)
        if cfg.save_model:
            self.save_final(session.scorer, session.tokenizer, result)
        if self.owns_accelerator:
            acc.end_training()
        return result

    def _eval_before(self, session: Session, start: int) -> dict[str, float]:
        if not session.eval_queries or not self.evaluate_before:
            return {}
        if start == 0:
            metrics = self.evaluate_reward(session, 0)
            self.log_metrics(0, metrics)
            return metrics
        return self.logged_eval_before()

    def _write(self, relative: str, rows: list[dict[str, Any]]) -> None:
        if self.accelerator.is_main_process:
            atomic_write_jsonl(self.output / relative, rows)


def _average(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the mean over the rows that have it (a loss part may be absent in a step)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            sums[key] = sums.get(key, 0.0) + float(value)
            counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sums}
