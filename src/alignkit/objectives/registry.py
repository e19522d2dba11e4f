"""Method registry: a method name -> its data kind and an adapter to a loss.

An adapter turns an `ObjectiveBatch` + `ObjectiveConfig` into `(loss, metrics)`: a scalar
loss and detached scalar metrics (TRL's names for pairs). Every adapter reduces log-probs
with `cfg.reduction` and ignores sequences whose `batch.mask` is False. In point-wise
methods "positive" means, for a binary point, label z = 1 (the label decides, whatever
`high_quality` says) and, for a real-valued score, `batch.high_quality`; "negative" is every
other present point. A metric of an empty class is left out rather than NaN.
`compute_loss` adds the DEFT guidance term on top of any method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from alignkit.errors import AlignkitError
from alignkit.objectives.base import Kind, ObjectiveBatch, ObjectiveConfig

if TYPE_CHECKING:  # torch is imported when a loss is computed, not when the table is read
    from torch import Tensor

Metrics = dict[str, "Tensor"]
Compute = Callable[[ObjectiveBatch, ObjectiveConfig], tuple["Tensor", Metrics]]


def _no_tokens(cfg: ObjectiveConfig) -> bool:
    return False


def _token_form(cfg: ObjectiveConfig) -> bool:
    return cfg.unlikelihood_form == "token"


@dataclass(frozen=True)
class Method:
    """A training objective: which data it eats, what inputs it needs, how to compute it."""

    name: str
    kind: Kind
    needs_ref: bool
    compute: Compute
    description: str  # one line, shown by --help
    tokens_needed: Callable[[ObjectiveConfig], bool] = _no_tokens

    def needs_tokens(self, cfg: ObjectiveConfig) -> bool:
        """True when the forward pass must keep per-token log-probs (`SeqLogps.tokens`)."""
        return self.tokens_needed(cfg)


@dataclass
class _Points:
    """The present sequences of a batch, flattened to (N,) (point data: N = B)."""

    logps: Tensor
    ref: Tensor | None
    labels: Tensor
    binary: Tensor
    positive: Tensor

    def need_ref(self) -> Tensor:
        assert self.ref is not None, "compute_loss checks needs_ref"
        return self.ref


def _points(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> _Points:
    import torch

    m = batch.mask
    logps = batch.policy.reduced(cfg.reduction)[m]
    ref = None if batch.ref is None else batch.ref.reduced(cfg.reduction)[m]
    binary = batch.binary.unsqueeze(1).expand_as(m)[m]
    labels = batch.labels[m].to(logps.dtype)
    # binary data: the label decides; high_quality only marks the good real-valued scores
    positive = torch.where(binary, labels == 1, batch.high_quality[m])
    return _Points(logps, ref, labels, binary, positive)


def _point_metrics(pts: _Points, beta: float) -> Metrics:
    metrics: Metrics = {}
    for name, sel in (("positive", pts.positive), ("negative", ~pts.positive)):
        if not sel.any():
            continue
        metrics[f"logps/{name}"] = pts.logps[sel].mean().detach()
        if pts.ref is not None:
            rewards = beta * (pts.logps[sel] - pts.ref[sel])
            metrics[f"rewards/{name}"] = rewards.mean().detach()
    return metrics


def _term_metrics(terms: dict[str, tuple[Tensor, Tensor]]) -> Metrics:
    """name -> (term, the part's selection): the detached terms of the non-empty parts."""
    return {name: term.detach() for name, (term, part) in terms.items() if part.any()}


def _sft(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    from alignkit.objectives.losses import mean_or_zero, sft_loss

    pts = _points(batch, cfg)
    loss = mean_or_zero(sft_loss(pts.logps[pts.positive]))
    return loss, _point_metrics(pts, cfg.beta)


def _dpo(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    from alignkit.objectives.losses import dpo_loss, mean_or_zero

    assert batch.ref is not None, "compute_loss checks needs_ref"
    rows = batch.mask[:, 0] & batch.mask[:, 1]
    policy = batch.policy.reduced(cfg.reduction)[rows]
    ref = batch.ref.reduced(cfg.reduction)[rows]
    losses, chosen, rejected = dpo_loss(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], cfg.beta)
    if not rows.any():
        return mean_or_zero(losses), {}
    metrics = {
        "logps/chosen": policy[:, 0].mean().detach(),
        "logps/rejected": policy[:, 1].mean().detach(),
        **_reward_metrics(chosen, rejected),
        "rewards/dpo_loss": losses.mean().detach(),  # = the loss unless DEFT guidance is added
    }
    return losses.mean(), metrics


def _reward_metrics(chosen: Tensor, rejected: Tensor) -> Metrics:
    """TRL's `rewards/*` metrics of (N,) rewards of chosen and rejected responses."""
    metrics = {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).to(chosen.dtype).mean(),
    }
    return {k: v.detach() for k, v in metrics.items()}


def _bradley_terry(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    """Reward models: `batch.policy.sum` (B, 2) holds the rewards R(x, y), not log-probs."""
    from alignkit.objectives.losses import bradley_terry_loss

    rows = batch.mask[:, 0] & batch.mask[:, 1]
    chosen, rejected = batch.policy.sum[rows, 0], batch.policy.sum[rows, 1]
    losses = bradley_terry_loss(chosen, rejected)
    loss = losses.sum() / max(losses.numel(), 1)
    if not rows.any():
        return loss, {}
    return loss, _reward_metrics(chosen, rejected)


# The objective of `alignkit train-rm`; not a policy objective, so not in METHODS.
BRADLEY_TERRY = Method(
    "bradley-terry",
    "pair",
    False,
    _bradley_terry,
    "Bradley-Terry reward model: -log sigmoid(R(x, chosen) - R(x, rejected))",
)


def _pointwise_dpo(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    from alignkit.objectives.losses import mean_or_zero, pointwise_dpo_loss

    pts = _points(batch, cfg)
    if not pts.binary.all():
        raise AlignkitError(
            "pointwise-dpo needs binary (0/1) labels; use pointwise-mse or ulma for real scores"
        )
    losses = pointwise_dpo_loss(pts.logps, pts.need_ref(), pts.labels, cfg.beta, cfg.logz)
    return mean_or_zero(losses), _point_metrics(pts, cfg.beta)


def _class_dpo(
    batch: ObjectiveBatch, cfg: ObjectiveConfig, positive: bool
) -> tuple[Tensor, Metrics]:
    """Point-wise DPO on one class only (label 1 for positives, 0 for negatives)."""
    import torch

    from alignkit.objectives.losses import mean_or_zero, pointwise_dpo_loss

    pts = _points(batch, cfg)
    sel = pts.positive if positive else ~pts.positive
    logps, ref = pts.logps[sel], pts.need_ref()[sel]
    labels = torch.full_like(logps, float(positive))
    losses = pointwise_dpo_loss(logps, ref, labels, cfg.beta, cfg.logz)
    return mean_or_zero(losses), _point_metrics(pts, cfg.beta)


def _pointwise_mse(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    from alignkit.objectives.losses import mean_or_zero, pointwise_mse_loss

    pts = _points(batch, cfg)
    losses = pointwise_mse_loss(pts.logps, pts.need_ref(), pts.labels, cfg.beta, cfg.logz)
    return mean_or_zero(losses), _point_metrics(pts, cfg.beta)


def _ulma(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    """Binary ULMA when the points are binary, the continuous variant when they are scores.

    The variant belongs to the run, not to the batch: a run whose data has any real-valued
    label turns its binary points into scores 0/1 up front (`alignkit.data.labels.as_scores`,
    done by `alignkit train`), so a batch mixing the two is an error.
    """
    import torch

    from alignkit.objectives.losses import ulma_continuous_loss, ulma_loss

    pts = _points(batch, cfg)
    ref = pts.need_ref()
    if pts.binary.any() and not pts.binary.all():
        raise AlignkitError(
            "ulma: this batch mixes binary and real-valued labels, but the variant must be "
            "the same for the whole run; turn the binary points into scores 0/1 before "
            "batching (alignkit.data.labels.as_scores, as `alignkit train` does)"
        )
    if pts.binary.all():
        loss, pos, neg = ulma_loss(pts.logps, ref, pts.positive, cfg.beta, cfg.logz)
        terms = {"loss/positive": (pos, pts.positive), "loss/negative": (neg, ~pts.positive)}
    else:
        loss, sft, mse = ulma_continuous_loss(
            pts.logps, ref, pts.labels, pts.positive, cfg.beta, cfg.logz
        )
        terms = {
            "loss/positive": (sft, pts.positive),
            "loss/mse": (mse, torch.ones_like(pts.positive)),
        }
    return loss, _point_metrics(pts, cfg.beta) | _term_metrics(terms)


def _unlearning(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    from alignkit.objectives.losses import mean_or_zero, unlearning_loss

    pts = _points(batch, cfg)
    loss = mean_or_zero(unlearning_loss(pts.logps[~pts.positive]))
    return loss, _point_metrics(pts, cfg.beta)


def _unlikelihood(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    from alignkit.objectives.losses import (
        unlearning_loss,
        unlikelihood_loss,
        unlikelihood_token_loss,
    )

    pts = _points(batch, cfg)
    neg = ~pts.positive
    if cfg.unlikelihood_form == "paper":
        neg_losses = unlearning_loss(pts.logps[neg])
    elif cfg.unlikelihood_form == "token":
        assert batch.policy.tokens is not None, "compute_loss checks needs_tokens"
        tokens = batch.policy.tokens[batch.mask][neg]
        token_mask = batch.policy.token_mask()[batch.mask][neg]
        neg_losses = unlikelihood_token_loss(tokens, token_mask, cfg.reduction)
    else:
        raise AlignkitError(
            f"unlikelihood_form must be 'paper' or 'token', got {cfg.unlikelihood_form!r}"
        )
    loss, pos_term, neg_term = unlikelihood_loss(pts.logps[pts.positive], neg_losses)
    terms = {"loss/positive": (pos_term, pts.positive), "loss/negative": (neg_term, neg)}
    return loss, _point_metrics(pts, cfg.beta) | _term_metrics(terms)


def _rrhf(batch: ObjectiveBatch, cfg: ObjectiveConfig) -> tuple[Tensor, Metrics]:
    """Rank term on length-normalised log-probs (RRHF's definition, whatever
    `cfg.reduction`); the SFT term on the best response uses `cfg.reduction`."""
    from alignkit.objectives.losses import rrhf_loss

    rank_logps = batch.policy.reduced("mean")
    sft_logps = batch.policy.reduced(cfg.reduction)
    loss, rank, sft = rrhf_loss(
        rank_logps, sft_logps, batch.labels, batch.mask, cfg.rrhf_sft_weight
    )
    return loss, {"loss/rank": rank.detach(), "loss/sft": sft.detach()}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft", "point", False, _sft, "supervised fine-tuning on the positive points"),
        Method("dpo", "pair", True, _dpo, "DPO on preference pairs (Rafailov et al. 2023)"),
        Method(
            "pointwise-dpo",
            "point",
            True,
            _pointwise_dpo,
            "point-wise DPO on binary-labelled points (ULMA paper)",
        ),
        Method(
            "pointwise-mse",
            "point",
            True,
            _pointwise_mse,
            "point-wise DPO with a squared loss on real-valued scores (ULMA paper)",
        ),
        Method(
            "ulma",
            "point",
            True,
            _ulma,
            "ULMA: SFT on positives + point-wise DPO on negatives (MSE variant for scores)",
        ),
        Method(
            "unlearning",
            "point",
            False,
            _unlearning,
            "minimise the log-likelihood of the negative points",
        ),
        Method(
            "unlikelihood",
            "point",
            False,
            _unlikelihood,
            "SFT on positives + unlearning (paper) or token-level unlikelihood on negatives",
            _token_form,
        ),
        Method(
            "positive-dpo",
            "point",
            True,
            partial(_class_dpo, positive=True),
            "point-wise DPO on the positive points only (ULMA ablation)",
        ),
        Method(
            "negative-dpo",
            "point",
            True,
            partial(_class_dpo, positive=False),
            "point-wise DPO on the negative points only (ULMA ablation)",
        ),
        Method(
            "rrhf",
            "multi",
            False,
            _rrhf,
            "RRHF: rank loss over scored responses + SFT on the best (Yuan et al. 2023)",
        ),
    )
}


def get_method(name: str) -> Method:
    """The registered method called `name`; an AlignkitError lists the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise AlignkitError(
            f"unknown method {name!r}; choose one of: {', '.join(METHODS)}"
        ) from None


def _check_inputs(method: Method, batch: ObjectiveBatch, cfg: ObjectiveConfig) -> None:
    if batch.kind != method.kind:
        raise AlignkitError(
            f"method {method.name!r} trains on {method.kind} data, got a {batch.kind} batch"
        )
    if method.needs_ref and batch.ref is None:
        raise AlignkitError(f"method {method.name!r} needs reference log-probs (batch.ref)")
    if method.needs_tokens(cfg) and batch.policy.tokens is None:
        raise AlignkitError(
            f"method {method.name!r} with this config needs per-token log-probs "
            "(batch.policy.tokens)"
        )
    if cfg.deft_lambda != 0 and batch.policy.r_q is None:
        raise AlignkitError(
            "deft_lambda != 0 needs the DEFT distribution reward R_Q (batch.policy.r_q); "
            "enable DEFT scoring in the forward pass or set deft_lambda to 0"
        )


def compute_loss(
    method: Method | str, batch: ObjectiveBatch, cfg: ObjectiveConfig
) -> tuple[Tensor, Metrics]:
    """The method's loss plus the DEFT guidance term -lambda * mean R_Q(x, positive).

    Metrics: the method's, "deft/r_q" (mean R_Q of the present high-quality sequences)
    whenever `batch.policy.r_q` is set, and "loss" (the total) always.
    """
    from alignkit.objectives.losses import deft_guidance

    method = get_method(method) if isinstance(method, str) else method
    _check_inputs(method, batch, cfg)
    loss, metrics = method.compute(batch, cfg)
    if batch.policy.r_q is not None:
        r_q = batch.policy.r_q[batch.mask & batch.high_quality]
        if cfg.deft_lambda != 0:
            loss = loss + deft_guidance(r_q, cfg.deft_lambda)
        if r_q.numel():
            metrics["deft/r_q"] = r_q.mean().detach()
    metrics["loss"] = loss.detach()
    return loss, metrics
