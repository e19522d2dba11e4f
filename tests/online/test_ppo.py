"""RLOO and PPO (`alignkit.online.rloo`, `alignkit.online.ppo`) in the online loop on the tiny
model with a scripted reward: reward up, KL bounded, early stop on target KL, exact resume;
their options and `alignkit rloo` / `alignkit ppo` (kept here with their scripted reward)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import small_online_config

from alignkit.cli import main
from alignkit.errors import AlignkitError
from alignkit.io import read_jsonl
from alignkit.objectives import ObjectiveConfig
from alignkit.online.config import OnlineConfig, PPOConfig, RLOOConfig
from alignkit.online.loop import OnlineTrainer, make_strategy
from alignkit.online.ppo import PPOStrategy
from alignkit.online.rloo import RLOOStrategy


def keyword_reward(prompts, responses) -> list[float]:
    """Scripted reward: how many letters 'e' the response has (prompt ignored)."""
    return [float(r.count("e")) for r in responses]


def small(cls: type[OnlineConfig], queries: str, output: Path, model: str, **kw) -> OnlineConfig:
    values = dict(
        iterations=8, queries_per_iteration=8, batch_size=4, lr=2e-2, seed=1, save_every=0,
        save_model=False,
    )  # fmt: skip
    values.update(kw)
    return small_online_config(cls, queries, output, model, **values)


# ------------------------------------------------------------------- the loop


def _rewards(out: Path) -> list[float]:
    return [m["reward/mean"] for m in read_jsonl(out / "metrics.jsonl")]


def test_rloo_raises_the_reward_with_bounded_kl(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "rloo"
    config = small(RLOOConfig, queries_file, out, tiny_model, num_samples=4)
    result = OnlineTrainer(config, reward=keyword_reward).run()
    rows = read_jsonl(out / "metrics.jsonl")
    rewards = _rewards(out)
    # seed 1 gives 1.2, 0.8 -> 3.4, 3.8 'e' per response: the last two iterations average > 1 more
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 1.0, rewards
    assert rows[0]["rloo/kl"] == 0.0  # the first samples come from the reference itself
    assert all(abs(m["rloo/kl"]) < 25 for m in rows)
    assert all(m["rloo/advantage_std"] > 0 and "loss" in m for m in rows)
    assert result.steps == 8 * 2  # 8 queries / batch 4, one pass per iteration
    generations = read_jsonl(out / "generations" / "iter-0001.jsonl")
    assert len(generations) == 8 and all(len(g["responses"]) == 4 for g in generations)


def test_ppo_raises_the_reward_with_bounded_kl(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "ppo"
    config = small(
        PPOConfig, queries_file, out, tiny_model, num_samples=2, lr=1e-2, save_model=True
    )
    OnlineTrainer(config, reward=keyword_reward).run()
    rows = read_jsonl(out / "metrics.jsonl")
    rewards = _rewards(out)
    # seed 1 gives 1.4, 0.8 -> 4.3, 4.1 'e' per response
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 1.0, rewards
    assert rows[0]["ppo/kl"] == 0.0 and rows[0]["ppo/explained_variance"] == 0.0  # V = 0
    assert all(abs(m["ppo/kl"]) < 25 for m in rows)
    for key in ("ppo/entropy", "ppo/clipfrac", "ppo/value_loss", "ppo/explained_variance"):
        assert all(key in m for m in rows), key
    assert rows[-1]["ppo/entropy"] < rows[0]["ppo/entropy"]  # the policy sharpens
    assert all(m["train/steps"] == 4 * 2 for m in rows)  # 4 PPO epochs x 2 mini-batches
    head = torch.load(out / "model" / "value_head.pt")
    assert head["weight"].shape == (1, 32) and head["weight"].abs().sum() > 0  # trained


def test_target_kl_stops_the_ppo_epochs_early(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "ppo"
    config = small(
        PPOConfig, queries_file, out, tiny_model, iterations=2, lr=1e-2, target_kl=1e-4,
        num_ppo_epochs=4,
    )  # fmt: skip
    result = OnlineTrainer(config, reward=keyword_reward).run()
    steps = [m["train/steps"] for m in read_jsonl(out / "metrics.jsonl")]
    # the first step is on the sampling policy itself (approx KL 0), then it has moved
    assert all(1 < s < 8 for s in steps), steps
    assert result.steps == sum(steps)


class _Killed(RuntimeError):
    pass


class _Killer:
    """The scripted reward, but the run 'dies' at the `die_at`-th scoring call."""

    def __init__(self, die_at: int) -> None:
        self.calls, self.die_at = 0, die_at

    def __call__(self, prompts, responses):
        self.calls += 1
        if self.calls == self.die_at:
            raise _Killed("killed")
        return keyword_reward(prompts, responses)


@pytest.mark.parametrize("cls, extra", [(PPOConfig, {"num_samples": 2}), (RLOOConfig, {})])
def test_a_killed_run_resumes_exactly(tiny_model, queries_file, tmp_path, cls, extra) -> None:
    values = dict(iterations=4, save_every=1, lr=1e-2, **extra)
    whole = small(cls, queries_file, tmp_path / "whole", tiny_model, **values)
    OnlineTrainer(whole, reward=keyword_reward).run()
    out = tmp_path / "killed"
    config = small(cls, queries_file, out, tiny_model, **values)
    with pytest.raises(_Killed):
        OnlineTrainer(config, reward=_Killer(die_at=3)).run()  # dies in iteration 3
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [1, 2]
    counter = _Killer(die_at=0)
    OnlineTrainer(dataclasses.replace(config, resume=True), reward=counter).run()
    assert counter.calls == 2  # iterations 3 and 4 only
    rows, reference = (
        read_jsonl(out / "metrics.jsonl"),
        read_jsonl(tmp_path / "whole" / "metrics.jsonl"),
    )
    assert [m["step"] for m in rows] == [1, 2, 3, 4]
    for got, want in zip(rows[2:], reference[2:], strict=True):
        keys = [k for k in want if not k.startswith("time/")]
        assert set(keys) <= set(got)
        for key in keys:  # the value head, optimizer and RNG came back with the checkpoint
            assert got[key] == pytest.approx(want[key], abs=1e-5), key


# ------------------------------------------------------------ options and CLI


def test_options_reach_the_strategies() -> None:
    rloo = make_strategy(RLOOConfig(num_samples=3, kl_coef=0.2, temperature=0.7), ObjectiveConfig())
    assert isinstance(rloo, RLOOStrategy) and (rloo.k, rloo.kl_coef, rloo.temperature) == (
        3,
        0.2,
        0.7,
    )
    config = PPOConfig(
        num_samples=2, kl_coef=0.1, cliprange=0.3, cliprange_value=0.4, vf_coef=0.5, gamma=0.9,
        lam=0.8, whiten_rewards=True, num_ppo_epochs=3, target_kl=0.2, temperature=0.9,
    )  # fmt: skip
    ppo = make_strategy(config, ObjectiveConfig())
    assert isinstance(ppo, PPOStrategy) and ppo.k == 2 and ppo.epochs == 3
    assert dataclasses.asdict(ppo.settings) == {
        "kl_coef": 0.1, "cliprange": 0.3, "cliprange_value": 0.4, "vf_coef": 0.5, "gamma": 0.9,
        "lam": 0.8, "whiten_rewards": True, "num_ppo_epochs": 3, "target_kl": 0.2,
        "temperature": 0.9,
    }  # fmt: skip


@pytest.mark.parametrize(
    "cls, bad, message",
    [
        (RLOOConfig, {"num_samples": 1}, "--num-samples"),
        (RLOOConfig, {"replay": "all"}, "on-policy"),
        (RLOOConfig, {"kl_coef": -1.0}, "--kl-coef"),
        (PPOConfig, {"reduction": "mean"}, "--reduction"),
        (PPOConfig, {"num_ppo_epochs": 0}, "--num-ppo-epochs"),
        (PPOConfig, {"cliprange": 0.0}, "--cliprange"),
        (PPOConfig, {"lam": 1.5}, "--lam"),
        (PPOConfig, {"target_kl": -0.1}, "--target-kl"),
    ],
)
def test_invalid_options(cls, bad, message) -> None:
    with pytest.raises(AlignkitError, match=message):
        cls(queries="q.jsonl", output="out", **bad).validate()


@pytest.mark.parametrize("verb, cls", [("rloo", RLOOConfig), ("ppo", PPOConfig)])
def test_help_lists_every_option(verb, cls, capsys) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in text, f.name
    for flag in ("--kl-coef", "--num-samples"):
        assert flag in text
    if verb == "ppo":
        for flag in ("--cliprange-value", "--vf-coef", "--whiten-rewards", "--target-kl", "--lam"):
            assert flag in text
    assert "leave-one-out" in text if verb == "rloo" else "value head" in text


def test_ppo_cli_with_lora(tiny_model, queries_file, tmp_path, monkeypatch) -> None:
    """`alignkit ppo --lora` end to end from the command line (reward: a module function)."""
    import sys
    import types

    module = types.ModuleType("rl_test_rewards")
    module.score = keyword_reward  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rl_test_rewards", module)
    out = tmp_path / "ppo-lora"
    code = main([
        "ppo", "--queries", queries_file, "--reward-model", "rl_test_rewards:score",
        "--model", tiny_model, "--output", str(out), "--lora", "--iterations", "2",
        "--queries-per-iteration", "4", "--max-new-tokens", "6", "--batch-size", "2",
        "--num-ppo-epochs", "2", "--precision", "fp32", "--whiten-rewards",
    ])  # fmt: skip
    assert code == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in rows] == [1, 2] and rows[0]["ppo/kl"] == 0.0
    assert (out / "model" / "adapter_config.json").exists()
    assert (out / "model" / "value_head.pt").exists()


# ------------------------------------------------ the reference is the starting policy


@pytest.mark.parametrize(
    "case", ["fresh-lora", "adapter", "adapter+lora", "sft-data+lora", "sft-data", "full"]
)
def test_kl_is_zero_before_any_update(
    tiny_model, sft_adapter, queries_file, pairs_file, tmp_path, case
) -> None:
    """The first iteration's samples come from the policy before any update, which is the
    reference: KL exactly 0, whatever the policy starts from. The old code took the base
    model without the adapter as the reference of `--model ADAPTER` (KL > 0)."""
    model = sft_adapter if case.startswith("adapter") else tiny_model
    extra = dict(lora=case in ("fresh-lora", "adapter+lora", "sft-data+lora"), iterations=1)
    if case.startswith("sft-data"):
        extra.update(sft_data=[pairs_file], sft_epochs=0.5)
    for cls, key in ((RLOOConfig, "rloo/kl"), (PPOConfig, "ppo/kl")):
        if cls is PPOConfig and case not in ("adapter", "sft-data+lora"):
            continue  # PPO shares the reference with RLOO: two cases suffice
        out = tmp_path / key.split("/")[0]
        config = small(cls, queries_file, out, model, num_samples=2, **extra)
        OnlineTrainer(config, reward=keyword_reward).run()
        assert read_jsonl(out / "metrics.jsonl")[0][key] == 0.0, (case, key)
