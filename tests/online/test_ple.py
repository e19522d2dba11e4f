"""The PLE strategy (`alignkit.online.ple`): branches follow tau, tau decays, the paper's
weights, the ablation flags."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import chat

from alignkit.data.records import Multi
from alignkit.errors import AlignkitError
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.objectives import ObjectiveConfig
from alignkit.objectives.ple import ple_branch
from alignkit.online.config import PLEConfig
from alignkit.online.loop import make_strategy
from alignkit.online.ple import PLEStrategy
from alignkit.online.samples import Sampled

# ----------------------------------------------------------------- PLE strategy


def ple(tau0: float = 0.2, alpha: float = 0.9, form: str = "paper", reduction: str = "sum"):
    return PLEStrategy("P", "system", tau0, alpha, form, reduction)  # type: ignore[arg-type]


def samples_with(scores: list[tuple[float, float]]) -> list[Sampled]:
    return [Sampled(chat(f"q{i}"), [f"y{i}", f"yp{i}"], list(s)) for i, s in enumerate(scores)]


def test_branches_follow_tau_and_tau_decays() -> None:
    strategy = ple(tau0=0.2, alpha=0.9)
    samples = samples_with([(0.0, 0.5), (0.0, 0.19), (1.0, 1.1), (0.0, -0.5)])
    assert [r["branch"] for r in strategy.rows(samples)] == ["rank", "sft", "sft", "sft"]
    metrics = strategy.sample_metrics(samples)
    assert (metrics["ple/n_rank"], metrics["ple/n_sft"], metrics["ple/tau"]) == (1, 3, 0.2)
    assert metrics["ple/gap"] == pytest.approx((0.5 + 0.19 + 1.1 - 0.5) / 4 - 0.25)
    strategy.end_iteration()
    assert strategy.tau == pytest.approx(0.18)
    assert [r["branch"] for r in strategy.rows(samples)] == ["rank", "rank", "sft", "sft"]
    strategy.end_iteration()
    assert strategy.tau == pytest.approx(0.162)
    cut = Sampled(chat("q"), ["y", "yp"], [0.0, 1.0], [False, True])
    (record,), _ = strategy.build([cut])
    assert isinstance(record, Multi) and record.unfinished == (True, False)
    assert strategy.rows([cut])[0]["finished"] == [False, True]
    assert Sampled.from_dict(cut.to_dict()) == cut
    assert Sampled.from_dict({"prompt": "q", "responses": ["a"], "scores": [1]}).finished == [True]
    restored = ple(tau0=5.0)
    restored.load_state_dict(strategy.state_dict())
    assert restored.tau == pytest.approx(0.162)


def test_weights_match_the_paper_formula() -> None:
    strategy = ple(tau0=10.0)  # every example in the weighted-SFT branch
    pairs = [(0.3, -1.2), (2.0, 2.5), (-4.0, 3.0)]
    for row, (s, s_p) in zip(strategy.rows(samples_with(pairs)), pairs, strict=True):
        e, e_p = math.exp(s), math.exp(s_p)
        assert row["w"] == pytest.approx(2 * e / (e + e_p) - 1, rel=1e-5)
        assert row["w_p"] == pytest.approx(2 * e_p / (e + e_p) - 1, rel=1e-5)
        assert (row["s"], row["s_p"], row["y"], row["y_p"]) == (s, s_p, row["y"], row["y_p"])
    rank_row = ple(tau0=0.0).rows(samples_with([(0.0, 1.0)]))[0]
    assert rank_row["branch"] == "rank" and rank_row["w"] is None


class _RecordingGenerator:
    def __init__(self) -> None:
        self.calls: list = []

    def generate(self, prompts, sampling, k):
        self.calls.append((list(prompts), k))
        return [[Completion(f"{p}#{j}", True) for j in range(k)] for p in prompts]


def test_ple_ablation_flags_reach_sampling_and_branches() -> None:
    sampling = SamplingConfig(max_new_tokens=4)
    full = PLEStrategy("P", "prefix", 0.2, 0.9, "paper", "sum")
    gen = _RecordingGenerator()
    assert full.generate(["x"], gen, sampling) == [[Completion("x#0"), Completion("P\n\nx#0")]]
    assert gen.calls == [(["x", "P\n\nx"], 1)]
    no_rank = PLEStrategy("P", "prefix", 0.2, 0.9, "paper", "sum", rank_loss=False)
    gen = _RecordingGenerator()
    out = no_rank.generate(["x"], gen, sampling)  # no principle: two samples from x
    assert gen.calls == [(["x"], 2)] and out == [[Completion("x#0"), Completion("x#1")]]
    samples = samples_with([(0.0, 1.0), (0.5, 0.6)])
    assert [r["branch"] for r in full.rows(samples)] == ["rank", "sft"]
    assert [r["branch"] for r in no_rank.rows(samples)] == ["sft", "sft"]
    no_sft = PLEStrategy("P", "prefix", 0.2, 0.9, "paper", "sum", weighted_sft=False)
    rows = no_sft.rows(samples)
    assert [r["branch"] for r in rows] == ["rank", "none"] and rows[1]["w"] is None
    metrics = no_sft.sample_metrics(samples)
    assert (metrics["ple/n_rank"], metrics["ple/n_sft"]) == (1, 0)
    made = make_strategy(PLEConfig(rank_loss=False), ObjectiveConfig())
    assert isinstance(made, PLEStrategy) and not made.rank_loss and made.weighted_sft
    with pytest.raises(AlignkitError, match="no loss"):
        PLEConfig(queries="q", output="o", rank_loss=False, weighted_sft=False).validate()


def test_ple_branch_is_strict() -> None:
    s, s_p = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.25])
    assert ple_branch(s, s_p, 0.25).tolist() == [True, False]
