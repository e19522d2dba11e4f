"""DEFT guidance with the Q_diff of the filter: `select deft` saves it, `train --q-diff` uses it
(bit for bit), a Q_diff of another tokenizer is refused, `--log-r-q` logs R_Q at lambda = 0
without changing training, the bounded (`--deft-form prob`) guidance term on hand numbers, and
`compare` draws R_Q with and without the term."""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import pytest
import torch
from conftest import WORDS, TransparentLM, make_tiny_model, make_tokenizer, pair_rows, write_jsonl
from safetensors.torch import load_file

import alignkit.select.deft as select_deft_module
from alignkit.cli import main
from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.evaluation.compare import compare_runs
from alignkit.models import load_tokenizer
from alignkit.objectives import ObjectiveConfig, compute_loss
from alignkit.objectives.base import SeqLogps
from alignkit.scoring.deft import (
    Q_DIFF_FILE,
    QDiffFile,
    RQSpec,
    load_q_diff,
    tokenizer_identity,
)
from alignkit.scoring.forward import SequenceScorer
from alignkit.scoring.packing import collate


def varied_pairs(n: int) -> list[dict]:
    """HH-style pairs whose responses differ from pair to pair (so a subset has another
    token distribution than the whole set)."""
    rng = random.Random(3)
    out = []
    for i in range(n):
        chosen = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        rejected = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        q = f"\n\nHuman: question {i}?\n\nAssistant:"
        out.append({"chosen": f"{q} kind {chosen}", "rejected": f"{q} rude {rejected}"})
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(tmp_path: Path, model: str, *extra: str, name: str) -> Path:
    out = tmp_path / name
    args = ["train", "--model", model, "--output", str(out), "--precision", "fp32"]
    assert main(args + list(extra)) == 0
    return out


@pytest.fixture
def selected(tmp_path, tiny_model, monkeypatch):
    """`select deft` keeping 4 of 16 pairs; (output dir, the Q_diff R_Q was scored with)."""
    seen = []
    real = select_deft_module.score_r_q

    def spy(model, encoded, q_diff, **kw):
        seen.append(q_diff.clone())
        return real(model, encoded, q_diff, **kw)

    monkeypatch.setattr(select_deft_module, "score_r_q", spy)
    data = write_jsonl(tmp_path / "pairs.jsonl", varied_pairs(16))
    out = tmp_path / "deft"
    args = ["select", "deft", "--data", data, "--model", tiny_model, "--output", str(out),
            "--precision", "fp32", "--keep-count", "4"]  # fmt: skip
    assert main(args) == 0
    monkeypatch.undo()
    assert len(seen) == 1
    return out, seen[0]


def spy_forward(monkeypatch) -> list:
    """Record the `q_diff` argument of every packed forward call."""
    seen: list = []
    real = SequenceScorer.forward

    def forward(self, batch, q_diff=None, **kw):
        seen.append(q_diff)
        return real(self, batch, q_diff=q_diff, **kw)

    monkeypatch.setattr(SequenceScorer, "forward", forward)
    return seen


# --------------------------------------------------------- one Q_diff: filter and guidance


def test_train_uses_the_q_diff_select_filtered_with_bit_for_bit(
    tmp_path, tiny_model, selected, monkeypatch, caplog
):
    out, filtered = selected
    path = out / Q_DIFF_FILE
    saved = load_q_diff(path)
    assert saved.q_diff.dtype == torch.float32 and torch.equal(saved.q_diff, filtered)
    tok = load_tokenizer(tiny_model)
    assert saved.meta["tokenizer"] == tokenizer_identity(tok, tiny_model)
    assert saved.meta["data"]["examples"] == 16 and len(saved.meta["data"]["fingerprint"]) == 64
    assert json.loads((out / "report.json").read_text())["files"]["q_diff"] == Q_DIFF_FILE
    # Q_pos and Q_neg are in the file too, in float64: Q_diff is their difference
    tensors = load_file(str(path))
    assert torch.equal((tensors["q_pos"] - tensors["q_neg"]).float(), filtered)

    subset = str(out / "subset.jsonl")
    common = ["--method", "dpo", "--data", subset, "--max-steps", "1", "--no-save-model"]
    seen = spy_forward(monkeypatch)
    with caplog.at_level(logging.INFO):
        train(tmp_path, tiny_model, *common, "--q-diff", str(path), "--deft-lambda", "0.1",
              name="with-file")  # fmt: skip
    used = [s for s in seen if s is not None]
    assert used and all(isinstance(s, RQSpec) and s.grad for s in used)
    assert torch.equal(used[0].q_diff.cpu(), filtered)  # the very tensor the filter used
    assert f"DEFT Q_diff: loaded from {path}" in caplog.text

    # without --q-diff it is counted on the 4 kept pairs: another Q_diff, and the log says so
    seen.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tmp_path, tiny_model, *common, "--deft-lambda", "0.1", name="recounted")
    recounted = next(s for s in seen if s is not None).q_diff.cpu()
    assert not torch.equal(recounted, filtered)
    assert "DEFT Q_diff: computed from the training data" in caplog.text


