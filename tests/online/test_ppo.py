"""RLOO and PPO (`alignkit.online.rloo`, `alignkit.online.ppo`) in the online loop on the tiny
model with a scripted reward: reward up, KL bounded, early stop on target KL, exact resume;
their options and `alignkit rloo` / `alignkit ppo` (kept here with their scripted reward)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import close, length_reward, small_online_config

from alignkit.cli import main
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.inference.generation import Completion, eos_token_ids
from alignkit.io import read_jsonl
from alignkit.objectives import ObjectiveConfig
from alignkit.online.config import OnlineConfig, PPOConfig, RLOOConfig
from alignkit.online.loop import (
    OnlineTrainer,
    make_strategy,
    missing_eos_penalised,
    sampled_token_ids,
)
from alignkit.online.ppo import PPOStrategy
from alignkit.online.rloo import RLOOStrategy
from alignkit.online.rollout import Rollout
from alignkit.rewards.loading import CallableReward


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
    # seed 1 gives 1.4, 0.8 -> 5.0 'e' per response
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 1.0, rewards
    assert rows[0]["ppo/kl"] == 0.0
    # the critic warm-up (default 100 steps) ran once, before the first PPO update
    assert rows[0]["critic/warmup_loss_after"] < rows[0]["critic/warmup_loss_before"]
    assert not any("critic/warmup_loss_after" in m for m in rows[1:])
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
        "temperature": 0.9, "value_init": "auto", "critic_lr": 1e-4, "critic_warmup_steps": 100,
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
        (PPOConfig, {"critic_lr": 0.0}, "--critic-lr"),
        (PPOConfig, {"critic_warmup_steps": -1}, "--critic-warmup-steps"),
        (RLOOConfig, {"missing_eos_penalty": -1.0}, "--missing-eos-penalty"),
        # on-policy or refused (M6): a server that is never updated samples off-policy
        (RLOOConfig, {"endpoint": "http://h/v1", "lora": True}, "off-policy"),
        (RLOOConfig, {"generator": "http://h/v1", "lora": True}, "--generator-sync-url"),
        (PPOConfig, {"endpoint": "http://h/v1"}, "importance correction"),
        # ... and truncated sampling draws from another distribution than the one scored
        (PPOConfig, {"top_p": 0.9}, "--top-p"),
        (RLOOConfig, {"top_k": 5}, "--top-k"),
    ],
)
def test_invalid_options(cls, bad, message) -> None:
    with pytest.raises(AlignkitError, match=message):
        cls(queries="q.jsonl", output="out", **bad).validate()


def test_a_synchronised_server_and_plain_sampling_are_accepted() -> None:
    RLOOConfig(
        queries="q.jsonl", output="out", endpoint="http://h/v1", lora=True,
        generator_sync_url="http://h/v1/load_lora_adapter",
    ).validate()  # fmt: skip
    PPOConfig(queries="q.jsonl", output="out", top_p=1.0, top_k=0, temperature=0.7).validate()


def test_target_kl_stops_on_trls_policy_kl_not_approx_kl() -> None:
    """--target-kl 0.1: stop when policykl > 0.15, whatever approx_kl says."""
    ppo = make_strategy(PPOConfig(target_kl=0.1), ObjectiveConfig())
    assert ppo.stop_early({"ppo/policykl": 0.16, "ppo/approx_kl": 0.0})
    assert not ppo.stop_early({"ppo/policykl": 0.14, "ppo/approx_kl": 1.0})
    assert not make_strategy(PPOConfig(), ObjectiveConfig()).stop_early({"ppo/policykl": 9.0})


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


# ------------------------------------------------------------------- the critic


def _terminal_score_rollout(hidden: torch.Tensor, scores: list[float]) -> Rollout:
    """S rows of T tokens, policy = reference (KL 0), the score paid at the last token, V = 0
    (the zero head); `hidden` (S, T, d) the states the value head reads."""
    s, t = hidden.shape[:2]
    zeros = torch.zeros(s, t)
    return Rollout(
        logps=zeros, ref_logps=zeros, mask=torch.ones(s, t, dtype=torch.bool),
        scores=torch.tensor(scores), k=1, values=zeros.clone(), hidden=hidden,
    )  # fmt: skip


@pytest.mark.parametrize("warmup", [0, 300])
def test_critic_warmup_gives_the_first_token_its_share_of_a_terminal_score(warmup) -> None:
    """L = 128 tokens, gamma 1, lam 0.95, score 2 (rows of prompt A) or 0 (prompt B) at the
    end, no KL. With V = 0, GAE's return (the value target) at token 0 is
    0.95^127 * 2 = 0.0029 and the advantage the same before whitening. After the warm-up the
    head has fitted the Monte-Carlo return of every token, 2 or 0, from a feature that tells
    the prompts apart (+1 / -1, plus noise features): V_0 = 2, and the return at token 0 is
    V_0 + A_0 = 2 (A_0 ~ 0: the outcome is fully predicted)."""
    torch.manual_seed(0)
    length, d = 128, 6
    sign = torch.tensor([1.0, 1.0, -1.0, -1.0])  # prompt A, A, B, B
    hidden = torch.randn(4, length, d) * 0.1
    hidden[..., 0] = sign[:, None]
    settings = PPOConfig(critic_warmup_steps=warmup, critic_lr=0.05).ppo_settings()
    ppo = PPOStrategy(1, settings, ObjectiveConfig())
    ppo.head = torch.nn.Linear(d, 1)
    torch.nn.init.zeros_(ppo.head.weight), torch.nn.init.zeros_(ppo.head.bias)
    ppo.score = lambda inputs, keep_hidden=False: _terminal_score_rollout(  # type: ignore[method-assign]
        hidden, [2.0, 2.0, 0.0, 0.0]
    )
    rollout, metrics = ppo.rollout(None)  # type: ignore[arg-type]
    assert rollout.values is not None and rollout.returns is not None
    if warmup == 0:
        assert rollout.values.abs().sum() == 0 and "critic/warmup_loss_after" not in metrics
        assert float(rollout.returns[0, 0]) == pytest.approx(0.95**127 * 2, rel=1e-4)  # 0.0029
        assert float(rollout.returns[0, -1]) == pytest.approx(2.0)
    else:
        close(rollout.values[:, 0], [2.0, 2.0, 0.0, 0.0], atol=0.1)
        close(rollout.returns[:, 0], [2.0, 2.0, 0.0, 0.0], atol=0.1)
        assert metrics["critic/warmup_loss_after"] < 0.01 < metrics["critic/warmup_loss_before"]
        assert ppo.warmed_up and ppo.state_dict() == {"warmed_up": True}
        again, metrics = ppo.rollout(None)  # type: ignore[arg-type]
        assert "critic/warmup_loss_after" not in metrics  # once per run
    assert rollout.hidden is None  # not kept past the rollout


def test_value_head_starts_from_the_reward_models_head(tiny_model, trained_rm) -> None:
    """--value-init auto/reward-model with an `alignkit train-rm` model of the policy's
    architecture: V(h) equals the reward model's score head on the same hidden state h."""
    from alignkit.models import load_causal_lm
    from alignkit.rewards.loading import HFReward, backbone_and_score

    reward = HFReward(str(trained_rm / "model"), device="cpu")
    rm_head = backbone_and_score(reward.model)[1]
    h = torch.randn(5, 32)
    for mode in ("auto", "reward-model"):
        ppo = make_strategy(PPOConfig(value_init=mode), ObjectiveConfig())
        scorer = ppo.make_scorer(load_causal_lm(tiny_model))
        ppo.init_critic(scorer, reward)
        with torch.no_grad():
            close(scorer.value_head(h)[:, 0], rm_head(h)[:, 0], atol=1e-5)
        assert scorer.value_head.weight.abs().sum() > 0
    zero = make_strategy(PPOConfig(value_init="zero"), ObjectiveConfig())
    scorer = zero.make_scorer(load_causal_lm(tiny_model))
    zero.init_critic(scorer, reward)
    assert scorer.value_head.weight.abs().sum() == 0
    # a reward function has no head: auto keeps V = 0, reward-model refuses
    auto = make_strategy(PPOConfig(value_init="auto"), ObjectiveConfig())
    scorer = auto.make_scorer(load_causal_lm(tiny_model))
    auto.init_critic(scorer, CallableReward(keyword_reward))
    assert scorer.value_head.weight.abs().sum() == 0
    strict = make_strategy(PPOConfig(value_init="reward-model"), ObjectiveConfig())
    scorer = strict.make_scorer(load_causal_lm(tiny_model))
    with pytest.raises(AlignkitError, match="not a reward model"):
        strict.init_critic(scorer, CallableReward(keyword_reward))


