"""REAL selection: pair subsets and per-prompt pairs on constructed embeddings (against a
brute-force reference), orientation by score, embeddings against a manual forward, the
resumable cache, bad inputs, the CLI end to end (then DPO) and 2-process embedding."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import alignkit_on_two_ranks, make_tiny_model, make_tokenizer, pair_rows, write_jsonl

from alignkit.cli import main
from alignkit.data import Multi, Pair, Point
from alignkit.errors import AlignkitError
from alignkit.models import load_causal_lm, load_tokenizer
from alignkit.select import embeddings
from alignkit.select.common import fraction_count
from alignkit.select.configs import RealSelectConfig
from alignkit.select.embeddings import embed_texts
from alignkit.select.pipeline import run_selection
from alignkit.select.real import (
    real_mode,
    select_pair_subset,
    select_per_prompt,
)


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def offsets_of(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *itertools.accumulate(sizes)])


# ------------------------------------------------------------------------- pair subsets


def test_pair_subsets_pick_the_known_pairs():
    sim = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.1])
    assert select_pair_subset(sim, "easy", 0.5).tolist() == [1, 3, 5]
    assert select_pair_subset(sim, "hard", 0.5).tolist() == [0, 2, 4]
    assert select_pair_subset(sim, "easy", 1 / 6).tolist() == [1]  # tie: lower index first
    r1, r2 = (select_pair_subset(sim, "random", 0.5, seed=s) for s in (1, 1))
    assert r1.tolist() == r2.tolist() and len(r1) == 3 and len(set(r1.tolist())) == 3
    assert fraction_count(7, 0.5, "--fraction") == 4
    assert fraction_count(3, 0.01, "--fraction") == 1
    for bad in (0.0, 1.01, -1.0):
        with pytest.raises(AlignkitError, match=r"\(0, 1\]"):
            select_pair_subset(sim, "easy", bad)
    with pytest.raises(AlignkitError, match="centroid needs multi-response data"):
        select_pair_subset(sim, "centroid", 0.5)


# -------------------------------------------------------------------- per-prompt pairs


def _two_prompts():
    """Prompt 0: responses 0-2 near x, 3 is y. Cosines: (0,1) .941, (0,2) .795, (0,3) .188,
    (1,2) .949, (1,3) 0, (2,3) -.095; response 1 is nearest the mean of 0-2.
    Prompt 1: two responses with equal scores."""
    emb = unit(
        [1, 0.2, 0.3, 0], [1, 0, 0, 0], [1, -0.1, -0.3, 0.1], [0, 1, 0, 0],  # prompt 0
        [1, 1, 0, 0], [1, 0, 0, 0],  # prompt 1
    )  # fmt: skip
    scores = torch.tensor([1.0, 5.0, 2.0, 3.0, 4.0, 4.0], dtype=torch.float64)
    return emb, offsets_of([4, 2]), scores


def test_per_prompt_easy_hard_centroid_and_orientation():
    emb, offsets, scores = _two_prompts()
    gram = emb @ emb.T
    easy = select_per_prompt(emb, offsets, scores, "easy")
    assert easy.prompt.tolist() == [0]  # prompt 1 has only tied scores: dropped
    assert easy.counts["no_valid_pair"] == 1 and easy.counts["selected"] == 1
    # least similar pair of prompt 0 is (2, 3); chosen = the higher score (3 > 2)
    assert (easy.chosen.item(), easy.rejected.item()) == (3, 2)
    assert torch.isclose(easy.similarity[0], gram[2, 3])
    hard = select_per_prompt(emb, offsets, scores, "hard")
    assert (hard.chosen.item(), hard.rejected.item()) == (1, 2)  # most similar: (1, 2)
    centroid = select_per_prompt(emb, offsets, scores, "centroid")
    assert (centroid.chosen.item(), centroid.rejected.item()) == (1, 3)  # x and y centres
    rnd = select_per_prompt(emb, offsets, scores, "random", seed=3)
    assert scores[rnd.chosen].item() > scores[rnd.rejected].item()


def test_per_prompt_filters_length_and_score_ratio():
    emb, offsets, scores = _two_prompts()
    lengths = torch.tensor([5, 5, 50, 5, 5, 5])
    easy = select_per_prompt(emb, offsets, scores, "easy", lengths=lengths, max_length=10)
    assert (easy.chosen.item(), easy.rejected.item()) == (1, 3)  # response 2 too long
    ratio = select_per_prompt(emb, offsets, scores, "easy", min_score_ratio=2.0)
    # (2, 3) and (1, 3) have score ratios 1.5 and 1.67 < 2: the least similar left is (0, 3)
    assert (ratio.chosen.item(), ratio.rejected.item()) == (3, 0)
    few = select_per_prompt(emb, offsets, scores, "easy", lengths=lengths + 20, max_length=10)
    assert few.counts["too_few_responses"] == 2 and len(few.prompt) == 0


def _brute_force(emb, offsets, scores, strategy):
    out = {}
    for p in range(len(offsets) - 1):
        lo, hi = int(offsets[p]), int(offsets[p + 1])
        pairs = [(i, j) for i in range(lo, hi) for j in range(i + 1, hi) if scores[i] != scores[j]]
        if not pairs:
            continue
        sims = [float(emb[i] @ emb[j]) for i, j in pairs]
        pick = min if strategy == "easy" else max
        i, j = pairs[sims.index(pick(sims))]
        out[p] = (i, j) if scores[i] > scores[j] else (j, i)
    return out


@pytest.mark.parametrize("strategy", ["easy", "hard"])
def test_vectorised_selection_matches_brute_force(strategy):
    rng = random.Random(0)
    sizes = [rng.randint(2, 6) for _ in range(300)]
    emb = F.normalize(
        torch.randn(sum(sizes), 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    scores = torch.tensor([float(rng.randint(0, 3)) for _ in emb], dtype=torch.float64)
    got = select_per_prompt(emb, offsets_of(sizes), scores, strategy, chunk=37)
    want = _brute_force(emb, offsets_of(sizes), scores, strategy)
    pairs = zip(got.chosen.tolist(), got.rejected.tolist(), strict=True)
    assert dict(zip(got.prompt.tolist(), pairs, strict=True)) == want


def test_centroid_is_nearest_to_2_means_centres():
    """Against plain 2-means (sklearn-free): 3 prompts of 6 responses in 2 clear groups."""
    gen = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(6, 16, generator=gen), dim=-1)
    emb = F.normalize(
        centres.repeat_interleave(3, 0) + 0.1 * torch.randn(18, 16, generator=gen), dim=-1
    )
    scores = torch.arange(18, dtype=torch.float64)
    got = select_per_prompt(emb, offsets_of([6, 6, 6]), scores, "centroid")
    for p in range(3):
        groups = [list(range(6 * p, 6 * p + 3)), list(range(6 * p + 3, 6 * p + 6))]
        expected = set()
        for g in groups:
            mean = emb[g].mean(0)
            expected.add(g[int(((emb[g] - mean) ** 2).sum(-1).argmin())])
        assert {got.chosen[p].item(), got.rejected[p].item()} == expected


def test_centroid_where_wrong_rules_pick_other_pairs():
    """One prompt of 6 responses where the 2-means answer differs from two plausible wrong
    rules, checked against 2-means by enumeration (all 31 splits: the global optimum, which
    sklearn's KMeans with several restarts finds too).

    Cosines (3 decimals): the least similar pair is (1, 5), -0.816. Seeded with it, each
    response joins the nearer seed: 0 (-0.258 to 1 vs -0.316 to 5) and 2 (0.132 vs 0) join 1,
    3 (-0.132 vs 0) and 4 (-0.471 vs 0) join 5: {0, 1, 2} | {3, 4, 5}, SSE 2.015 + 2.250.
    Lloyd's update then moves 0 and 3: {1, 2, 3} | {0, 4, 5}, SSE 1.404 + 1.846 = 3.249, the
    best split (the next best is 0.125 worse). Squared distances to the centres: 1 .865,
    2 .181, 3 .357 and 0 .564, 4 .353, 5 .929, so the centroid pair is (2, 4).
    Fails on: the least similar pair as the centroid pair (1, 5); the responses nearest the
    centres of the seed assignment without Lloyd's iterations (2, 5)."""
    raw = [[-1, 2, 0], [-3, -3, 3], [-3, -1, -3], [-3, 1, -3], [1, 2, 1], [2, 0, -2]]
    emb = F.normalize(torch.tensor(raw, dtype=torch.float64), dim=-1)
    scores = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)  # all distinct

    def nearest(group: list[int]) -> int:
        centre = emb[group].mean(0)
        return group[int(((emb[group] - centre) ** 2).sum(-1).argmin())]

    def sse(group: list[int]) -> float:
        return float(((emb[group] - emb[group].mean(0)) ** 2).sum())

    splits = []
    for mask in range(1, 2**5):  # response 5 always in the second group: each split once
        first = [i for i in range(6) if mask >> i & 1]
        second = [i for i in range(6) if not mask >> i & 1]
        splits.append((sse(first) + sse(second), first, second))
    best, first, second = min(splits)
    assert (first, second) == ([1, 2, 3], [0, 4, 5]) and best == pytest.approx(3.249, abs=1e-3)
    assert {nearest(first), nearest(second)} == {2, 4}
    assert {nearest([0, 1, 2]), nearest([3, 4, 5])} == {2, 5}  # the seed split, no update
    got = select_per_prompt(emb.float(), offsets_of([6]), scores, "centroid")
    assert (got.chosen.item(), got.rejected.item()) == (2, 4)  # oriented: score 4 > 2


