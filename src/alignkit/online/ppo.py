"""PPO (Ziegler et al. 2019, as TRL's PPOTrainer): the whole step of an iteration in one file.

1. `PPOStrategy.rollout`, no gradient, once per iteration (torchtune's `generate_trajectory` and
   `estimate_advantages`): the scored `Rollout` of the iteration's samples (`score_rollout`:
   log-probs of the sampling policy and of the reference, the value head's estimates), then
   per-token rewards -kl_coef * (log pi - log pi_ref) plus the score at the last token,
   optional reward whitening, GAE(gamma, lam) with the value head, whitened advantages.
2. `PPOStrategy.loss`, one micro-batch (torchtune's `ppo_step`): the forward call of the policy
   and its value head, then the clipped policy loss + vf_coef * the clipped value loss against
   the rollout. The loop (`online/loop.py`) runs it over `num_ppo_epochs` passes of
   mini-batches through the core `Trainer.train_step`, and stops early when the approximate
   KL to the sampling policy exceeds 1.5 * target_kl (`stop_early`).

The hyper-parameters are `PPOSettings` (`online/config.py`, the options of `alignkit ppo`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from alignkit.objectives import ObjectiveConfig
from alignkit.objectives.rl import (
    approx_kl,
    explained_variance,
    gae,
    kl_penalty_rewards,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from alignkit.online.config import PPOSettings
from alignkit.online.rollout import RLStrategy, Rollout, TokenOutputs
from alignkit.online.samples import Loss, Metrics, RolloutInputs
from alignkit.scoring.packing import PackedBatch


class PPOStrategy(RLStrategy):
    """PPO with a value head, per-token KL penalty, GAE and the clipped losses."""

    name = "ppo"
    value_head = True

    def __init__(self, k: int, settings: PPOSettings, objective: ObjectiveConfig) -> None:
        super().__init__(k, settings.kl_coef, settings.temperature, objective)
        self.settings = settings
        self.epochs = settings.num_ppo_epochs
        self.head: nn.Linear | None = None

    def make_scorer(self, model: nn.Module) -> nn.Module:
        scorer = super().make_scorer(model)
        self.head = scorer.value_head  # type: ignore[assignment]
        return scorer

    def rollout(self, inputs: RolloutInputs) -> tuple[Rollout, Metrics]:
        """The scored rollout with per-token rewards, advantages and returns (S, T)."""
        cfg = self.settings
        scored = self.score(inputs)
        values, mask = scored.values, scored.mask
        assert values is not None
        rewards, kl = kl_penalty_rewards(
            scored.scores, scored.logps, scored.ref_logps, mask, cfg.kl_coef
        )
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        rollout = dataclasses.replace(
            scored, rewards=rewards, advantages=whiten(advantages, mask), returns=returns
        )
        kl_seq = kl.sum(1)
        return rollout, {
            "ppo/kl": float(kl_seq.mean()),
            "ppo/rlhf_reward": float((scored.scores - cfg.kl_coef * kl_seq).mean()),
            "ppo/explained_variance": float(explained_variance(values, returns, mask)),
            "ppo/value_mean": float(masked_mean(values, mask)),
            "ppo/return_mean": float(masked_mean(returns, mask)),
        }

    def loss(
        self, scorer: nn.Module, batch: PackedBatch, rollout: Rollout, autocast: torch.dtype | None
    ) -> Loss:
        """One PPO micro-batch of B queries x K responses, as rows (B*K, W) per token."""
        cfg = self.settings
        policy: TokenOutputs = scorer(batch, autocast=autocast)  # log-probs and V, with grad
        assert policy.values is not None and rollout.values is not None
        assert rollout.advantages is not None and rollout.returns is not None
        mask = policy.mask
        old_logps = rollout.take(rollout.logps, batch)
        old_values = rollout.take(rollout.values, batch)
        advantages = rollout.take(rollout.advantages, batch)
        returns = rollout.take(rollout.returns, batch)
        policy_loss, clipfrac = ppo_policy_loss(
            policy.logps, old_logps, advantages, mask, cfg.cliprange
        )
        value_loss, value_clipfrac = ppo_value_loss(
            policy.values, old_values, returns, mask, cfg.cliprange_value
        )
        loss = policy_loss + cfg.vf_coef * value_loss
        metrics = {
            "loss": loss.detach(),
            "ppo/policy_loss": policy_loss.detach(),
            "ppo/value_loss": value_loss.detach(),
            "ppo/clipfrac": clipfrac,
            "ppo/value_clipfrac": value_clipfrac,
            "ppo/approx_kl": approx_kl(policy.logps, old_logps, mask),
            "ppo/entropy": masked_mean(policy.entropy, mask),
        }
        return loss, metrics

    def stop_early(self, step_metrics: Metrics) -> bool:
        target = self.settings.target_kl
        return target > 0 and step_metrics["ppo/approx_kl"] > 1.5 * target

    def save_extra(self, model_dir: Path) -> None:
        """value_head.pt next to the final policy (its state dict: weight (1, d), bias (1,))."""
        if self.head is not None:
            state = {k: v.detach().cpu() for k, v in self.head.state_dict().items()}
            torch.save(state, model_dir / "value_head.pt")
