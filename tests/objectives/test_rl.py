"""The pure RL functions (`alignkit.objectives.rl`) on hand-computed numbers: whitening, GAE,
KL-penalised rewards, the clipped PPO losses, RLOO advantages, explained variance, approx KL."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import close

from alignkit.objectives.rl import (
    approx_kl,
    explained_variance,
    gae,
    kl_penalty_rewards,
    masked_var,
    policy_kl,
    ppo_policy_loss,
    ppo_value_loss,
    reinforce_loss,
    rloo_advantages,
    whiten,
)

T = torch.tensor


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


def test_policy_kl_is_trls_k1_statistic() -> None:
    """TRL's policy/policykl (its early-stop statistic): mean(old - new) over the masked
    tokens. old 0, new (0.2, -0.4, [9 masked]) -> mean(-0.2, 0.4) = 0.1, where approx_kl gives
    0.5 * mean(0.04, 0.16) = 0.05; the sign matters (a k1 estimate can be negative)."""
    new, old = T([[0.2, -0.4, 9.0]]), T([[0.0, 0.0, 0.0]])
    mask = T([[True, True, False]])
    assert float(policy_kl(new, old, mask)) == pytest.approx(0.1)
    assert float(policy_kl(old, new, mask)) == pytest.approx(-0.1)
    assert float(approx_kl(new, old, mask)) == pytest.approx(0.05)
