"""DEFT selection: Q_diff, R_Q (both forms) against hand-computed and naive values, the cut,
bad inputs, the CLI end to end (then DPO on the subset) and 2-process scoring."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    TransparentLM,
    alignkit_on_two_ranks,
    make_tiny_model,
    make_tokenizer,
    pair_rows,
    write_jsonl,
)

from alignkit.cli import main
from alignkit.data import Pair, Point
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.models import load_causal_lm, load_tokenizer
from alignkit.scoring.deft import (
    q_diff_from_encoded,
    token_counts,
    token_distribution,
    token_distributions,
)
from alignkit.scoring.packing import collate
from alignkit.select.common import keep_indices
from alignkit.select.configs import DeftSelectConfig
from alignkit.select.deft import score_r_q
from alignkit.select.pipeline import run_selection
from alignkit.select.reports import require_pairs

GOOD = ["kind", "safe", "help", "thanks"]
BAD = ["rude", "bomb", "danger", "fire"]


def _records(chosen_words: list[list[str]], rejected: str = "rude bomb danger") -> list[Pair]:
    return [
        Pair(f"question {i}?", " " + " ".join(words), " " + rejected, f"t:{i}")
        for i, words in enumerate(chosen_words)
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


def _word_ids(tokenizer, words: list[str]) -> set[int]:
    return {t for w in words for t in tokenizer(" " + w, add_special_tokens=False)["input_ids"]}


# ----------------------------------------------------------------------------- Q_diff


def test_token_counts_match_counter_and_reject_out_of_range_ids():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, size=rng.integers(0, 9)).tolist() for _ in range(300)]
    expected = Counter(t for s in seqs for t in s)
    counts = token_counts(seqs, 50)
    assert counts.tolist() == [expected.get(i, 0) for i in range(50)]
    dist = token_distribution(seqs, 50, exclude=[3])
    assert dist[3] == 0 and math.isclose(float(dist.sum()), 1.0)
    with pytest.raises(AlignkitError, match="outside the vocabulary"):
        token_counts([[1, 2, 50]], 50)


def test_q_diff_is_positive_exactly_on_the_chosen_vocabulary(tokenizer):
    records = _records([GOOD[:2], GOOD[1:], GOOD], rejected=" ".join(BAD))
    encoded, _ = encode_records(records, tokenizer)
    good, bad = _word_ids(tokenizer, GOOD), _word_ids(tokenizer, BAD)
    assert good and bad and not good & bad
    q = q_diff_from_encoded(encoded, len(tokenizer), tokenizer.all_special_ids)
    assert set(torch.nonzero(q > 0).flatten().tolist()) == good
    assert set(torch.nonzero(q < 0).flatten().tolist()) == bad
    assert abs(float(q.sum())) < 1e-6
    assert q[tokenizer.eos_token_id] == 0  # special tokens (EOS ends every response) excluded
    dists = token_distributions(encoded, len(tokenizer), tokenizer.all_special_ids)
    assert dists.pos_tokens == sum(len(e.responses[0]) - 1 for e in encoded)


# ------------------------------------------------------------------------------ R_Q


def test_r_q_and_the_cut_match_hand_computation(tokenizer):
    """With logits_t = one-hot(previous token): <Q_diff, log p_t> = Q_diff[prev] and
    <Q_diff, p_t> = (e - 1) Q_diff[prev] / (e + V - 1), because sum(Q_diff) = 0."""
    mixes = [[GOOD[0], GOOD[1]], [BAD[0], BAD[1]], [GOOD[2], BAD[2]], [GOOD[3]], [BAD[3], "the"]]
    records = _records(mixes)
    encoded, _ = encode_records(records, tokenizer)
    vocab, special = len(tokenizer), set(tokenizer.all_special_ids)
    pos = Counter(t for e in encoded for t in e.responses[0] if t not in special)
    neg = Counter(t for e in encoded for t in e.responses[1] if t not in special)
    q_hand = [pos[v] / sum(pos.values()) - neg[v] / sum(neg.values()) for v in range(vocab)]
    q = q_diff_from_encoded(encoded, vocab, special)
    assert torch.allclose(q, torch.tensor(q_hand), atol=1e-7)

    def by_hand(e, form: str) -> float:
        prev = [e.prompt[-1], *e.responses[0][:-1]]
        scale = 1.0 if form == "logprob" else (math.e - 1) / (math.e + vocab - 1)
        return sum(scale * q_hand[t] for t in prev) / len(prev)

    model = TransparentLM(vocab)
    for form in ("logprob", "prob"):
        table = score_r_q(model, encoded, q, pad_id=tokenizer.pad_token_id, form=form, batch_size=2)
        expected = torch.tensor([by_hand(e, form) for e in encoded])
        assert table.shape == (len(encoded), 1)
        assert torch.allclose(table[:, 0], expected, atol=1e-6)
        keep = keep_indices(table[:, 0].double().numpy(), 2, "lowest")
        assert keep.tolist() == sorted(torch.argsort(expected)[:2].tolist())
    assert torch.argsort(expected)[0] == 1  # the all-"bad" chosen response scores lowest


def _naive_r_q(model, batch, q: torch.Tensor, form: str) -> torch.Tensor:
    """(B, K) mean_t sum_v Q[v] * log p(v) (or p(v)), every response as its own sequence
    through the full model with a full-vocabulary softmax."""
    b, k = batch.shape
    out = torch.zeros(b, k)
    for row in range(b):
        prompt = batch.input_ids[row][batch.segments[row] == 0]
        for j in range(k):
            resp = batch.input_ids[row][batch.segments[row] == j + 1]
            ids = torch.cat([prompt, resp])[None]
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            dist = F.log_softmax(logits, -1) if form == "logprob" else F.softmax(logits, -1)
            out[row, j] = (dist @ q).mean()
    return out


@pytest.mark.parametrize("form", ["logprob", "prob"])
def test_packed_r_q_equals_the_naive_formula(tiny_model, tokenizer, form):
    model = load_causal_lm(tiny_model).eval()
    records = [Pair(r["chosen"][:30], r["chosen"][30:], r["rejected"][30:]) for r in pair_rows(5)]
    encoded, _ = encode_records(records, tokenizer)
    q = q_diff_from_encoded(encoded, len(tokenizer), tokenizer.all_special_ids)
    table = score_r_q(
        model, encoded, q, pad_id=tokenizer.pad_token_id, form=form, score_on="margin"
    )
    with torch.no_grad():
        naive = _naive_r_q(model, collate(encoded, tokenizer.pad_token_id), q, form)
    assert torch.allclose(table, naive, atol=1e-5)


@pytest.mark.parametrize("family", ["gemma2", "cohere"])
@pytest.mark.parametrize("form", ["logprob", "prob"])
def test_r_q_of_post_processed_logits_equals_the_naive_formula(family, form):
    """Gemma soft-caps its logits, Cohere scales them: R_Q must use the model's own logits
    (the log-prob shortcut h.W^T Q_diff is scaled for Cohere, and not usable for Gemma)."""
    from conftest import EXAMPLES, tiny_family_model

    model = tiny_family_model(family)
    q = torch.rand(64, generator=torch.Generator().manual_seed(2))
    q = q / q.sum() - 1.0 / 64
    encoded = EXAMPLES[:2]
    table = score_r_q(model, encoded, q, pad_id=2, form=form, score_on="margin", batch_size=1)
    with torch.no_grad():
        naive = _naive_r_q(model, collate(encoded, 2), q, form)
    assert torch.allclose(table, naive, atol=1e-5)


# ------------------------------------------------------------------------- selection


def keep_count_for(n: int, fraction: float | None, count: int | None) -> int:
    """How many of `n` scored examples `select deft` keeps with these budget flags."""
    return DeftSelectConfig(keep_fraction=fraction, keep_count=count or 0).budget(n)


def test_keep_count_and_fraction():
    assert keep_count_for(100, None, None) == 5  # paper default 5%
    assert keep_count_for(30, 0.05, None) == 2 and keep_count_for(3, 0.05, None) == 1
    assert keep_count_for(10, 1.0, None) == 10 and keep_count_for(10, 0.5, 3) == 3
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(AlignkitError, match=r"\(0, 1\]"):
            keep_count_for(10, bad, None)
    with pytest.raises(AlignkitError, match="more than the 10"):
        keep_count_for(10, None, 11)
    assert keep_indices(np.array([0.3, 0.1, 0.1, 0.2]), 2, "lowest").tolist() == [1, 2]
    with pytest.raises(AlignkitError, match="NaN"):
        keep_indices(np.array([0.1, float("nan")]), 1, "lowest")


def test_bad_inputs_fail_clearly(tmp_path, tiny_model):
    with pytest.raises(AlignkitError, match="give --keep-fraction or --keep-count"):
        DeftSelectConfig(data=["x"], output="o", keep_fraction=0.1, keep_count=3).validate()
    with pytest.raises(AlignkitError, match="has no records"):
        require_pairs([], "DEFT")
    with pytest.raises(AlignkitError, match="needs preference pairs.*is a point"):
        require_pairs([Point("p", "y", 1.0, source="f:1")], "DEFT")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(AlignkitError, match="no records found"):
        config = DeftSelectConfig(data=[str(empty)], output=str(tmp_path / "o"), model=tiny_model)
        run_selection("deft", config)
    # a checkpoint whose model has fewer vocabulary rows than its tokenizer
    broken = tmp_path / "broken"
    broken.mkdir()
    tok = make_tokenizer(broken)
    make_tiny_model(broken, len(tok) - 100)
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    with pytest.raises(AlignkitError, match="do not belong together"):
        run_selection(
            "deft", DeftSelectConfig(data=[data], output=str(tmp_path / "o"), model=str(broken))
        )


# ------------------------------------------------------------------------ end to end


def _deft_args(data: str, model: str, out: Path, *extra: str) -> list[str]:
    return ["select", "deft", "--data", data, "--model", model, "--output", str(out),
            "--precision", "fp32", "--batch-size", "3", *extra]  # fmt: skip


def test_cli_select_deft_then_train_dpo(tmp_path, tiny_model, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))
    out = tmp_path / "deft"
    assert main(_deft_args(data, tiny_model, out, "--keep-fraction", "0.25")) == 0
    assert "kept 4 of 16" in capsys.readouterr().out
    subset = [json.loads(line) for line in (out / "subset.jsonl").read_text().splitlines()]
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    report = json.loads((out / "report.json").read_text())
    assert len(subset) == 4 and set(subset[0]) == {"prompt", "chosen", "rejected"}
    assert len(scores) == 16 and sum(s["kept"] for s in scores) == 4
    assert max(s["score"] for s in scores if s["kept"]) <= min(
        s["score"] for s in scores if not s["kept"]
    )
    assert report["kept"] == 4 and report["q_diff_top"]["positive"]
    image = plt_imread(out / "r_q_hist.png")
    assert image.ndim == 3 and image.shape[0] > 100
    assert "r_q_hist.png" in (out / "report.md").read_text()
    run = tmp_path / "run"
    train = ["train", "--method", "dpo", "--data", str(out / "subset.jsonl"), "--model",
             tiny_model, "--output", str(run), "--max-steps", "1", "--batch-size", "2",
             "--no-save-model"]  # fmt: skip
    assert main(train) == 0
    assert (run / "metrics.jsonl").exists()


def test_chat_prompts_margin_and_probability_form(tmp_path, tiny_model):
    rows = [
        {"prompt": [{"role": "user", "content": f"question {i}"}],
         "chosen": [{"role": "assistant", "content": "sorry I can not help"}],
         "rejected": [{"role": "assistant", "content": f"sure here is how {i}"}]}
        for i in range(6)
    ]  # fmt: skip
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    out = tmp_path / "deft"
    args = _deft_args(data, tiny_model, out, "--keep-count", "6", "--score", "margin",
                      "--form", "prob", "--top-tokens", "2")  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["form"] == "prob" and len(report["q_diff_top"]["positive"]) == 2
    subset = [json.loads(line) for line in (out / "subset.jsonl").read_text().splitlines()]
    assert subset[0]["prompt"] == rows[0]["prompt"]  # message lists kept, original order
    score = json.loads((out / "scores.jsonl").read_text().splitlines()[0])
    assert math.isclose(score["score"], score["r_q_chosen"] - score["r_q_rejected"], abs_tol=1e-6)


def test_cli_errors_exit_2(tmp_path, tiny_model, capsys):
    points = write_jsonl(
        tmp_path / "points.jsonl", [{"prompt": "p", "completion": "y", "label": 1}]
    )
    assert main(_deft_args(points, tiny_model, tmp_path / "o")) == 2
    assert "needs preference pairs" in capsys.readouterr().err
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    assert main(_deft_args(pairs, tiny_model, tmp_path / "o", "--keep-fraction", "1.5")) == 2
    assert "(0, 1]" in capsys.readouterr().err


def test_two_processes_give_the_single_process_result(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(11))
    single, double = tmp_path / "one", tmp_path / "two"
    assert main(_deft_args(data, tiny_model, single, "--keep-fraction", "0.5")) == 0
    args = _deft_args(data, tiny_model, double, "--keep-fraction", "0.5")
    proc = alignkit_on_two_ranks("torchrun", *args)
    assert proc.stdout.count("kept 6 of 11") == 1  # only the main process reports
    one = [json.loads(x) for x in (single / "scores.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (double / "scores.jsonl").read_text().splitlines()]
    assert [r["index"] for r in two] == list(range(11))
    assert np.allclose([r["score"] for r in one], [r["score"] for r in two], atol=1e-5)
    assert (single / "subset.jsonl").read_text() == (double / "subset.jsonl").read_text()


def plt_imread(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(str(path))