def test_centroid_finds_the_best_split_where_one_lloyd_run_stops_short():
    """Six unit vectors on a circle at 0, 80, 100, 110, 120 and 180 degrees. Seeded with the
    least similar pair (0 deg, 180 deg), Lloyd's converges to {0, 80} | {100, 110, 120, 180}
    (SSE 0.826 + 1.038 = 1.864), but the best split, by the enumeration below, is
    {0} | {80, ..., 180} (SSE 0 + 1.471): restarting from every pair finds it. Squared
    distances to the centre of {80..180}: .347, .091, .035, .030, .969, so the response nearest
    it is 120 deg (index 4) and the centroid pair is (0, 4)."""
    angles = torch.tensor([0.0, 80, 100, 110, 120, 180], dtype=torch.float64).deg2rad()
    emb = torch.stack([angles.cos(), angles.sin()], dim=1)

    def sse(group: list[int]) -> float:
        return float(((emb[group] - emb[group].mean(0)) ** 2).sum())

    local = sse([0, 1]) + sse([2, 3, 4, 5])
    best = sse([0]) + sse([1, 2, 3, 4, 5])
    assert local == pytest.approx(1.864, abs=1e-3) and best == pytest.approx(1.471, abs=1e-3)
    splits = [
        sse([i for i in range(6) if m >> i & 1]) + sse([i for i in range(6) if not m >> i & 1])
        for m in range(1, 2**5)
    ]
    assert min(splits) == pytest.approx(best)
    scores = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    got = select_per_prompt(emb.float(), offsets_of([6]), scores, "centroid")
    assert (got.chosen.item(), got.rejected.item()) == (0, 4)


