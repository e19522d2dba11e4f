"""RLHF baselines in the online loop: the pure PPO / RLOO functions on hand-computed numbers,
the per-token packed forward and reference, and `alignkit rloo` / `alignkit ppo` on the tiny
model with a scripted reward (reward up, KL bounded, exact resume, early stop, --help).

On the tiny random model the sampled text does not survive decode -> encode (random byte
tokens decode to U+FFFD, which re-encodes as 3 tokens), so its KL estimates are not those of
the sampled tokens; the loop tests only bound them. On SmolLM2 the round trip is exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.objectives import ObjectiveConfig
from alignkit.objectives.rl import (
    approx_kl,
    explained_variance,
    gae,
    kl_penalty_rewards,
    masked_var,
    ppo_policy_loss,
    ppo_value_loss,
    reinforce_loss,
    rloo_advantages,
    whiten,
)
from alignkit.online.config import OnlineConfig, PPOConfig, RLOOConfig
from alignkit.online.loop import OnlineTrainer, make_strategy
from alignkit.online.ppo import PPOStrategy
from alignkit.online.rloo import RLOOStrategy
from alignkit.online.rollout import Reference, RLScorer
from alignkit.scoring.forward import naive_sequence_logps
from alignkit.scoring.packing import collate

T = torch.tensor


def close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    """`actual` equals `expected` (nested lists or a tensor) up to `atol`."""
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(actual.detach().float(), expected, atol=atol, rtol=0)


def keyword_reward(prompts, responses) -> list[float]:
    """Scripted reward: how many letters 'e' the response has (prompt ignored)."""
    return [float(r.count("e")) for r in responses]


@pytest.fixture
def queries_file(tmp_path) -> str:
    path = tmp_path / "queries.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"how to bake a cake {i}"}) + "\n" for i in range(8))
    )
    return str(path)


def small(cls: type[OnlineConfig], queries: str, output: Path, model: str, **kw) -> OnlineConfig:
    values = dict(
        queries=queries, output=str(output), model=model, iterations=8, queries_per_iteration=8,
        max_new_tokens=8, batch_size=4, lr=2e-2, precision="fp32", seed=1, save_every=0,
        save_model=False,
    )  # fmt: skip
    values.update(kw)
    config = cls(**values)
    config.validate()
    return config


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------ pure functions


def test_whiten_by_hand() -> None:
    x, mask = T([[2.0, 4.0, 6.0, 100.0]]), T([[True, True, True, False]])
    # mean 4; unbiased variance ((-2)^2 + 0 + 2^2) / (3 - 1) = 4, std 2; the pad is ignored
    assert float(masked_var(x, mask)) == pytest.approx(4.0)
    assert whiten(x, mask).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    # shift_mean=False (TRL's reward whitening): only the scale changes: (x - 4) / 2 + 4
    assert whiten(x, mask, shift_mean=False).tolist()[0] == pytest.approx([3.0, 4.0, 5.0, 0.0])


def test_gae_by_hand() -> None:
    # gamma = 1, lam = 0.5, values (0.5, 0.6, 0.7), reward 1 at the last token:
    # t=2: delta = 1 + 0 - 0.7 = 0.3                  A2 = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1   A1 = 0.1 + 0.5 * 0.3  = 0.25
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1   A0 = 0.1 + 0.5 * 0.25 = 0.225;  returns = A + V
    adv, ret = gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), T([[True] * 3]), 1.0, 0.5)
    assert adv.tolist()[0] == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.725, 0.85, 1.0])
    # a padded row (gamma 0.9, lam 1): the pad's reward 9 and value 9 are ignored, V = 0 after
    # the last token. t=1: delta = 2 + 0 - 1 = 1, A1 = 1; t=0: delta = 0 + 0.9 * 1 - 1 = -0.1,
    # A0 = -0.1 + 0.9 * 1 = 0.8; returns 1.8 = r0 + 0.9 * r1 and 2.0 (lam = 1: Monte Carlo)
    adv, ret = gae(T([[0.0, 2.0, 9.0]]), T([[1.0, 1.0, 9.0]]), T([[True, True, False]]), 0.9, 1.0)
    assert adv.tolist()[0] == pytest.approx([0.8, 1.0, 0.0])
    assert ret.tolist()[0] == pytest.approx([1.8, 2.0, 0.0])


def test_kl_penalty_rewards_by_hand() -> None:
    logps = T([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]])
    ref = T([[-1.5, -1.0, 0.0], [-2.0, -1.0, 0.0]])
    mask = T([[True, True, False], [True, True, True]])
    rewards, kl = kl_penalty_rewards(T([3.0, 5.0]), logps, ref, mask, kl_coef=0.1)
    # kl = logp - ref: row 0 (0.5, -1, pad), row 1 (1, 0, -1)
    close(kl, [[0.5, -1.0, 0.0], [1.0, 0.0, -1.0]])
    # -0.1 * kl, plus the score at the last token: row 0 at t=1 (0.1 + 3), row 1 at t=2 (0.1 + 5)
    assert rewards.tolist()[0] == pytest.approx([-0.05, 3.1, 0.0])
    assert rewards.tolist()[1] == pytest.approx([-0.1, 0.0, 5.1])


def test_ppo_policy_loss_by_hand() -> None:
    # old log-probs 0, so ratio = exp(logp): 1.5, 0.5, 0.5 (the 4th token is padding)
    logps = torch.log(T([[1.5, 0.5, 0.5, 7.0]]))
    adv, mask = T([[1.0, 2.0, -1.0, 5.0]]), T([[True, True, True, False]])
    # token a: -A*r = -1.5, clipped -A*1.2 = -1.2 -> max -1.2 (clipped)
    # token b: -A*r = -1.0, clipped -2*0.8 = -1.6 -> max -1.0 (unclipped)
    # token c: -A*r =  0.5, clipped  1*0.8 =  0.8 -> max  0.8 (clipped)
    # loss = (-1.2 - 1.0 + 0.8) / 3 = -0.4667; clip fraction 2/3
    loss, clipfrac = ppo_policy_loss(logps, torch.zeros_like(logps), adv, mask, cliprange=0.2)
    assert float(loss) == pytest.approx(-1.4 / 3)
    assert float(clipfrac) == pytest.approx(2 / 3)


def test_ppo_value_loss_by_hand() -> None:
    values, old = T([[1.0, 1.0, 2.0]]), T([[0.0, 0.0, 1.9]])
    returns, mask = T([[0.5, 1.0, 3.0]]), T([[True] * 3])
    # t0: V - V_old = 1 -> clipped V 0.2; (1-0.5)^2 = 0.25 vs (0.2-0.5)^2 = 0.09 -> 0.25
    # t1: clipped V 0.2; (1-1)^2 = 0 vs (0.2-1)^2 = 0.64 -> 0.64 (the clipped one)
    # t2: change 0.1 within the range -> (2-3)^2 = 1
    # loss = 0.5 * (0.25 + 0.64 + 1) / 3 = 0.315; value clip fraction 1/3
    loss, clipfrac = ppo_value_loss(values, old, returns, mask, cliprange_value=0.2)
    assert float(loss) == pytest.approx(0.315)
    assert float(clipfrac) == pytest.approx(1 / 3)


def test_rloo_advantages_and_reinforce_loss_by_hand() -> None:
    # baselines: (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 -> A = (-3, -1.5, 4.5), sum 0
    adv = rloo_advantages(T([[1.0, 2.0, 6.0], [0.0, 0.0, 0.0]]))
    close(adv, [[-3.0, -1.5, 4.5], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="K >= 2"):
        rloo_advantages(T([[1.0]]))
    # -mean(A * logp): -(1 * -2 + (-1) * -4) / 2 = -1; gradient -A / 2 = (-0.5, 0.5)
    logps = T([[-2.0, -4.0]], requires_grad=True)
    loss = reinforce_loss(logps, T([[1.0, -1.0]]), T([[True, True]]))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-1.0)
    assert logps.grad.tolist() == [[-0.5, 0.5]]
    # a masked sequence neither counts nor gets a gradient: -(1 * -2) / 1 = 2
    assert float(reinforce_loss(logps, T([[1.0, -1.0]]), T([[True, False]]))) == 2.0


def test_explained_variance_and_approx_kl_by_hand() -> None:
    returns, mask = T([[1.0, 2.0, 3.0]]), T([[True] * 3])
    assert float(explained_variance(returns, returns, mask)) == 1.0  # perfect values
    assert float(explained_variance(T([[2.0] * 3]), returns, mask)) == pytest.approx(0.0)
    # residuals (0, 0, -1): variance 2/9; Var(returns) = 2/3 -> 1 - (2/9) / (2/3) = 2/3
    assert float(explained_variance(T([[1.0, 2.0, 4.0]]), returns, mask)) == pytest.approx(2 / 3)
    assert math.isnan(float(explained_variance(returns, T([[1.0] * 3]), mask)))
    # 0.5 * mean(0.2^2, 0.4^2) = 0.5 * 0.1 = 0.05
    assert float(approx_kl(T([[0.2, -0.4]]), T([[0.0, 0.0]]), T([[True, True]]))) == pytest.approx(
        0.05
    )


# --------------------------------------------------- packed forward, reference


EXAMPLES = [  # prompt once, then K = 3 responses of different lengths
    Encoded([1, 5, 6, 7], [[8, 9, 2], [10, 2], [11, 12, 13, 2]], [0, 0, 0], [False] * 3, True, 0),
    Encoded([1, 3], [[14, 15, 16, 17, 2], [4, 2], [20, 2]], [0, 0, 0], [False] * 3, True, 1),
]


def test_rl_scorer_packs_the_k_samples_of_a_prompt(tiny_model) -> None:
    from alignkit.models import load_causal_lm

    model = load_causal_lm(tiny_model)
    batch = collate(EXAMPLES, pad_id=2)
    assert batch.input_ids.shape[0] == 2  # one row per prompt: prompt | y1 | y2 | y3
    out = RLScorer(model, value_head=True)(batch)
    # per-token log-probs of the packed row, summed, equal each response scored on its own
    with torch.no_grad():
        close(out.logps.sum(1).view(2, 3), naive_sequence_logps(model, batch), atol=1e-4)
    assert out.mask.sum(1).tolist() == [3, 2, 4, 5, 2, 2]
    assert out.values is not None and out.values.abs().sum() == 0  # zero-initialised head
    assert bool((out.entropy[out.mask] > 0).all()) and not out.entropy.requires_grad
    # the reference of a full fine-tune is a frozen copy with the same log-probs at the start
    scorer = RLScorer(model)
    reference = Reference(scorer, copy=False)
    assert reference.frozen is not None and reference.frozen.model is not model
    assert not any(p.requires_grad for p in reference.frozen.parameters())
    assert torch.allclose(reference.logps(scorer, batch, None), scorer(batch).logps)


def test_lora_reference_is_the_adapter_disabled(tiny_model) -> None:
    from alignkit.models import LoraSettings, load_causal_lm

    model = load_causal_lm(tiny_model, lora=LoraSettings(4, 8, 0.1, ["q_proj", "v_proj"]))
    scorer = RLScorer(model)
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}  # LoRA dropout off: log-probs deterministic
    with torch.no_grad():  # move the adapter away from the base model
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    batch = collate(EXAMPLES, pad_id=2)
    reference = Reference(scorer, copy=False)
    assert reference.frozen is None  # no second copy in memory
    ref = reference.logps(scorer, batch, None)
    base = load_causal_lm(tiny_model)
    with torch.no_grad():
        close(ref.sum(1).view(2, 3), naive_sequence_logps(base, batch), atol=1e-4)
    assert not torch.allclose(ref, scorer(batch).logps)  # the policy itself has moved
    assert Reference(scorer, copy=True).frozen is not None  # an --sft-data adapter: copied


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


def test_rl_trains_on_the_sampled_tokens_not_a_retokenization() -> None:
    """Prompt [1, 2], limit 6 (room 4 for a response), EOS 0. Sampled ids replace the
    re-tokenized ones: a finished sample gets EOS, a cut one none (an empty cut one gets EOS,
    as the encoder does), and a long one is cut to the room left by the prompt."""
    from alignkit.data.tokenize import Encoded
    from alignkit.online.rollout import sampled_encoding
    from alignkit.online.samples import Sampled

    e = Encoded([1, 2], [[5, 0], [6, 0], [7, 0]], [0.0] * 3, [False] * 3, False, 0)
    sample = Sampled("p", ["x", "y", "z"], [0.0] * 3, [True, False, False], [(9, 9), (8,), ()])
    assert sampled_encoding(e, sample, [0], 6).responses == [[9, 9, 0], [8], [0]]
    long = Sampled("p", ["x"], [0.0], [True], [(3, 3, 3, 3, 3)])
    assert sampled_encoding(
        Encoded([1, 2], [[5, 0]], [0.0], [False], False, 0), long, [0], 6
    ).responses == [[3, 3, 3, 3]]
    without = Sampled("p", ["x", "y", "z"], [0.0] * 3, [True, True, True])  # an endpoint
    assert sampled_encoding(e, without, [0], 6) is e


def test_hf_generation_returns_the_sampled_token_ids(tiny_model) -> None:
    """The ids a completion carries decode to its text (EOS and padding dropped)."""
    from alignkit.inference.generation import SamplingConfig, generate_completions
    from alignkit.models import load_inference_model

    loaded = load_inference_model(tiny_model)
    sampling = SamplingConfig(max_new_tokens=6, do_sample=True, batch_size=3, seed=0)
    out = generate_completions(
        loaded.model, loaded.tokenizer, ["a", "bb", "ccc"], sampling, None, False
    )
    for c in out:
        assert 0 < len(c.token_ids) <= 6 or c.finished
        assert loaded.tokenizer.eos_token_id not in c.token_ids
        text = loaded.tokenizer.decode(list(c.token_ids), skip_special_tokens=True).strip()
        assert text == c.text
