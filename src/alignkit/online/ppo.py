"""PPO (Ziegler et al. 2019, as TRL's PPOTrainer): the whole step of an iteration in one file.

1. `PPOStrategy.rollout`, no gradient, once per iteration (torchtune's `generate_trajectory` and
   `estimate_advantages`): the scored `Rollout` of the iteration's samples (`score_rollout`:
   log-probs of the sampling policy and of the reference, the value head's estimates), then
   per-token rewards -kl_coef * (log pi - log pi_ref) plus the score at the last token,
   optional reward whitening, GAE(gamma, lam) with the value head, whitened advantages.
2. `PPOStrategy.loss`, one micro-batch (torchtune's `ppo_step`): the forward call of the policy
   and its value head, then the clipped policy loss + vf_coef * the clipped value loss against
   the rollout. The loop (`online/loop.py`) runs it over `num_ppo_epochs` passes of
   mini-batches through the core `Trainer.train_step`, and stops early when TRL's policy KL
   to the sampling policy, mean(log pi_old - log pi), exceeds 1.5 * target_kl (`stop_early`).

The critic (M4 of the fidelity review): the value head starts as a copy of the reward model's
score head where that applies (`init_critic`, --value-init), trains in its own optimizer
parameter group (--critic-lr, `param_groups`), and before the first PPO update it is fitted
alone to the first rollout's Monte-Carlo returns (`warm_up_critic`, --critic-warmup-steps):
with V = 0, gamma = 1 and lam = 0.95, GAE gives token t of an L-token answer only
0.95^(L-1-t) of a score paid at the end (0.0015 at L = 128), as advantage and as the value
target, until the head has learnt the returns.

The hyper-parameters are `PPOSettings` (`online/config.py`, the options of `alignkit ppo`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.errors import AlignkitError
from alignkit.models import is_peft
from alignkit.objectives import ObjectiveConfig
from alignkit.objectives.rl import (
    approx_kl,
    explained_variance,
    gae,
    kl_penalty_rewards,
    masked_mean,
    policy_kl,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from alignkit.online.config import PPOSettings
from alignkit.online.rollout import RLStrategy, Rollout, TokenOutputs
from alignkit.online.samples import Loss, Metrics, RolloutInputs
from alignkit.rewards.loading import reward_score_head
from alignkit.scoring.packing import PackedBatch

log = logging.getLogger(__name__)


def fit_value_head(
    head: nn.Linear, hidden: Tensor, returns: Tensor, mask: Tensor, steps: int, lr: float
) -> tuple[float, float]:
    """Critic warm-up: `steps` full-batch Adam steps (lr `lr`) of the value head alone on
    0.5 * mean((V(h_t) - R_t)^2) over the masked tokens, written back into `head`.

    hidden (S, T, d) float32 (fixed: the backbone does not move), returns and mask (S, T).
    Returns the loss (before, after). The same inputs give the same head on every process.
    """
    weight = head.weight.detach().float().clone().requires_grad_(True)  # (1, d)
    bias = head.bias.detach().float().clone().requires_grad_(True)  # (1,)
    x, y = hidden[mask].float(), returns[mask].float()  # (N, d), (N,)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)

    def loss() -> Tensor:
        return 0.5 * ((x @ weight[0] + bias[0] - y) ** 2).mean()

    with torch.no_grad():
        before = float(loss())
    for _ in range(steps):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        head.bias.copy_(bias.to(head.bias.dtype))
        return before, float(loss())


class PPOStrategy(RLStrategy):
    """PPO with a value head, per-token KL penalty, GAE and the clipped losses."""

    name = "ppo"
    value_head = True

    def __init__(self, k: int, settings: PPOSettings, objective: ObjectiveConfig) -> None:
        super().__init__(k, settings.kl_coef, settings.temperature, objective)
        self.settings = settings
        self.epochs = settings.num_ppo_epochs
        self.head: nn.Linear | None = None
        self.warmed_up = False  # the critic warm-up ran (saved in checkpoints)

    def make_scorer(self, model: nn.Module) -> nn.Module:
        scorer = super().make_scorer(model)
        self.head = scorer.value_head  # type: ignore[assignment]
        return scorer

    def init_critic(self, scorer: nn.Module, reward: Any) -> None:
        """--value-init: copy the reward model's score head into the value head where it
        applies (`reward_score_head`); `reward-model` refuses where it does not, `auto`
        keeps the zero head and says why."""
        mode = self.settings.value_init
        if mode == "zero" or self.head is None:
            return
        model = scorer.model  # type: ignore[attr-defined]
        config = (model.get_base_model() if is_peft(model) else model).config
        head, why = reward_score_head(reward, config)
        if head is None:
            if mode == "reward-model":
                raise AlignkitError(f"--value-init reward-model: {why}; use --value-init zero")
            log.info("value head: zero-initialised (%s)", why)
            return
        with torch.no_grad():
            self.head.weight.copy_(head[0])
            self.head.bias.copy_(head[1])
        log.info("value head: initialised from the reward model's score head")

    def param_groups(self, scorer: nn.Module) -> list[dict[str, Any]]:
        """AdamW parameter groups: the value head at --critic-lr, the rest at the run's lr."""
        assert self.head is not None
        head = {id(p) for p in self.head.parameters()}
        rest = [p for p in scorer.parameters() if p.requires_grad and id(p) not in head]
        return [
            {"params": rest},
            {"params": list(self.head.parameters()), "lr": self.settings.critic_lr},
        ]

    def warm_up_critic(self, scored: Rollout, rewards: Tensor) -> tuple[Rollout, Metrics]:
        """Fit the value head to the rollout's Monte-Carlo returns R_t = sum_l gamma^l r_{t+l}
        (GAE's returns with lam = 1, which do not depend on V) with --critic-warmup-steps
        Adam steps (`fit_value_head`); the rollout's values become the fitted head's."""
        cfg, head = self.settings, self.head
        assert head is not None and scored.hidden is not None
        device = head.weight.device
        hidden, mask = scored.hidden.to(device), scored.mask.to(device)
        _, mc_returns = gae(
            rewards.to(device), torch.zeros_like(hidden[..., 0]), mask, cfg.gamma, 1.0
        )
        before, after = fit_value_head(
            head, hidden, mc_returns, mask, cfg.critic_warmup_steps, cfg.critic_lr
        )
        with torch.no_grad():
            values = (head(hidden).squeeze(-1).float() * mask).to(scored.mask.device)
        self.warmed_up = True
        return dataclasses.replace(scored, values=values, hidden=None), {
            "critic/warmup_loss_before": before,
            "critic/warmup_loss_after": after,
        }

    def rollout(self, inputs: RolloutInputs) -> tuple[Rollout, Metrics]:
        """The scored rollout with per-token rewards, advantages and returns (S, T); the
        first one warms the critic up first (--critic-warmup-steps)."""
        cfg = self.settings
        warm_up = cfg.critic_warmup_steps > 0 and not self.warmed_up
        scored = self.score(inputs, keep_hidden=warm_up)
        mask = scored.mask
        rewards, kl = kl_penalty_rewards(
            scored.scores, scored.logps, scored.ref_logps, mask, cfg.kl_coef
        )
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        metrics: Metrics = {}
        if warm_up:
            scored, metrics = self.warm_up_critic(scored, rewards)
        values = scored.values
        assert values is not None
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        rollout = dataclasses.replace(
            scored,
            hidden=None,
            rewards=rewards,
            advantages=whiten(advantages, mask),
            returns=returns,
        )
        kl_seq = kl.sum(1)
        return rollout, metrics | {
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
            "ppo/policykl": policy_kl(policy.logps, old_logps, mask),
            "ppo/entropy": masked_mean(policy.entropy, mask),
        }
        return loss, metrics

    def stop_early(self, step_metrics: Metrics) -> bool:
        """TRL's PPO early stop: after a step whose policy KL (`policy_kl`, measured before
        its update and averaged over the step's micro-batches and processes) exceeds
        1.5 * target_kl, the iteration's remaining steps are skipped."""
        target = self.settings.target_kl
        return target > 0 and step_metrics["ppo/policykl"] > 1.5 * target

    def state_dict(self) -> dict[str, Any]:
        return {"warmed_up": self.warmed_up}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmed_up = bool(state.get("warmed_up", False))

    def save_extra(self, model_dir: Path) -> None:
        """value_head.pt next to the final policy (its state dict: weight (1, d), bias (1,))."""
        if self.head is not None:
            state = {k: v.detach().cpu() for k, v in self.head.state_dict().items()}
            torch.save(state, model_dir / "value_head.pt")