def test_the_value_head_has_its_own_learning_rate(tiny_model, queries_file, tmp_path) -> None:
    config = small(PPOConfig, queries_file, tmp_path / "ppo", tiny_model, lr=1e-3, critic_lr=3e-2)
    trainer = OnlineTrainer(config, reward=keyword_reward)
    session = trainer.setup()
    groups = session.optimizer.param_groups
    head = trainer.strategy.head
    assert [g["lr"] for g in groups] == [1e-3, 3e-2]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in head.parameters()}
    n_trainable = sum(1 for p in session.scorer.parameters() if p.requires_grad)
    assert len(groups[0]["params"]) + 2 == n_trainable  # the backbone at --lr


# ------------------------------------------------------------------- sampling


class _OneEmpty:
    """A generator whose K = 2 answers per query are 'cake cake' (ids 5, 6; cut at
    --max-new-tokens, no EOS) and an empty answer (EOS at once: ids (), text '')."""

    def generate(self, prompts, sampling, n=1):
        assert n == 2
        return [[Completion("cake cake", False, (5, 6)), Completion("", True, ())] for _ in prompts]

    def sync(self, model) -> None:
        return None


@pytest.mark.parametrize("penalty", [0.0, 1.5])
def test_an_empty_answer_keeps_its_groups_token_ids(
    tiny_model, queries_file, tmp_path, penalty
) -> None:
    """M5: one empty answer no longer sends its group back to re-tokenized text: the K = 2
    responses train on [5, 6] (cut: no EOS) and [EOS]. L4: --missing-eos-penalty lowers the
    reward of the cut answer only: length 9 - penalty, the empty one 0."""
    config = small(
        RLOOConfig, queries_file, tmp_path / "rloo", tiny_model, num_samples=2,
        missing_eos_penalty=penalty,
    )  # fmt: skip
    trainer = OnlineTrainer(config, reward=length_reward, generator=_OneEmpty())
    session = trainer.setup()
    samples = trainer.sample(session, 0)
    assert all(x.token_ids == [(5, 6), ()] for x in samples)
    assert all(x.scores == [9.0 - penalty, 0.0] for x in samples)
    records, _ = trainer.strategy.build(samples)
    encoded, _ = encode_records(records, session.tokenizer, 64, "truncate")
    eos = eos_token_ids(session.tokenizer)
    tokens = trainer.strategy.training_tokens(encoded, samples, eos, 64)
    assert all(e.responses == [[5, 6], eos[:1]] for e in tokens)


def test_sampled_token_ids_of_a_group() -> None:
    ids = [Completion("a", True, (5,)), Completion("", True, ())]
    assert sampled_token_ids(ids) == [(5,), ()]
    assert sampled_token_ids([Completion("", True, ())] * 2) == [(), ()]
    # an endpoint returns text without ids: the group is re-tokenized
    assert sampled_token_ids([Completion("a b"), Completion("", True, ())]) == []


def test_missing_eos_penalised_by_hand() -> None:
    assert missing_eos_penalised([1.0, 2.0, 3.0], [True, False, True], 0.5) == [1.0, 1.5, 3.0]
    assert missing_eos_penalised([1.0], [False], 0.0) == [1.0]


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
