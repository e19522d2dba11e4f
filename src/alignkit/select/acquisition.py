"""Acquisition functions of active preference learning: which unlabelled pairs to label next.

A round of active learning (`alignkit.study.active`, `alignkit label select`) scores a set of
candidate pairs with the model trained on the labels so far and asks for the labels of the
best ones. Every function here is **label-free**: a candidate is two responses (a, b) nobody
has judged yet, and every score is symmetric in a and b (a mean over the two, |.| of a
difference, a cosine, an outer product), so swapping them cannot change what is acquired.

- `random`: a seeded uniform draw.
- `real` (REAL, Zhang et al.): cosine similarity of the two responses' embeddings; easy = the
  least similar first, hard = the most similar first.
- `apl` (APL, Muldrew et al., ICML 2024): the policy's predictive entropy of the prompt,
  H(x) ~ -(1/N) sum_n log pi(y_n | x) over the candidate responses, and the certainty of
  DPO's implicit preference model, |sigma(beta (r_a - r_b)) - 0.5| with
  r = log pi(y|x) - log pi_ref(y|x). `hybrid` keeps the `entropy_keep` x count candidates of
  highest entropy, then takes the most certain of them; `certainty` / `entropy` use one score.
- `dopt` (ADPO, Kveton et al., 2025): a greedy D-optimal design on last-layer features of the
  pair, x = phi(a) - phi(b): each pick maximises w x^T V^-1 x (V = reg I + the outer products
  of the pairs labelled or picked so far; w = 1, or sigma'(beta (r_a - r_b)) when `weighted`),
  the gain in log det V.

Ties are broken by a seeded shuffle (`alignkit.select.common.keep_order`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit.errors import AlignkitError
from alignkit.select.common import keep_order, resolve_options


@dataclass(frozen=True)
class Acquisition:
    """An acquisition function's name, options (name -> default), allowed values, and what
    it needs from the current model: `logps` (policy and reference log-probs of both
    responses) and/or `embeddings` (last-layer features of each response)."""

    name: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    needs: tuple[str, ...] = ()

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated with `options`; an error for an unknown name or value."""
        merged = resolve_options(f"acquisition {self.name}", self.options, self.choices, options)
        keep = merged.get("entropy_keep")
        if keep is not None and not float(keep) >= 1:
            raise AlignkitError(f"acquisition {self.name}: entropy_keep must be >= 1, got {keep}")
        reg = merged.get("reg")
        if reg is not None and not float(reg) > 0:
            raise AlignkitError(f"acquisition {self.name}: reg must be > 0, got {reg}")
        return merged


ACQUISITIONS: dict[str, Acquisition] = {
    a.name: a
    for a in (
        Acquisition("random", "a seeded random draw of the unlabelled candidates"),
        Acquisition(
            "real",
            "REAL per round: cosine similarity of the two responses' embeddings under the "
            "current model; easy = least similar first, hard = most similar first",
            options={"strategy": "easy"},
            choices={"strategy": ("easy", "hard")},
            needs=("embeddings",),
        ),
        Acquisition(
            "apl",
            "APL: predictive entropy of the policy, then the certainty of DPO's implicit "
            "preference |sigma(beta (r_a - r_b)) - 0.5| (hybrid), or one of them",
            options={"mode": "hybrid", "entropy_keep": 2.0},
            choices={"mode": ("hybrid", "certainty", "entropy")},
            needs=("logps",),
        ),
        Acquisition(
            "dopt",
            "ADPO: greedy D-optimal design on last-layer feature differences of the pairs",
            options={"weighted": False, "reg": 1.0},
            choices={"weighted": (False, True)},
            needs=("embeddings", "logps"),
        ),
    )
}


def get_acquisition(name: str) -> Acquisition:
    """The acquisition function `name`; an error listing the names when there is none."""
    if name not in ACQUISITIONS:
        raise AlignkitError(f"unknown acquisition {name!r}; choose {', '.join(ACQUISITIONS)}")
    return ACQUISITIONS[name]


# ------------------------------------------------------------------ scores (pure)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def predictive_entropy(logps: np.ndarray) -> np.ndarray:
    """(n,) Monte-Carlo predictive entropy of each prompt's policy, -(1/K) sum_k log pi(y_k|x).

    logps: (n, K) summed log-probs of the K candidate responses of each prompt."""
    return -np.asarray(logps, dtype=np.float64).mean(axis=1)


def preference_probability(reward_a: np.ndarray, reward_b: np.ndarray, beta: float) -> np.ndarray:
    """(n,) DPO's implicit preference p(a > b) = sigma(beta (r_a - r_b)); r_* (n,) implicit
    rewards log pi(y|x) - log pi_ref(y|x)."""
    return sigmoid(beta * (np.asarray(reward_a, np.float64) - np.asarray(reward_b, np.float64)))


def preference_certainty(reward_a: np.ndarray, reward_b: np.ndarray, beta: float) -> np.ndarray:
    """(n,) |p(a > b) - 0.5| in [0, 0.5): symmetric in a and b."""
    return np.abs(preference_probability(reward_a, reward_b, beta) - 0.5)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """(n,) -p log p - (1-p) log(1-p) (nats): a decreasing function of |p - 0.5|, so ranking by
    low preference entropy is ranking by high certainty."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def implicit_rewards(policy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n, K) r = log pi - log pi_ref of summed log-probs (n, K)."""
    return np.asarray(policy, np.float64) - np.asarray(reference, np.float64)


