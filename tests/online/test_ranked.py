"""RAFT and online RRHF (`alignkit.online.ranked`): the selection and the core objective."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import chat, seq

from alignkit.data.records import Multi, Point
from alignkit.data.tokenize import encode_records
from alignkit.objectives import ObjectiveConfig
from alignkit.objectives.losses import rrhf_loss
from alignkit.online.ranked import RAFTStrategy, RRHFStrategy, n_selected, raft_select
from alignkit.online.samples import Sampled
from alignkit.scoring.packing import collate

# ----------------------------------------------------------- RAFT and RRHF


def test_raft_selection() -> None:
    scores = [[0.1, 0.9, 0.9], [2.0, 1.0, 0.0]]
    assert raft_select(scores, "per-prompt", 1.0) == [(0, 1), (1, 0)]  # ties: first
    assert raft_select(scores, "global", 0.5) == [(0, 1), (1, 0), (1, 1)]  # 0.9 tie: first
    assert n_selected(6, 0.5) == 3 and n_selected(6, 0.01) == 1 and n_selected(8, 0.25) == 2
    objective = ObjectiveConfig()
    strategy = RAFTStrategy(3, "global", 0.5, objective)
    samples = [Sampled(chat(f"q{i}"), ["a", "b", "c"], s) for i, s in enumerate(scores)]
    records, metrics = strategy.build(samples)
    assert all(isinstance(r, Point) and r.high_quality and r.label == 1.0 for r in records)
    assert [r.completion for r in records] == ["b", "a", "b"]
    assert len(records) == strategy.examples(2)
    assert metrics["raft/selected_reward"] == pytest.approx((0.9 + 2.0 + 1.0) / 3)
    cut = [dataclasses.replace(x, finished=[True, False, True]) for x in samples]
    assert [r.unfinished for r in strategy.build(cut)[0]] == [True, False, True]  # type: ignore[union-attr]
    assert strategy.rows(samples)[1]["selected"] == [True, True, False]
    assert RAFTStrategy(3, "per-prompt", 0.5, objective).examples(2) == 2


def test_rrhf_uses_the_core_objective(tiny_model) -> None:
    from alignkit.models import load_tokenizer

    tok = load_tokenizer(tiny_model)
    strategy = RRHFStrategy(3, ObjectiveConfig(rrhf_sft_weight=0.5))
    samples = [Sampled(chat("q"), ["a", "b b", "c"], [0.0, 2.0, 1.0])]
    records, _ = strategy.build(samples)
    assert isinstance(records[0], Multi) and records[0].scores == (0.0, 2.0, 1.0)
    assert records[0].unfinished == (False, False, False)
    cut = Sampled(chat("q"), ["a", "b b", "c"], [0.0, 2.0, 1.0], [True, False, True])
    assert strategy.build([cut])[0][0].unfinished == (False, True, False)  # type: ignore[union-attr]
    batch = collate(encode_records(records, tok)[0], tok.pad_token_id)
    policy = seq([[-3.0, -1.0, -4.0]], batch.counts.tolist())
    loss, metrics = strategy.loss(lambda b, autocast: policy, batch, None, None)
    avg = policy.reduced("mean")
    expected, _, _ = rrhf_loss(avg, policy.sum, batch.labels, batch.mask, 0.5)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()))
    assert "loss/rank" in metrics and strategy.rows(samples)[0]["best"] == 1
