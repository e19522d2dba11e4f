"""Implicit-reward metrics of held-out pairs: how far the policy moved from the reference
on (chosen, rejected), in DPO's units r = beta * (log pi - log pi_ref) (TRL's convention) and
in REAL's unscaled units log pi - log pi_ref (REAL Eq. 10, no beta) (docs/methods.md,
"Implicit-reward metrics"). Used by the trainer's held-out evaluation and by `alignkit eval`."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.objectives.losses import dpo_loss


def implicit_reward_metrics(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
) -> dict[str, float]:
    """DPO implicit rewards r = beta * (log pi - log pi_ref) on test pairs; inputs (N,).

    margin = mean(r_chosen - r_rejected); accuracy = mean(r_chosen > r_rejected) (a tie
    counts as wrong, as in training); dpo_loss = mean(-log sigmoid(r_chosen - r_rejected));
    reward_chosen / reward_rejected = the mean rewards. The `_unscaled` values are the same
    means without beta, u = log pi - log pi_ref (REAL's Eq. 10 and its figures):
    margin_unscaled = margin / beta (for beta > 0; also defined at beta = 0).
    """
    tensors = [t.double() for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    if tensors[0].numel() == 0:
        raise ValueError("implicit-reward metrics need at least one pair")
    losses, chosen, rejected = dpo_loss(*tensors, beta)
    u_chosen = tensors[0] - tensors[2]  # log pi(chosen) - log pi_ref(chosen)
    u_rejected = tensors[1] - tensors[3]
    return {
        "margin": float((chosen - rejected).mean()),
        "accuracy": float((chosen > rejected).double().mean()),
        "dpo_loss": float(losses.mean()),
        "reward_chosen": float(chosen.mean()),
        "reward_rejected": float(rejected.mean()),
        "margin_unscaled": float((u_chosen - u_rejected).mean()),
        "reward_chosen_unscaled": float(u_chosen.mean()),
        "reward_rejected_unscaled": float(u_rejected.mean()),
    }


def pair_eval_metrics(policy: torch.Tensor, ref: torch.Tensor, beta: float) -> dict[str, float]:
    """`implicit_reward_metrics` of (n, 2) held-out (chosen,
    rejected) log-probs under TRL's names: eval/rewards/{chosen,rejected,margins,accuracies}
    and eval/rewards/dpo_loss (beta-scaled), and REAL's unscaled values
    eval/rewards/{chosen,rejected,margins}_unscaled."""
    if policy.numel() == 0:
        return {}
    values = implicit_reward_metrics(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], beta)
    names = {
        "reward_chosen": "chosen",
        "reward_rejected": "rejected",
        "margin": "margins",
        "accuracy": "accuracies",
        "dpo_loss": "dpo_loss",
        "reward_chosen_unscaled": "chosen_unscaled",
        "reward_rejected_unscaled": "rejected_unscaled",
        "margin_unscaled": "margins_unscaled",
    }
    return {f"eval/rewards/{names[k]}": v for k, v in values.items()}