# ------------------------------------------------------------------ picking (pure)


def top(scores: np.ndarray, count: int, seed: int, highest: bool = True) -> np.ndarray:
    """(count,) indices of the highest (or lowest) scores, best first; ties in a seeded
    order."""
    order = keep_order(scores, "highest" if highest else "lowest", seed)
    return order[:count]


def apl_pick(
    entropy: np.ndarray,
    certainty: np.ndarray,
    count: int,
    mode: str = "hybrid",
    entropy_keep: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """(count,) candidate indices in pick order. hybrid: the ceil(entropy_keep * count)
    candidates of highest entropy, of them the `count` of highest certainty; certainty /
    entropy: the highest of that score."""
    if mode == "entropy":
        return top(entropy, count, seed)
    if mode == "certainty":
        return top(certainty, count, seed)
    if mode != "hybrid":
        raise AlignkitError(f"apl: unknown mode {mode!r}; choose hybrid, certainty, entropy")
    kept = top(entropy, min(len(entropy), math.ceil(entropy_keep * count)), seed)
    return kept[top(np.asarray(certainty)[kept], count, seed)]


def real_pick(similarity: np.ndarray, count: int, strategy: str, seed: int = 0) -> np.ndarray:
    """(count,) indices: easy = least similar first, hard = most similar first."""
    if strategy not in ("easy", "hard"):
        raise AlignkitError(f"real: unknown strategy {strategy!r}; choose easy, hard")
    return top(similarity, count, seed, highest=strategy == "hard")


def d_optimal_pick(
    features: np.ndarray,
    count: int,
    prior: np.ndarray | None = None,
    reg: float = 1.0,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """(count,) greedy D-optimal design: each step takes the candidate maximising
    w_i x_i^T V^-1 x_i and adds w_i x_i x_i^T to V (V_0 = reg I + sum over `prior` rows of
    x x^T). features: (n, d) pair features x_i; prior: (m, d) features of pairs already
    labelled; weights: (n,) w_i >= 0 (default 1). Ties: the lower index. Each pick raises
    log det V by log(1 + w x^T V^-1 x), the largest gain available (Sherman-Morrison)."""
    x = np.asarray(features, np.float64)
    n, d = x.shape
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    inv = np.eye(d) / reg
    for row in np.asarray(prior if prior is not None else np.zeros((0, d)), np.float64):
        inv = _rank_one_update(inv, row, 1.0)
    picked: list[int] = []
    free = np.ones(n, dtype=bool)
    for _ in range(min(count, n)):
        gains = w * np.einsum("nd,de,ne->n", x, inv, x)
        gains[~free] = -np.inf
        best = int(np.argmax(gains))
        picked.append(best)
        free[best] = False
        inv = _rank_one_update(inv, x[best], w[best])
    return np.array(picked, dtype=np.int64)


def _rank_one_update(inv: np.ndarray, x: np.ndarray, w: float) -> np.ndarray:
    """(V + w x x^T)^-1 from V^-1 (Sherman-Morrison)."""
    vx = inv @ x
    return inv - w * np.outer(vx, vx) / (1.0 + w * x @ vx)


# ------------------------------------------------------------------ one entry point


@dataclass
class CandidateScores:
    """What the current model says about n candidate pairs (a, b), label-free.

    policy, reference: (n, 2) summed log-probs of (a, b) (None unless the acquisition needs
    `logps`); features: (n, d) last-layer feature of each pair phi(a) - phi(b) and
    similarity (n,) cosine(a, b) (None unless it needs `embeddings`); prior: (m, d) the
    features of the pairs labelled before (for `dopt`)."""

    n: int
    policy: np.ndarray | None = None
    reference: np.ndarray | None = None
    features: np.ndarray | None = None
    similarity: np.ndarray | None = None
    prior: np.ndarray | None = None


def acquire(
    name: str,
    options: Mapping[str, Any],
    scores: CandidateScores,
    count: int,
    *,
    beta: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """(count,) indices into the n candidates, in pick order, by acquisition `name`."""
    options = get_acquisition(name).resolve_options(options)
    count = min(count, scores.n)
    if name == "random":
        return np.random.default_rng(seed).permutation(scores.n)[:count]
    if name == "real":
        assert scores.similarity is not None
        return real_pick(scores.similarity, count, options["strategy"], seed)
    assert scores.policy is not None and scores.reference is not None
    rewards = implicit_rewards(scores.policy, scores.reference)
    if name == "apl":
        entropy = predictive_entropy(scores.policy)
        certainty = preference_certainty(rewards[:, 0], rewards[:, 1], beta)
        return apl_pick(
            entropy, certainty, count, options["mode"], float(options["entropy_keep"]), seed
        )
    assert scores.features is not None
    weights = None
    if options["weighted"]:
        p = preference_probability(rewards[:, 0], rewards[:, 1], beta)
        weights = p * (1 - p)
    return d_optimal_pick(scores.features, count, scores.prior, float(options["reg"]), weights)
