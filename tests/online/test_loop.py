"""The shared online loop (`alignkit.online.loop`) of PLE, RAFT and online RRHF on the tiny
model with a scripted reward: a step's direction, records, metrics, checkpoints, resume,
LoRA, gradient checkpointing, the schedule, the seeds."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import Planted, chat, keyword_reward
from conftest import small_online_config as small

from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.io import read_jsonl
from alignkit.online.config import PLEConfig, RAFTConfig
from alignkit.online.loop import OnlineTrainer, sample_seed
from alignkit.online.samples import Sampled
from alignkit.scoring.packing import collate

# ------------------------------------------------------------------- the loop


def logps_of(session, tokenizer, records) -> torch.Tensor:
    batch = collate(encode_records(records, tokenizer)[0], tokenizer.pad_token_id)
    with torch.no_grad():
        return session.scorer(batch).reduced("mean")


@pytest.mark.parametrize("scores, raised", [((0.0, 1.0), 1), ((1.0, 0.0), 0)])
def test_a_ple_step_moves_log_probs_the_right_way(
    tiny_model, queries_file, tmp_path, scores, raised
) -> None:
    """Rank branch (s_p >> s): y_p's mean log-prob rises, y's falls. Weighted-SFT branch with
    s > s_p: the better-scored y rises, y_p falls."""
    config = small(
        PLEConfig, queries_file, tmp_path / "run", tiny_model, tau0=0.5 if raised else 5.0
    )
    trainer = OnlineTrainer(config, reward=keyword_reward)
    session = trainer.setup()
    modes = []
    loss = trainer.strategy.loss
    trainer.strategy.loss = lambda scorer, *a, **kw: (  # type: ignore[method-assign]
        modes.append(scorer.training) or loss(scorer, *a, **kw)
    )
    samples = [
        Sampled(chat(f"cake {i}"), ["the dog", "sorry I can not"], list(scores)) for i in range(4)
    ]
    records, _ = trainer.strategy.build(samples)
    before = logps_of(session, session.tokenizer, records)
    for _ in range(3):
        metrics = trainer.train_on(session, samples)
    after = logps_of(session, session.tokenizer, records)
    assert modes and all(modes)  # trained in train mode (dropout on)
    part = "loss/rank" if raised else "loss/sft"
    assert metrics["train/n_rank"] == (4 if raised else 0) and part in metrics
    lowered = 1 - raised
    assert (after[:, raised] > before[:, raised]).all()
    assert (after[:, lowered] < before[:, lowered]).all()


def test_ple_loop_records_metrics_and_checkpoints(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "ple"
    config = small(
        PLEConfig, queries_file, out, tiny_model, eval_queries=queries_file, eval_every=1
    )
    result = OnlineTrainer(config, reward=keyword_reward).run()
    rows = read_jsonl(out / "generations" / "iter-0001.jsonl")
    assert len(rows) == 4
    assert set(rows[0]) >= {"prompt", "y", "y_p", "s", "s_p", "branch", "w", "w_p", "tau"}
    for row in rows:  # the branch follows tau; the scores are the scripted reward's
        assert row["s"] == keyword_reward([], [row["y"]])[0]
        rank = torch.tensor(row["s_p"]) - torch.tensor(row["s"]) > row["tau"]
        assert row["branch"] == ("rank" if rank else "sft")
    metrics = read_jsonl(out / "metrics.jsonl")
    iters = [m for m in metrics if "ple/tau" in m]
    assert [m["step"] for m in iters] == [1, 2]
    assert [m["ple/tau"] for m in iters] == [0.2, 0.18]
    for i, m in enumerate(iters, start=1):
        # the logged curves are the means over this iteration's generations file (4 rows,
        # not the replay buffer), gap = mean(s_p - s): fails on s and s_p swapped, on the
        # sign of the gap, or on means over the replay buffer (8 examples at iteration 2)
        gens = read_jsonl(out / "generations" / f"iter-{i:04d}.jsonl")
        s = [row["s"] for row in gens]
        s_p = [row["s_p"] for row in gens]
        assert len(gens) == 4 and s != s_p  # the check can see a swap
        assert m["ple/s"] == pytest.approx(sum(s) / 4, abs=1e-5)
        assert m["ple/s_p"] == pytest.approx(sum(s_p) / 4, abs=1e-5)
        gaps = [b - a for a, b in zip(s, s_p, strict=True)]
        assert m["ple/gap"] == pytest.approx(sum(gaps) / 4, abs=1e-5)
        assert m["ple/n_rank"] == sum(row["branch"] == "rank" for row in gens)
        assert m["ple/n_rank"] + m["ple/n_sft"] == 4
        assert {"loss", "loss/rank", "loss/sft", "reward/mean", "lr"} <= set(m)
    assert [m["train/examples"] for m in iters] == [4, 8]  # --replay all (the default for ple)
    evals = [m["step"] for m in metrics if "eval/reward" in m]
    assert evals == [0, 1, 2]  # before, every iteration (--eval-every 1), after
    assert {"eval/reward/benign", "eval/reward/harmful"} <= set(metrics[0])
    assert len(read_jsonl(out / "eval" / "iter-0000.jsonl")) == 8
    assert (out / "checkpoints" / "step-1").is_dir() and (out / "model" / "config.json").exists()
    assert result.steps == 2 + 4 and json.loads((out / "summary.json").read_text())["steps"] == 6
    assert json.loads((out / "config.json").read_text())["tau0"] == 0.2


def test_replay_none_saves_nothing_extra(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "ple"
    config = small(
        PLEConfig, queries_file, out, tiny_model, replay="none", save_every=0, save_model=False
    )
    OnlineTrainer(config, reward=keyword_reward).run()
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["train/examples"] for m in metrics] == [4, 4]
    assert not (out / "checkpoints").exists() and not (out / "model").exists()


class _Killed(Exception):
    pass


class _Killer:
    """The scripted reward, but the run 'dies' at the `die_at`-th scoring call."""

    def __init__(self, die_at: int) -> None:
        self.calls = 0
        self.die_at = die_at

    def __call__(self, prompts, responses):
        self.calls += 1
        if self.calls == self.die_at:
            raise _Killed("killed")
        return keyword_reward(prompts, responses)


def test_a_killed_run_resumes_at_its_iteration(tiny_model, queries_file, tmp_path) -> None:
    whole = small(PLEConfig, queries_file, tmp_path / "whole", tiny_model)
    OnlineTrainer(whole, reward=keyword_reward).run()
    with pytest.raises(AlignkitError, match="finished run"):  # before anything loads
        OnlineTrainer(whole, reward=keyword_reward).run()
    out = tmp_path / "killed"
    config = small(PLEConfig, queries_file, out, tiny_model)
    with pytest.raises(_Killed):
        OnlineTrainer(config, reward=_Killer(die_at=2)).run()  # dies in iteration 2
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [1]
    # a planted pickle is never read (accelerate would unpickle it with weights_only=False)
    marker = tmp_path / "PWNED"
    (out / "checkpoints" / "step-1" / "custom_checkpoint_0.pkl").write_bytes(
        pickle.dumps(Planted(marker))
    )
    counter = _Killer(die_at=0)
    OnlineTrainer(dataclasses.replace(config, resume=True), reward=counter).run()
    assert not marker.exists()
    assert counter.calls == 1  # only iteration 2 was run again
    rows = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in rows] == [1, 2]
    assert rows[1]["ple/tau"] == pytest.approx(0.18)  # tau came back with the checkpoint
    assert rows[1]["train/examples"] == 8  # and so did the replay buffer
    reference = read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    for key in ("ple/s", "ple/s_p", "loss", "ple/n_rank", "optimizer_steps"):
        assert rows[1][key] == pytest.approx(reference[1][key], rel=1e-4, abs=1e-5), key
    same = read_jsonl(tmp_path / "whole" / "generations" / "iter-0002.jsonl")
    assert read_jsonl(out / "generations" / "iter-0002.jsonl") == same


def test_raft_loop_with_lora_and_initial_sft(
    tiny_model, queries_file, tmp_path, pairs_file
) -> None:
    out = tmp_path / "raft"
    config = small(
        RAFTConfig, queries_file, out, tiny_model, num_samples=3, selection="global",
        top_fraction=0.5, lora=True, sft_data=[pairs_file], sft_epochs=0.25,
    )  # fmt: skip
    trainer = OnlineTrainer(config, reward=keyword_reward)
    trainer.run()
    assert json.loads((out / "sft" / "config.json").read_text())["epochs"] == 0.25
    assert trainer.policy_source() == str(out / "sft")  # the SFT run is the start
    assert json.loads((out / "summary.json").read_text())["base_model"] == str(out / "sft")
    assert (out / "model" / "adapter_config.json").exists()  # LoRA: the adapter is saved
    rows = read_jsonl(out / "generations" / "iter-0001.jsonl")
    assert len(rows) == 4 and all(len(r["responses"]) == 3 for r in rows)
    assert sum(sum(r["selected"]) for r in rows) == 6  # half of 12 samples
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["train/examples"] for m in metrics] == [6, 6]
    assert all("raft/selected_reward" in m and "loss" in m for m in metrics)


def test_online_gradient_checkpointing_trains_the_same_policy(
    tiny_model, queries_file, tmp_path
) -> None:
    from safetensors.torch import load_file

    weights = []
    for flag in (False, True):
        out = tmp_path / f"raft-{flag}"
        config = small(
            RAFTConfig, queries_file, out, tiny_model, num_samples=2, iterations=1,
            gradient_checkpointing=flag,
        )  # fmt: skip
        trainer = OnlineTrainer(config, reward=keyword_reward)
        assert trainer.config.gradient_checkpointing is flag
        trainer.run()
        weights.append(load_file(out / "model" / "model.safetensors"))
    a, b = weights
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_schedule_spans_all_iterations(tiny_model, queries_file, tmp_path) -> None:
    config = small(
        PLEConfig, queries_file, tmp_path / "o", tiny_model, iterations=3, batch_size=2,
        grad_accum=2, lr_scheduler="linear", warmup_ratio=0.5,
    )  # fmt: skip
    trainer = OnlineTrainer(config, reward=keyword_reward)
    # replay all: 4, 8, 12 examples -> 2, 4, 6 micro-batches -> 1, 2, 3 steps
    assert trainer.planned_steps() == 6
    # one formula with `alignkit train`: 6 examples = 3 micro-batches -> 3 // 2 = 1 step
    assert trainer.steps_per_epoch(6) == 1
    assert (
        OnlineTrainer(
            dataclasses.replace(config, replay="none"), reward=keyword_reward
        ).planned_steps()
        == 3
    )
    scorer = trainer.build_scorer(None)
    optimizer, scheduler = trainer.build_optimizer(scorer, trainer.planned_steps())
    assert scheduler.get_last_lr()[0] == 0.0  # warm-up starts at 0
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3)  # peak after 3 = 0.5 * 6 steps


def test_setup_passes_reward_and_generator_options(tiny_model, queries_file, tmp_path, monkeypatch):
    import alignkit.online.loop as loop
    from alignkit.rewards.loading import CallableReward

    seen: dict = {}  # what reaches HFReward

    def fake_load(spec, **kwargs):
        seen.update(kwargs)
        return CallableReward(keyword_reward)

    monkeypatch.setattr(loop, "load_reward_model", fake_load)
    monkeypatch.setattr(loop, "choose_backend", lambda *a: "vllm")
    monkeypatch.setattr(loop, "VLLMGenerator", lambda tok, engine: ("vllm", engine))
    rows = read_jsonl(Path(queries_file)) + [{"prompt": " ".join(["the dog"] * 60)}]
    queries = tmp_path / "with_long.jsonl"
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = small(
        PLEConfig, str(queries), tmp_path / "o", tiny_model, reward_batch_size=3,
        vllm_gpu_memory_utilization=0.6, reward_model="some/model", max_prompt_tokens=40,
        reward_label=1, reward_output="sigmoid",
    )  # fmt: skip
    session = OnlineTrainer(config).setup()
    assert seen["batch_size"] == 3 and seen["precision"] == "fp32"
    assert (seen["label"], seen["output"]) == (1, "sigmoid")
    assert session.generator[1]["gpu_memory_utilization"] == 0.6  # type: ignore[index]
    assert (len(session.queries.queries), session.queries.dropped) == (8, 1)


def test_missing_reward_and_cpu_vllm_are_usage_errors(tiny_model, queries_file, tmp_path) -> None:
    config = small(PLEConfig, queries_file, tmp_path / "o", tiny_model)
    with pytest.raises(AlignkitError, match="--reward-model"):
        OnlineTrainer(config)
    if not torch.cuda.is_available():
        forced = dataclasses.replace(config, generator="vllm")
        with pytest.raises(AlignkitError, match="--generator vllm needs"):
            OnlineTrainer(forced, reward=keyword_reward).setup()


def test_sample_seed_differs_per_iteration_and_rank() -> None:
    seeds = {sample_seed(1, it, rank) for it in range(3) for rank in range(2)}
    assert len(seeds) == 6


@pytest.mark.slow
def test_ple_on_the_embedded_model(tmp_path) -> None:
    """Two PLE iterations on SmolLM2-135M-Instruct with the scripted reward (a smoke run:
    real text, the chat template, the paper's HH principle as a [p, x] prefix)."""
    from alignkit.commands.demo import demo_file

    out = tmp_path / "ple"
    config = small(
        PLEConfig, demo_file("heldout_prompts.jsonl"), out, "default", queries_per_iteration=2,
        max_new_tokens=12, lr=1e-5, precision="auto", save_model=False, save_every=0,
        replay="none",
    )  # fmt: skip
    OnlineTrainer(config, reward=keyword_reward).run()
    rows = read_jsonl(out / "generations" / "iter-0002.jsonl")
    assert len(rows) == 2 and all(r["y"] and r["y_p"] for r in rows)
    assert [m["ple/tau"] for m in read_jsonl(out / "metrics.jsonl")] == [0.2, 0.18]
