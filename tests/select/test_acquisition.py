"""Acquisition functions of active preference learning: scores by hand, label-free picks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignkit.errors import AlignkitError
from alignkit.select.acquisition import (
    CandidateScores,
    acquire,
    apl_pick,
    binary_entropy,
    d_optimal_pick,
    get_acquisition,
    predictive_entropy,
    preference_certainty,
    real_pick,
)


def test_predictive_entropy_and_certainty_by_hand() -> None:
    """Entropy: -(mean of the log-probs) = -(-4 - 6)/2 = 5. Certainty with beta 0.5 and
    r_a - r_b = 2: sigma(1) - 0.5 = 0.7311 - 0.5 = 0.2311, the same with a and b swapped."""
    assert predictive_entropy(np.array([[-4.0, -6.0]]))[0] == pytest.approx(5.0)
    c = preference_certainty(np.array([3.0]), np.array([1.0]), 0.5)[0]
    assert c == pytest.approx(1 / (1 + math.exp(-1)) - 0.5)
    assert preference_certainty(np.array([1.0]), np.array([3.0]), 0.5)[0] == pytest.approx(c)
    # the preference entropy orders as the certainty, reversed
    p = np.array([0.5, 0.6, 0.9, 0.2])
    assert list(np.argsort(binary_entropy(p))) == list(np.argsort(-np.abs(p - 0.5)))


def test_apl_hybrid_filters_by_entropy_then_takes_the_most_certain() -> None:
    """6 candidates, count 2, entropy_keep 2: the 4 of highest entropy are 0, 1, 2, 3
    (entropies 9, 8, 7, 6); of them the most certain are 3 (0.4) and 1 (0.3). Candidate 5
    is the most certain of all (0.45) but has the lowest entropy: hybrid leaves it, certainty
    alone takes it first."""
    entropy = np.array([9.0, 8.0, 7.0, 6.0, 2.0, 1.0])
    certainty = np.array([0.1, 0.3, 0.2, 0.4, 0.0, 0.45])
    assert apl_pick(entropy, certainty, 2, "hybrid", 2.0).tolist() == [3, 1]
    assert apl_pick(entropy, certainty, 2, "certainty").tolist() == [5, 3]
    assert apl_pick(entropy, certainty, 2, "entropy").tolist() == [0, 1]


def test_real_pick_and_d_optimal_design_by_hand() -> None:
    sim = np.array([0.9, 0.1, 0.5])
    assert real_pick(sim, 2, "easy").tolist() == [1, 2]
    assert real_pick(sim, 2, "hard").tolist() == [0, 2]
    # V0 = I. Gains x^T x: 4, 1, 4.84 -> pick 2 ([2.2, 0]). Then V = diag(1 + 4.84, 1):
    # gains 4 / 5.84 = 0.685 for [2, 0], 1 for [0, 1] -> pick 1: a new direction beats a
    # bigger step along a known one.
    x = np.array([[2.0, 0.0], [0.0, 1.0], [2.2, 0.0]])
    assert d_optimal_pick(x, 2).tolist() == [2, 1]
    # a labelled pair along [0, 1] already (prior): then the second pick is 0
    assert d_optimal_pick(x, 2, prior=np.array([[0.0, 3.0]])).tolist() == [2, 0]
    # signs do not matter (a swapped pair has x -> -x)
    assert d_optimal_pick(-x, 2).tolist() == [2, 1]


def test_every_acquisition_is_symmetric_in_the_two_responses() -> None:
    """Swapping a and b of every candidate (the unrevealed labels) leaves every pick as is."""
    rng = np.random.default_rng(0)
    n, d = 40, 5
    policy, reference = rng.normal(-20, 5, (n, 2)), rng.normal(-20, 5, (n, 2))
    ea, eb = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    ea /= np.linalg.norm(ea, axis=1, keepdims=True)
    eb /= np.linalg.norm(eb, axis=1, keepdims=True)

    def scores(swap: bool) -> CandidateScores:
        a, b = (eb, ea) if swap else (ea, eb)
        cols = [1, 0] if swap else [0, 1]
        return CandidateScores(
            n=n,
            policy=policy[:, cols],
            reference=reference[:, cols],
            features=a - b,
            similarity=(a * b).sum(-1),
            prior=np.zeros((0, d)),
        )

    cases = [
        ("random", {}),
        ("real", {"strategy": "easy"}),
        ("real", {"strategy": "hard"}),
        ("apl", {}),
        ("apl", {"mode": "certainty"}),
        ("dopt", {"weighted": True}),
    ]
    for name, options in cases:
        first = acquire(name, options, scores(False), 7, beta=0.1, seed=3)
        assert len(set(first.tolist())) == 7
        assert acquire(name, options, scores(True), 7, beta=0.1, seed=3).tolist() == (
            first.tolist()
        ), name


def test_unknown_acquisitions_and_options_are_refused() -> None:
    with pytest.raises(AlignkitError, match="unknown acquisition"):
        get_acquisition("deft")
    with pytest.raises(AlignkitError, match="mode"):
        get_acquisition("apl").resolve_options({"mode": "both"})
    with pytest.raises(AlignkitError, match="entropy_keep"):
        get_acquisition("apl").resolve_options({"entropy_keep": 0.5})
