"""`alignkit.labelling.choose`: REAL's easy/hard/random/centroid pairs and reward-model
uncertainty, on hand-made numbers and through `label select` (options checked, the tiny model)."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    CHAT,
    length_reward,  # noqa: F401 (named by a --reward-model spec)
    run_label,
    write_jsonl,
)

from alignkit.io import read_jsonl as read_rows
from alignkit.labelling.choose import (
    Candidates,
    candidates,
    rank_apl,
    rank_real,
    rank_uncertainty,
    take_budget,
)
from alignkit.labelling.pairs import pair_id, read_pairs, read_pool


def test_easy_and_hard_on_hand_made_embeddings():
    # prompt 0: r0=(1,0) r1=(0,1) r2=(.6,.8): cos(0,1)=0, cos(0,2)=.6, cos(1,2)=.8
    # prompt 1: r0=(1,0) r1=(.28,.96): cos = .28 (its only pair)
    emb = torch.tensor([[1, 0], [0, 1], [0.6, 0.8], [1, 0], [0.28, 0.96]])
    easy = rank_real(emb, [3, 2], "easy")
    assert [(r.prompt, r.i, r.j) for r in easy] == [(0, 0, 1), (1, 0, 1)]  # 0 < .28
    assert [round(r.score, 4) for r in easy] == [0.0, 0.28]
    hard = rank_real(emb, [3, 2], "hard")
    assert [(r.prompt, r.i, r.j) for r in hard] == [(0, 1, 2), (1, 0, 1)]  # .8 > .28
    cands = Candidates(["p0", "p1"], [["r0", "r1", "r2"], ["s0", "s1"]])
    (pair,) = take_budget(hard, cands, 1, "hard")
    assert (pair.prompt, pair.a, pair.b, pair.strategy) == ("p0", "r1", "r2", "hard")
    assert pair.pair_id == pair_id("p0", "r1", "r2") and pair.score == pytest.approx(0.8)
    # a budget above the prompts with a pair: one pair per prompt
    assert len(take_budget(easy, cands, 10, "easy")) == 2


def test_random_and_centroid_orders_are_seeded():
    emb = torch.nn.functional.normalize(torch.randn(12, 4, generator=torch.manual_seed(0)), dim=-1)
    for strategy in ("random", "centroid"):
        first = rank_real(emb, [3, 3, 3, 3], strategy, seed=5)
        assert first == rank_real(emb, [3, 3, 3, 3], strategy, seed=5)
        assert sorted(r.prompt for r in first) == [0, 1, 2, 3]
        assert all(r.i < r.j for r in first)


def test_rank_uncertainty_by_hand():
    # prompt 0: rewards 5, 9, 10 -> gaps 4, 5, 1: pair (1, 2), gap 1
    # prompt 1: rewards 3, 7 -> gap 4; prompt 2: rewards 2, 2.5, 2 -> gap 0 for (0, 2)
    ranked = rank_uncertainty([[5, 9, 10], [3, 7], [2, 2.5, 2]])
    assert [(r.prompt, r.i, r.j, r.score) for r in ranked] == [
        (2, 0, 2, 0.0),
        (0, 1, 2, 1.0),
        (1, 0, 1, 4.0),
    ]


POOL = [
    # lengths 5, 9, 10 (gap 1 between the last two); a blank and a repeat are not candidates
    {"prompt": "bake a cake", "responses": ["aaaaa", "bbbbbbbbb", "   ", "cccccccccc", "aaaaa"]},
    # lengths 3, 7: gap 4
    {"prompt": CHAT, "responses": ["sun", "rain it", "sun"], "finished": [True, True, True]},
    # one distinct response: no pair
    {"prompt": "only one", "responses": ["same", "same"]},
]


def test_label_select_uncertainty_with_a_function_reward(tmp_path, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", POOL)
    out = tmp_path / "pairs.jsonl"
    spec = f"{__name__}:length_reward"
    args = ["select", "--pool", pool, "--strategy", "uncertainty", "--reward-model", spec]
    assert run_label(*args, "--budget", "1", "--output", str(out)) == 0
    (row,) = read_rows(out)
    assert (row["prompt"], row["a"], row["b"]) == ("bake a cake", "bbbbbbbbb", "cccccccccc")
    assert row["score"] == 1.0 and row["strategy"] == "uncertainty"
    assert row["pair_id"] == pair_id("bake a cake", "bbbbbbbbb", "cccccccccc")
    # budget 5 > 2 prompts with a pair: both, in rank order, and a note
    assert run_label(*args, "--budget", "5", "--output", str(out)) == 0
    rows = read_rows(out)
    assert [(r["a"], r["b"], r["score"]) for r in rows] == [
        ("bbbbbbbbb", "cccccccccc", 1.0),
        ("sun", "rain it", 4.0),
    ]
    assert rows[1]["prompt"] == CHAT
    printed = capsys.readouterr().out
    assert "2 pairs from 3 prompts" in printed and "1 with fewer than 2" in printed
    assert "--budget 5 is more than the 2 prompts" in printed
    assert read_pairs(out)[1].prompt == tuple(CHAT)


def test_label_select_real_with_the_tiny_model(tiny_model, tmp_path):
    pool = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"prompt": f"question {i}", "responses": [f"the cat {i}", "a dog is good", "rain"]}
            for i in range(3)
        ]
        + [
            {
                "prompt": "cut",
                "responses": ["sure here", "sorry", "kind"],
                "finished": [True, False, True],
            }
        ],
    )
    cache = tmp_path / "emb"
    common = ["--pool", pool, "--model", tiny_model, "--precision", "fp32", "--cache-dir"]
    common += [str(cache), "--batch-size", "4"]
    outs = {}
    for strategy in ("easy", "hard"):
        out = tmp_path / f"{strategy}.jsonl"
        assert run_label("select", *common, "--strategy", strategy, "--budget", "4",
                         "--output", str(out)) == 0  # fmt: skip
        outs[strategy] = read_rows(out)
    assert any(cache.rglob("part-*.pt"))  # --cache-dir holds the embeddings
    easy, hard = outs["easy"], outs["hard"]
    assert len(easy) == len(hard) == 4
    assert [r["score"] for r in easy] == sorted(r["score"] for r in easy)
    assert [r["score"] for r in hard] == sorted((r["score"] for r in hard), reverse=True)
    by_prompt = {r["prompt"]: r["score"] for r in hard}
    for row in easy:  # the least similar pair of a prompt vs its most similar
        assert row["score"] <= by_prompt[row["prompt"]] + 1e-6
    # --drop-unfinished: the "cut" prompt keeps 2 finished responses, that exact pair
    out = tmp_path / "finished.jsonl"
    assert run_label("select", *common, "--strategy", "random", "--budget", "4",
                     "--drop-unfinished", "--output", str(out)) == 0  # fmt: skip
    cut = [r for r in read_rows(out) if r["prompt"] == "cut"]
    assert [(r["a"], r["b"]) for r in cut] == [("sure here", "kind")]
    again = tmp_path / "again.jsonl"
    assert run_label("select", *common, "--strategy", "random", "--budget", "4",
                     "--drop-unfinished", "--output", str(again)) == 0  # fmt: skip
    assert read_rows(again) == read_rows(out)  # deterministic given --seed
    entries = read_pool(pool)
    assert candidates(entries).responses[3] == ["sure here", "sorry", "kind"]
    assert candidates(entries, drop_unfinished=True).responses[3] == ["sure here", "kind"]


def test_label_select_bad_options(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", POOL)
    base = ["select", "--pool", pool, "--output", str(tmp_path / "o.jsonl")]
    assert run_label(*base) == 2  # no --budget
    assert run_label(*base, "--budget", "0") == 2
    assert run_label(*base, "--budget", "2", "--strategy", "uncertainty") == 2  # no RM
    spec = f"{__name__}:length_reward"
    assert run_label(*base, "--budget", "2", "--reward-model", spec) == 2  # easy + RM
    assert not (tmp_path / "o.jsonl").exists()


def test_rank_apl_by_hand():
    """beta 1. Prompt 0: rewards (policy - reference) 0, -2, -1: the most certain pair is
    (0, 1), |sigma(2) - 0.5| = 0.3808; entropy -(-10 - 12 - 11)/3 = 11. Prompt 1: rewards
    2, -2: |sigma(4) - 0.5| = 0.4820, entropy 4. Prompt 2: rewards 0, 3: 0.4526, entropy
    20.5. Hybrid, budget 1, keep 2: the two of highest entropy are 2 and 0, the more certain
    is 2; then of 0 and 1 (both kept) 1 is the more certain. Certainty alone: 1, 2, 0."""
    policy = [[-10, -12, -11], [-3, -5], [-20, -21]]
    reference = [[-10, -10, -10], [-5, -3], [-20, -24]]
    ranked = rank_apl(policy, reference, 1, beta=1.0)
    assert [(r.prompt, r.i, r.j) for r in ranked] == [(2, 0, 1), (1, 0, 1), (0, 0, 1)]
    assert [round(r.score, 4) for r in ranked] == [0.4526, 0.482, 0.3808]
    by_certainty = rank_apl(policy, reference, 1, beta=1.0, mode="certainty")
    assert [r.prompt for r in by_certainty] == [1, 2, 0]
    assert [r.prompt for r in rank_apl(policy, reference, 1, mode="entropy")] == [2, 0, 1]


def test_label_select_apl_with_the_tiny_model(tiny_model, tmp_path):
    pool = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"prompt": f"question {i}", "responses": [f"the cat {i}", "a dog is good", "rain"]}
            for i in range(3)
        ],
    )
    out = tmp_path / "apl.jsonl"
    args = ["select", "--pool", pool, "--strategy", "apl", "--budget", "2", "--output", str(out)]
    assert run_label(*args) == 2  # apl needs --model (the policy trained so far)
    assert run_label(*args, "--model", tiny_model, "--ref", "none", "--precision", "fp32") == 0
    rows = read_rows(out)
    assert len(rows) == 2 and {r["strategy"] for r in rows} == {"apl"}
    assert all(0 <= r["score"] < 0.5 for r in rows)