# --------------------------------------------------------------------------- embeddings


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    return load_causal_lm(tiny_model).eval(), load_tokenizer(tiny_model)


def test_embeddings_are_normalised_means_of_the_last_hidden_layer(model_and_tokenizer):
    model, tok = model_and_tokenizer
    texts = ["sorry I can not help", " sure here is how", "sorry I can not help", "a"]
    emb = embed_texts(model, tok, texts, batch_size=2)
    assert emb.matrix.shape[0] == 3 and emb.rows.tolist() == [0, 1, 0, 2]  # deduplicated
    for text, row in zip(texts, emb.of(torch.arange(4)), strict=True):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        prefix = embeddings.response_prefix(tok)
        with torch.no_grad():
            out = model(input_ids=torch.tensor([prefix + ids]), output_hidden_states=True)
        expected = F.normalize(out.hidden_states[-1][0, len(prefix) :].mean(0), dim=0)
        assert torch.allclose(row, expected, atol=1e-5)
    assert emb.lengths.tolist() == [
        len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts
    ]


def test_interrupted_embedding_resumes_from_the_cache(model_and_tokenizer, tmp_path, monkeypatch):
    model, tok = model_and_tokenizer
    texts = [f"answer number {i} " + "word " * (i % 5) for i in range(12)]
    fresh = embed_texts(model, tok, texts, batch_size=2)
    calls = []
    original = embeddings.embed_batch

    def failing(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(embeddings, "embed_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(model, tok, texts, batch_size=2, cache_dir=tmp_path, flush_every=100)
    monkeypatch.setattr(embeddings, "embed_batch", original)
    counted = []
    monkeypatch.setattr(
        embeddings, "embed_batch", lambda *a, **k: counted.append(len(a[1])) or original(*a, **k)
    )
    resumed = embed_texts(model, tok, texts, batch_size=2, cache_dir=tmp_path)
    assert sum(counted) == 12 - 4  # the two finished batches were saved when interrupted
    assert torch.allclose(resumed.of(resumed.rows), fresh.of(fresh.rows), atol=1e-6)
    counted.clear()
    embed_texts(model, tok, texts, batch_size=2, cache_dir=tmp_path)
    assert counted == []  # everything cached


# ---------------------------------------------------------------------------- bad inputs


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(AlignkitError, match="has no records"):
        real_mode([])
    with pytest.raises(AlignkitError, match="one response only"):
        real_mode([Point("p", "y", 1.0, source="f:3")])
    with pytest.raises(AlignkitError, match="mixes pairs and multi"):
        real_mode([Pair("p", "a", "b"), Multi("p", ("a", "b"), (1.0, 2.0))])
    for kwargs, match in [
        ({"fraction": 0.0}, r"\(0, 1\]"),
        ({"fraction": 2.0}, r"\(0, 1\]"),
        ({"min_score_ratio": 0.5}, ">= 1"),
        ({"strategy": "best"}, "unknown --strategy"),
    ]:
        with pytest.raises(AlignkitError, match=match):
            RealSelectConfig(data=["d"], output="o", **kwargs).validate()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(AlignkitError, match="no records found"):
        run_selection("real", RealSelectConfig(data=[str(empty)], output=str(tmp_path / "o")))


def test_model_tokenizer_mismatch_fails_clearly(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    make_tiny_model(broken, len(make_tokenizer(broken)) - 100)
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    config = RealSelectConfig(data=[data], output=str(tmp_path / "o"), model=str(broken))
    with pytest.raises(AlignkitError, match="do not belong together"):
        run_selection("real", config)


def _real_args(data: str, model: str, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["select", "real", "--data", data, "--model", model, "--output", str(out),
            "--cache-dir", str(cache), "--precision", "fp32", "--batch-size", "4", *extra]  # fmt: skip


def _multi_rows(n: int, scores=None) -> list[dict]:
    words = "sorry sure kind rude help bomb safe danger".split()
    return [
        {"prompt": f"question {i}?", "responses": [f"{w} answer {i}" for w in words[i % 4 : i % 4 + 4]],
         "scores": scores or [1.0 + (i + j) % 4 for j in range(4)]}
        for i in range(n)
    ]  # fmt: skip


def test_cli_errors_exit_2(tmp_path, tiny_model, capsys):
    cache = tmp_path / "cache"
    ties = write_jsonl(tmp_path / "ties.jsonl", _multi_rows(3, scores=[2.0] * 4))
    assert main(_real_args(ties, tiny_model, tmp_path / "o", cache)) == 2
    assert "only tied scores" in capsys.readouterr().err
    multi = write_jsonl(tmp_path / "multi.jsonl", _multi_rows(3))
    assert main(_real_args(multi, tiny_model, tmp_path / "o", cache, "--fraction", "0.5")) == 2
    assert "--fraction applies to pair data" in capsys.readouterr().err
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    assert main(_real_args(pairs, tiny_model, tmp_path / "o", cache, "--strategy", "centroid")) == 2
    assert "centroid needs multi-response" in capsys.readouterr().err
    args = _real_args(pairs, tiny_model, tmp_path / "o", cache, "--min-score-ratio", "1.5")
    assert main(args) == 2
    assert "pairs have none" in capsys.readouterr().err


# ---------------------------------------------------------------------------- end to end


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _varied_pairs(n: int) -> list[dict]:
    rows = pair_rows(n)
    for i, row in enumerate(rows):
        row["rejected"] += " word" * (i % 5)  # different similarities
    return rows


def test_cli_select_real_easy_then_train_dpo(tmp_path, tiny_model, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", _varied_pairs(10))
    out = tmp_path / "easy"
    assert main(_real_args(data, tiny_model, out, tmp_path / "cache", "--strategy", "easy")) == 0
    assert "selected 5 pairs" in capsys.readouterr().out
    subset, scores = _lines(out / "subset.jsonl"), _lines(out / "scores.jsonl")
    report = json.loads((out / "report.json").read_text())
    assert len(subset) == 5 and set(subset[0]) == {"prompt", "chosen", "rejected"}
    picked = sorted(s["similarity"] for s in scores if s["selected"])
    others = [s["similarity"] for s in scores if not s["selected"]]
    assert picked[-1] <= min(others)
    assert report["subsets"]["easy"]["pairs"] == 5 and report["subsets"]["all"]["pairs"] == 10
    import matplotlib.image

    assert matplotlib.image.imread(str(out / "similarity_hist.png")).ndim == 3
    run = tmp_path / "run"
    train = ["train", "--method", "dpo", "--data", str(out / "subset.jsonl"), "--model",
             tiny_model, "--output", str(run), "--max-steps", "1", "--batch-size", "2",
             "--no-save-model"]  # fmt: skip
    assert main(train) == 0 and (run / "metrics.jsonl").exists()


def test_cli_multi_response_centroid_orients_by_score(tmp_path, tiny_model):
    rows = _multi_rows(6)
    data = write_jsonl(tmp_path / "multi.jsonl", rows)
    out = tmp_path / "centroid"
    args = _real_args(data, tiny_model, out, tmp_path / "cache", "--strategy", "centroid")
    assert main(args) == 0
    subset, scores = _lines(out / "subset.jsonl"), _lines(out / "scores.jsonl")
    assert len(subset) == 6
    for pair, info in zip(subset, scores, strict=True):
        row = rows[info["index"]]
        assert info["score_chosen"] > info["score_rejected"]
        assert pair["chosen"] == row["responses"][info["chosen"]]
        assert pair["rejected"] == row["responses"][info["rejected"]]
    report = json.loads((out / "report.json").read_text())
    assert set(report["subsets"]) == {"easy", "hard", "random", "centroid"}


def test_two_processes_give_the_single_process_result(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "pairs.jsonl", _varied_pairs(9))
    single, double = tmp_path / "one", tmp_path / "two"
    assert main(_real_args(data, tiny_model, single, tmp_path / "c1")) == 0
    proc = alignkit_on_two_ranks("torchrun", *_real_args(data, tiny_model, double, tmp_path / "c2"))
    assert proc.stdout.count("selected 5 pairs") == 1
    one, two = _lines(single / "scores.jsonl"), _lines(double / "scores.jsonl")
    assert np.allclose([r["similarity"] for r in one], [r["similarity"] for r in two], atol=1e-5)
    assert (single / "subset.jsonl").read_text() == (double / "subset.jsonl").read_text()
    parts = list((tmp_path / "c2").rglob("part-*.pt"))
    assert {p.name.split("-")[2] for p in parts} == {"0", "1"}  # both ranks embedded a shard
