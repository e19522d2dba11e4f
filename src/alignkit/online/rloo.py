"""RLOO (Ahmadian et al. 2024, "Back to Basics"): REINFORCE with a leave-one-out baseline.

Per iteration, after the rollout (`online/rollout.py`): each response's reward is
r_i - kl_coef * sum_t (log pi - log pi_ref), the reference being the starting policy; its
advantage is the reward minus the mean reward of the query's other K-1 responses; then one
pass of mini-batches of the REINFORCE loss -mean(A_i * log pi(y_i|x)).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from alignkit.objectives.rl import masked_mean, reinforce_loss, rloo_advantages
from alignkit.online.rollout import RLStrategy, Rollout, TokenOutputs
from alignkit.online.samples import Loss, Metrics, RolloutInputs
from alignkit.scoring.packing import PackedBatch


class RLOOStrategy(RLStrategy):
    """REINFORCE with the leave-one-out baseline and a sequence-level KL penalty."""

    name = "rloo"

    def rollout(self, inputs: RolloutInputs) -> tuple[Rollout, Metrics]:
        """The scored rollout with rewards (S,) and advantages (S,) per response."""
        scored = self.score(inputs)
        kl_seq = scored.kl.sum(1)  # (S,)
        penalised = (scored.scores - self.kl_coef * kl_seq).view(-1, self.k)  # (n, K)
        advantages = rloo_advantages(penalised)  # (n, K)
        rollout = dataclasses.replace(
            scored, rewards=penalised.reshape(-1), advantages=advantages.reshape(-1)
        )
        return rollout, {
            "rloo/kl": float(kl_seq.mean()),
            "rloo/rlhf_reward": float(penalised.mean()),
            "rloo/advantage_std": float(advantages.std(unbiased=False)),
        }

    def loss(
        self, scorer: nn.Module, batch: PackedBatch, rollout: Rollout, autocast: torch.dtype | None
    ) -> Loss:
        """REINFORCE on one micro-batch of B queries x K responses."""
        assert rollout.advantages is not None
        policy: TokenOutputs = scorer(batch, autocast=autocast)  # (B*K, W) per token
        seq_logps = policy.logps.sum(1).view(batch.shape)  # (B, K) log pi(y|x)
        advantages = rollout.per_response(rollout.advantages, batch).to(seq_logps.device)
        loss = reinforce_loss(seq_logps, advantages, batch.mask)
        metrics = {
            "loss": loss.detach(),
            "rloo/entropy": masked_mean(policy.entropy, policy.mask),
            "rloo/logp": seq_logps[batch.mask].mean().detach(),
        }
        return loss, metrics