def test_q_diff_of_another_tokenizer_is_refused(tmp_path, tiny_model, selected, capsys):
    out, _ = selected
    path = str(out / Q_DIFF_FILE)
    # a model whose tokenizer has one more token
    other = tmp_path / "other"
    other.mkdir()
    tok = make_tokenizer(other)
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(other)
    make_tiny_model(other, len(tok))
    data = str(out / "subset.jsonl")
    args = ["train", "--model", str(other), "--output", str(tmp_path / "run"), "--data", data,
            "--max-steps", "1", "--q-diff", path, "--deft-lambda", "0.1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Q_diff was counted with the tokenizer of" in err and "token ids would not match" in err
    # same size, other token ids: the vocabulary hash tells them apart
    vocab = load_tokenizer(tiny_model).get_vocab()
    swapped = dict(vocab)
    a, b = sorted(vocab)[:2]
    swapped[a], swapped[b] = vocab[b], vocab[a]
    fake_tok = type("Tok", (), {"get_vocab": lambda _: swapped, "__len__": lambda _: len(vocab)})()
    saved = load_q_diff(path)
    with pytest.raises(AlignkitError, match="token ids would not match"):
        saved.check_tokenizer(fake_tok, "swapped")
    saved.check_tokenizer(load_tokenizer(tiny_model), "run-dir")  # the name may differ
    # not a Q_diff file: refused while the options are checked (exit 2)
    args[args.index(path)] = data
    assert main(args) == 2
    assert "not a safetensors file" in capsys.readouterr().err
    args[args.index(data, args.index("--q-diff"))] = str(tmp_path / "missing.safetensors")
    assert main(args) == 2
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------------------ --log-r-q


def test_log_r_q_at_lambda_0_logs_r_q_and_trains_exactly_the_same(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))
    common = ["--method", "dpo", "--data", data, "--max-steps", "3", "--lr", "1e-3",
              "--eval-data", data]  # fmt: skip
    plain = train(tmp_path, tiny_model, *common, name="plain")
    logged = train(tmp_path, tiny_model, *common, "--log-r-q", name="logged")
    p, g = rows(plain / "metrics.jsonl"), rows(logged / "metrics.jsonl")
    assert all("deft/r_q" not in r for r in p)
    train_rows = [r for r in g if "loss" in r]
    assert all("deft/r_q" in r for r in train_rows)
    assert all("eval/deft/r_q" in r for r in g if "eval/loss" in r)
    # same losses, and the same weights bit for bit: R_Q had no gradient
    assert [r["loss"] for r in p if "loss" in r] == [r["loss"] for r in train_rows]
    w_plain = load_file(str(plain / "model" / "model.safetensors"))
    w_logged = load_file(str(logged / "model" / "model.safetensors"))
    assert w_plain.keys() == w_logged.keys()
    assert all(torch.equal(w_plain[k], w_logged[k]) for k in w_plain)


def test_r_q_with_and_without_the_term_and_compare_plots_both(tmp_path, tiny_model, selected):
    """The paper's figure: R_Q during training with the guidance term and without it (same
    data, same Q_diff, same batches), drawn by `alignkit compare`."""
    out, _ = selected
    data = str(out / "subset.jsonl")
    common = ["--method", "dpo", "--data", data, "--max-steps", "4", "--lr", "1e-3",
              "--batch-size", "2", "--q-diff", str(out / Q_DIFF_FILE), "--no-save-model"]  # fmt: skip
    without = train(tmp_path, tiny_model, *common, name="without")  # --q-diff implies the log
    guided = train(tmp_path, tiny_model, *common, "--deft-lambda", "1.0", name="with")
    w, d = rows(without / "metrics.jsonl"), rows(guided / "metrics.jsonl")
    assert all("deft/r_q" in r for r in w + d)
    # the first step sees the same weights and batch: same R_Q, loss lower by lambda * R_Q
    assert d[0]["deft/r_q"] == pytest.approx(w[0]["deft/r_q"], abs=1e-6)
    assert d[0]["loss"] == pytest.approx(w[0]["loss"] - 1.0 * d[0]["deft/r_q"], abs=1e-5)
    # then the term raises R_Q above the run without it, on the same batches
    assert d[-1]["deft/r_q"] > w[-1]["deft/r_q"]
    result = compare_runs([without, guided], tmp_path / "cmp")
    assert "deft/r_q" in result["images"]["curves"]
    png = tmp_path / "cmp" / result["images"]["curves"]["deft/r_q"]
    assert png.read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------ the bounded guidance term


def test_bounded_guidance_term_by_hand():
    """V = 4, prompt [0], chosen [1, 2], rejected [3]; logits_t = one-hot(token t), so
    p_t = softmax(e_prev) puts e/(e+3) on prev and 1/(e+3) elsewhere, and because Q sums to 0
    <Q, p_t> = (e Q[prev] + (0 - Q[prev])) / (e+3) = (e-1) Q[prev] / (e+3).
    The chosen response is predicted from prev = 0 (last prompt token) and prev = 1:
    R_Q = (e-1)/(e+3) * (Q[0] + Q[1]) / 2 = (e-1)/(e+3) * (0.5 - 0.25) / 2.
    The rejected one from prev = 0 only: R_Q = (e-1)/(e+3) * 0.5."""
    q = torch.tensor([0.5, -0.25, 0.25, -0.5])
    batch = collate([Encoded([0], [[1, 2], [3]], [1, 0], [True, False], True, 0)], pad_id=3)
    model = TransparentLM(4)
    scale = (math.e - 1) / (math.e + 3)
    out = SequenceScorer(model)(batch, q_diff=RQSpec(q, "prob"))
    assert torch.allclose(out.r_q, torch.tensor([[scale * 0.125, scale * 0.5]]), atol=1e-7)
    # the log-prob form on the same numbers: <Q, log p_t> = <Q, e_prev> = Q[prev]
    logprob = SequenceScorer(model)(batch, q_diff=RQSpec(q, "logprob")).r_q
    assert torch.allclose(logprob, torch.tensor([[0.125, 0.5]]), atol=1e-7)
    # the guidance term: loss = DPO loss - lambda * R_Q(chosen); R_Q carries a gradient
    lam = 0.5
    ref = SeqLogps(sum=out.sum.detach(), count=out.count)
    pair = batch.objective_batch("pair", out, ref)
    plain, _ = compute_loss("dpo", pair, ObjectiveConfig())
    guided, metrics = compute_loss("dpo", pair, ObjectiveConfig(deft_lambda=lam))
    assert float(metrics["deft/r_q"]) == pytest.approx(scale * 0.125)
    assert float((guided - plain).detach()) == pytest.approx(-lam * scale * 0.125, abs=1e-7)
    assert out.r_q.requires_grad
    # --log-r-q: the same number, without a gradient
    measured = SequenceScorer(model)(batch, q_diff=RQSpec(q, "prob", grad=False)).r_q
    assert torch.equal(measured, out.r_q.detach()) and not measured.requires_grad


def test_bounded_guidance_in_training(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))
    common = ["--method", "dpo", "--data", data, "--max-steps", "2", "--lr", "1e-3",
              "--no-save-model"]  # fmt: skip
    plain = rows(train(tmp_path, tiny_model, *common, name="plain") / "metrics.jsonl")
    prob = train(tmp_path, tiny_model, *common, "--deft-lambda", "0.5", "--deft-form", "prob",
                 name="prob")  # fmt: skip
    d = rows(prob / "metrics.jsonl")
    assert d[0]["loss"] == pytest.approx(plain[0]["loss"] - 0.5 * d[0]["deft/r_q"], abs=1e-5)
    assert json.loads((prob / "config.json").read_text())["deft_form"] == "prob"
    # bounded: a mean of <Q_diff, p_t> lies within [min Q_diff, max Q_diff]
    tok = load_tokenizer(tiny_model)
    from alignkit.data import load_records
    from alignkit.data.tokenize import encode_records
    from alignkit.scoring.deft import q_diff_from_encoded

    encoded, _ = encode_records(load_records([data], "auto")[0], tok, 1024, "truncate")
    q = q_diff_from_encoded(encoded, len(tok), tok.all_special_ids)
    assert all(float(q.min()) <= r["deft/r_q"] <= float(q.max()) for r in d)


def test_q_diff_file_describes_itself():
    meta = {"created_by": "alignkit select deft",
            "data": {"files": [{"path": "/d/pairs.jsonl"}], "examples": 16,
                     "fingerprint": "ab" * 32}}  # fmt: skip
    text = QDiffFile(torch.zeros(3), meta, "q.safetensors").describe()
    assert text == "alignkit select deft on /d/pairs.jsonl (16 examples, fingerprint abababababab)"
