"""Evaluation: metric functions on hand-computed numbers, and `alignkit eval` end to end on
the tiny model with tiny trained runs (full weights and LoRA)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import pair_rows, write_jsonl

from alignkit.cli import main
from alignkit.data import load_records
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.evaluation import metrics as M
from alignkit.evaluation.runner import (
    EvalConfig,
    PromptItem,
    plan_metrics,
    prompt_items,
    run_eval,
    sample_prompts,
)
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.models import load_causal_lm, load_tokenizer
from alignkit.objectives.metrics import implicit_reward_metrics, pair_eval_metrics
from alignkit.scoring.forward import naive_sequence_logps
from alignkit.scoring.packing import collate

# ------------------------------------------------------------ metric functions


def test_perplexity_of_a_known_distribution():
    # every token has p = 1/4 -> perplexity 4, whatever the split into responses
    assert M.perplexity(10 * math.log(0.25), 10) == pytest.approx(4.0)
    sums = torch.tensor([3 * math.log(0.25), 7 * math.log(0.25)])
    assert M.perplexity(sums, torch.tensor([3, 7])) == pytest.approx(4.0)
    # token-weighted, not response-weighted: p=1/2 on 1 token and 1/8 on 3 tokens
    mixed = torch.tensor([math.log(0.5), 3 * math.log(0.125)])
    assert M.perplexity(mixed, torch.tensor([1, 3])) == pytest.approx(2 ** (10 / 4))
    with pytest.raises(ValueError):
        M.perplexity(0.0, 0)


def test_implicit_reward_metrics_by_hand():
    beta = 0.5
    policy_c, policy_r = torch.tensor([-1.0, -4.0, -2.0]), torch.tensor([-3.0, -2.0, -2.0])
    ref_c, ref_r = torch.tensor([-2.0, -2.0, -2.0]), torch.tensor([-2.0, -2.0, -2.0])
    # rewards chosen [0.5, -1, 0], rejected [-0.5, 0, 0]; margins [1, -1, 0]
    out = implicit_reward_metrics(policy_c, policy_r, ref_c, ref_r, beta)
    assert out["margin"] == pytest.approx(0.0)
    assert out["accuracy"] == pytest.approx(1 / 3)  # the tie counts as wrong
    expected = [math.log1p(math.exp(-1)), math.log1p(math.exp(1)), math.log(2)]
    assert out["dpo_loss"] == pytest.approx(sum(expected) / 3)
    assert out["reward_chosen"] == pytest.approx(-0.5 / 3)
    assert out["reward_rejected"] == pytest.approx(-0.5 / 3)
    # REAL's unscaled units (Eq. 10, no beta): u = log pi - log pi_ref
    # u chosen [1, -2, 0], rejected [-1, 0, 0]; u margins [2, -2, 0]
    assert out["reward_chosen_unscaled"] == pytest.approx(-1 / 3)
    assert out["reward_rejected_unscaled"] == pytest.approx(-1 / 3)
    assert out["margin_unscaled"] == pytest.approx(0.0)
    flipped = implicit_reward_metrics(policy_r, policy_c, ref_r, ref_c, beta)
    assert flipped["margin"] == pytest.approx(0.0) and flipped["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        implicit_reward_metrics(*[torch.zeros(0)] * 4, beta)


def test_unscaled_margins_are_log_ratios_without_beta():
    """REAL Eq. 10: the margin in log pi - log pi_ref, whatever beta. Fails when the unscaled
    values carry beta (the TRL convention) or are computed from the wrong side."""
    policy_c, policy_r = torch.tensor([-1.0, -3.0]), torch.tensor([-5.0, -4.0])
    ref_c, ref_r = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    # u chosen [1, -1] (mean 0), u rejected [-3, -2] (mean -2.5); u margins [4, 1] (mean 2.5)
    for beta in (0.1, 0.5):
        out = implicit_reward_metrics(policy_c, policy_r, ref_c, ref_r, beta)
        assert out["margin_unscaled"] == pytest.approx(2.5)
        assert out["reward_chosen_unscaled"] == pytest.approx(0.0)
        assert out["reward_rejected_unscaled"] == pytest.approx(-2.5)
        assert out["margin"] == pytest.approx(beta * 2.5)  # TRL's: beta * the unscaled one
    names = pair_eval_metrics(
        torch.stack([policy_c, policy_r], 1), torch.stack([ref_c, ref_r], 1), 0.1
    )
    assert set(names) == {
        "eval/rewards/chosen",
        "eval/rewards/rejected",
        "eval/rewards/margins",
        "eval/rewards/accuracies",
        "eval/rewards/dpo_loss",
        "eval/rewards/chosen_unscaled",
        "eval/rewards/rejected_unscaled",
        "eval/rewards/margins_unscaled",
    }
    assert names["eval/rewards/margins_unscaled"] == pytest.approx(2.5)
    assert names["eval/rewards/margins"] == pytest.approx(0.25)


def test_bleu_and_mean_std():
    text = ["the cat sat on the mat today", "a dog can not help it is danger"]
    assert M.corpus_bleu(text, text) == pytest.approx(100.0)
    assert M.corpus_bleu(["zzz qqq xxx yyy"], ["the cat sat on the mat"]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        M.corpus_bleu(["a"], [])
    with pytest.raises(ValueError):
        M.sentence_bleus(["a"], [])
    assert M.mean_std([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError):
        M.mean_std([])


def test_bleu_by_hand_corpus_and_sentence():
    """Both BLEU definitions on two tiny examples, counted by hand (13a tokens = the words).

    Fails on: corpus BLEU taken as the mean of sentence scores (66.5 / 0.665 instead of
    59.69), sentence BLEU left on 0-100, no smoothing (0 for pair 3), nltk-style method1
    smoothing (epsilon 0.1: 0.103 instead of 0.193), a fixed order 4 instead of the effective
    order (pair 2 has no 4-gram: 0 or smoothed instead of 1.0)."""
    hyps = ["the cat sat on a mat", "a dog ran"]
    refs = ["the cat sat on the mat", "a dog ran"]
    # pair 1, n-gram matches / hypothesis n-grams: 1-grams the cat sat on a mat -> 5/6;
    # 2-grams (the cat, cat sat, sat on, on a, a mat) -> 3/5; 3-grams -> 2/4
    # (the cat sat, cat sat on); 4-grams -> 1/3 (the cat sat on); lengths 6 = 6: BP 1.
    s1 = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4)  # = (1/12)^(1/4) = 0.5373
    # pair 2: identical, 3 tokens, no 4-gram at all: effective order 3, every precision 1
    s2 = 1.0
    # corpus: counts summed over both pairs before the geometric mean:
    # 1-grams (5+3)/(6+3), 2-grams (3+2)/(5+2), 3-grams (2+1)/(4+1), 4-grams (1+0)/(3+0)
    corpus = 100 * (8 / 9 * 5 / 7 * 3 / 5 * 1 / 3) ** (1 / 4)  # = 59.695
    assert M.corpus_bleu(hyps, refs) == pytest.approx(corpus, rel=1e-9)
    assert M.sentence_bleus(hyps, refs) == pytest.approx([s1, s2], rel=1e-9)
    # pair 3: no 3-gram and no 4-gram matches. 1-grams the dog sat on a mat -> 4/6
    # (the, sat, on, mat); 2-grams -> 1/5 (sat on); 3-grams 0/4; 4-grams 0/3.
    # 'exp' smoothing: the k-th order without a match counts 1 / (2^k * total):
    # 3-grams 1/(2*4) = 1/8, 4-grams 1/(4*3) = 1/12.
    s3 = (4 / 6 * 1 / 5 * 1 / 8 * 1 / 12) ** (1 / 4)  # = 0.19305
    [got] = M.sentence_bleus(["the dog sat on a mat"], ["the cat sat on the mat"])
    assert got == pytest.approx(s3, rel=1e-9)
    # brevity penalty: "the cat" against 6 words, effective order 2 (precisions 1, 1):
    # BP = exp(1 - 6/2) = e^-2
    [short] = M.sentence_bleus(["the cat"], ["the cat sat on the mat"])
    assert short == pytest.approx(math.exp(-2), rel=1e-9)


def test_sample_prompts_and_references(tmp_path):
    rows = [
        {"prompt": "a", "completion": "bad", "label": 0},
        {"prompt": "a", "completion": "good", "label": 1},
        {"prompt": "b", "chosen": "yes", "rejected": "no"},
        {"prompt": "c", "responses": ["x", "y"], "scores": [1, 3]},
    ]
    records, _ = load_records([write_jsonl(tmp_path / "mixed.jsonl", rows)])
    items = prompt_items(records)
    assert [(i.prompt, i.reference) for i in items] == [("a", "good"), ("b", "yes"), ("c", "y")]
    many = [PromptItem(str(i), None) for i in range(20)]
    one, two = sample_prompts(many, 5, 0), sample_prompts(many, 5, 1)
    assert len(one) == 5 and one != two and one == sample_prompts(many, 5, 0)
    assert [int(p.prompt) for p in one] == sorted(int(p.prompt) for p in one)  # data order
    assert sample_prompts(many, 0, 0) == many and sample_prompts(many, 50, 0) == many


def test_plan_metrics():
    ok = dict.fromkeys(("perplexity", "margins", "generate", "reward", "bleu"))
    assert plan_metrics([], ok) == list(ok)
    no_rm = {**ok, "reward": "needs --reward-model"}
    assert plan_metrics([], no_rm) == ["perplexity", "margins", "generate", "bleu"]
    assert plan_metrics(["bleu"], ok) == ["generate", "bleu"]  # bleu scores generations
    with pytest.raises(AlignkitError, match="'reward' needs --reward-model"):
        plan_metrics(["reward"], no_rm)


# ------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("eval-data")
    negatives = [{"prompt": f"q{i}", "completion": "no", "label": 0} for i in range(3)]
    return {
        "train": write_jsonl(root / "train.jsonl", pair_rows(16)),
        "test": write_jsonl(root / "test.jsonl", pair_rows(6, seed=3)),
        "points": write_jsonl(
            root / "points.jsonl", [{"prompt": "q", "completion": "y", "label": 1}]
        ),
        "negatives": write_jsonl(root / "negatives.jsonl", negatives),
        "root": str(root),
    }


def train_run(tiny_model: str, files: dict[str, str], out: Path, *extra: str) -> Path:
    args = ["train", "--data", files["train"], "--model", tiny_model, "--output", str(out)]
    assert main(args + ["--max-steps", "2", "--lr", "1e-3", "--batch-size", "4", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def full_run(tiny_model, files, tmp_path_factory) -> Path:
    return train_run(tiny_model, files, tmp_path_factory.mktemp("full") / "run")


@pytest.fixture(scope="module")
def lora_run(tiny_model, files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "run"
    return train_run(tiny_model, files, out, "--lora", "--lora-dropout", "0", "--lr", "1e-2")


def length_reward(prompts, responses):
    """A reward function for --reward-model module:function."""
    return [float(len(r)) for r in responses]


def evaluate(*args: str) -> int:
    return main(["eval", *args])


def report_of(out: Path, *args: str) -> dict:
    """Run `alignkit eval ARGS --output OUT` (fp32, 4 new tokens); the report it wrote."""
    fast = ["--max-new-tokens", "4", "--precision", "fp32"]
    assert evaluate(*args, "--output", str(out), *fast) == 0
    return json.loads(out.read_text())


def test_eval_cli_end_to_end(full_run, files, tmp_path, capsys):
    reward = f"{__name__}:length_reward"
    args = ["--data", files["test"], "--reward-model", reward, "--num-prompts", "4"]
    report = report_of(tmp_path / "report.json", "--model", str(full_run / "model"), *args)
    assert report["computed"] == ["perplexity", "margins", "generate", "reward", "bleu"]
    names = {"perplexity", "margin", "accuracy", "dpo_loss", "reward_mean", "reward_std", "bleu"}
    names |= {"reward_chosen", "reward_rejected", "bleu_sentence"}
    names |= {"margin_unscaled", "reward_chosen_unscaled", "reward_rejected_unscaled"}
    assert set(report["metrics"]) == names
    assert set(report["definitions"]) == names  # every reported metric says what it is
    assert "0-100" in report["definitions"]["bleu"]
    assert "0-1" in report["definitions"]["bleu_sentence"]
    assert report["metrics"]["margin"] == pytest.approx(
        report["settings"]["beta"] * report["metrics"]["margin_unscaled"], rel=1e-6, abs=1e-9
    )
    assert report["counts"]["pairs"] == 6 and report["counts"]["prompts"] == 4
    rows = [json.loads(x) for x in (tmp_path / "report.generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert set(rows[0]) == {"prompt", "response", "chosen", "reward", "bleu_sentence"}
    sentence = M.sentence_bleus([r["response"] for r in rows], [r["chosen"] for r in rows])
    assert [r["bleu_sentence"] for r in rows] == pytest.approx(sentence)
    assert report["metrics"]["bleu_sentence"] == pytest.approx(sum(sentence) / 4)
    mean, std = M.mean_std([float(len(r["response"])) for r in rows])
    assert report["metrics"]["reward_mean"] == pytest.approx(mean)
    assert report["metrics"]["reward_std"] == pytest.approx(std)
    bleu = M.corpus_bleu([r["response"] for r in rows], [r["chosen"] for r in rows])
    assert report["metrics"]["bleu"] == pytest.approx(bleu)
    markdown = (tmp_path / "report.md").read_text()
    assert "| perplexity |" in markdown and "| margin |" in markdown
    assert "| bleu_sentence |" in markdown and "mean sentence BLEU, 0-1" in markdown
    assert "| perplexity |" in capsys.readouterr().out
    # the run directory itself is accepted too
    args = ["--model", str(full_run), "--data", files["test"], "--metrics", "perplexity,margins"]
    again = report_of(tmp_path / "again.json", *args)["metrics"]
    assert again["perplexity"] == pytest.approx(report["metrics"]["perplexity"])
    assert again["margin"] == pytest.approx(report["metrics"]["margin"])


def naive_metrics(policy, ref, tokenizer, path: str, beta: float) -> dict[str, float]:
    """Unpacked full-vocabulary log-probs, independently of the runner."""
    records, _ = load_records([path])
    encoded, _ = encode_records(records, tokenizer, 1024)
    batch = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        pol, rf = naive_sequence_logps(policy, batch), naive_sequence_logps(ref, batch)
    out = implicit_reward_metrics(pol[:, 0], pol[:, 1], rf[:, 0], rf[:, 1], beta)
    out["perplexity"] = math.exp(-float(pol[:, 0].sum()) / float(batch.counts[:, 0].sum()))
    return out


@pytest.mark.parametrize("which", ["full", "lora"])
def test_eval_numbers_match_an_unpacked_computation(
    which, full_run, lora_run, files, tiny_model, tmp_path
):
    run = full_run if which == "full" else lora_run
    args = ["--model", str(run / "model"), "--data", files["test"]]
    report = report_of(tmp_path / "r.json", *args, "--metrics", "perplexity", "margins")
    tok = load_tokenizer(tiny_model)
    ref = load_causal_lm(tiny_model).eval()
    if which == "full":
        policy = load_causal_lm(str(run / "model")).eval()
        assert report["reference"] == tiny_model  # summary.json's base_model
    else:
        policy = load_causal_lm(tiny_model, adapter=str(run / "model")).eval()
        assert report["reference"] == f"{tiny_model} (the adapter disabled)"
    expected = naive_metrics(policy, ref, tok, files["test"], beta=0.1)
    assert report["settings"]["beta"] == 0.1  # the run's beta
    for name in ("perplexity", "margin", "accuracy", "dpo_loss"):
        assert report["metrics"][name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    assert abs(report["metrics"]["margin"]) > 1e-4  # training moved the policy


def test_eval_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_model, files, tmp_path):
    model = load_causal_lm(tiny_model)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # all logits 0: p = 1/V for every token
    model.save_pretrained(tmp_path / "uniform")
    load_tokenizer(tiny_model).save_pretrained(tmp_path / "uniform")
    args = [
        "--model",
        str(tmp_path / "uniform"),
        "--data",
        files["test"],
        "--metrics",
        "perplexity",
    ]
    report = report_of(tmp_path / "u.json", *args)
    assert report["metrics"]["perplexity"] == pytest.approx(model.config.vocab_size, rel=1e-5)
    assert report["computed"] == ["perplexity"]
    assert not (tmp_path / "u.generations.jsonl").exists()


def test_ref_and_beta_flags(full_run, files, tmp_path):
    model = str(full_run / "model")
    args = ["--model", model, "--data", files["test"], "--metrics", "margins"]
    # the policy as its own reference: every implicit reward is 0
    metrics = report_of(tmp_path / "self.json", *args, "--ref", model)["metrics"]
    assert metrics["margin"] == 0 and metrics["accuracy"] == 0
    assert metrics["dpo_loss"] == pytest.approx(math.log(2))
    margins = {
        b: report_of(tmp_path / "b.json", *args, "--beta", b)["metrics"] for b in ("0.1", "0.3")
    }
    assert margins["0.3"]["margin"] == pytest.approx(3 * margins["0.1"]["margin"], rel=1e-4)
    assert margins["0.3"]["accuracy"] == margins["0.1"]["accuracy"]
    # the unscaled margin (REAL Eq. 10) does not depend on beta
    assert margins["0.3"]["margin_unscaled"] == pytest.approx(
        margins["0.1"]["margin_unscaled"], rel=1e-6
    )
    assert margins["0.1"]["margin_unscaled"] == pytest.approx(
        10 * margins["0.1"]["margin"], rel=1e-4
    )


def test_generation_flags_reach_the_sampler(full_run, files, tmp_path, monkeypatch):
    """--max-new-tokens, --do-sample, --temperature, --batch-size, --seed, --num-prompts; a
    generator that answers with the chosen response gets BLEU 100."""
    seen: list[SamplingConfig] = []
    items = prompt_items(load_records([files["test"]])[0])
    chosen = {json.dumps(i.prompt): i.reference for i in items}

    def fake_generate(model, tokenizer, prompts, sampling, autocast=None, progress=True):
        seen.append(sampling)
        return [Completion(chosen[json.dumps(p)]) for p in prompts]

    monkeypatch.setattr("alignkit.inference.generators.generate_completions", fake_generate)
    out = tmp_path / "g.json"
    args = ["--model", str(full_run), "--data", files["test"], "--output", str(out)]
    args += ["--metrics", "bleu", "--max-new-tokens", "7", "--do-sample", "--temperature", "0.5"]
    assert evaluate(*args, "--batch-size", "3", "--seed", "5", "--num-prompts", "2") == 0
    assert seen[0] == SamplingConfig(7, True, 0.5, batch_size=3, seed=5)
    report = json.loads(out.read_text())
    assert report["metrics"]["bleu"] == pytest.approx(100.0)
    assert report["metrics"]["bleu_sentence"] == pytest.approx(1.0)
    assert report["counts"]["prompts"] == 2 and report["settings"]["temperature"] == 0.5


def test_max_length_and_precision(full_run, files, tmp_path):
    def perplexity(*extra: str) -> dict:
        out = tmp_path / "p.json"
        args = ["--model", str(full_run), "--data", files["test"], "--output", str(out)]
        assert evaluate(*args, "--metrics", "perplexity", *extra) == 0
        return json.loads(out.read_text())

    full = perplexity("--precision", "fp32")
    short = perplexity("--precision", "fp32", "--max-length", "16")
    assert short["counts"]["perplexity_tokens"] < full["counts"]["perplexity_tokens"]
    bf16 = perplexity("--precision", "bf16")
    assert bf16["settings"]["precision"] == "bf16"
    assert bf16["metrics"]["perplexity"] != full["metrics"]["perplexity"]
    assert bf16["metrics"]["perplexity"] == pytest.approx(full["metrics"]["perplexity"], rel=0.05)


def test_eval_with_a_trained_reward_model(tiny_model, full_run, files, tmp_path):
    rm_dir = tmp_path / "rm"
    train = ["train-rm", "--data", files["train"], "--model", tiny_model, "--output", str(rm_dir)]
    assert main([*train, "--max-steps", "1"]) == 0
    args = ["--model", str(full_run), "--data", files["test"], "--metrics", "reward"]
    report = report_of(tmp_path / "r.json", *args, "--reward-model", str(rm_dir / "model"))
    rows = [json.loads(x) for x in (tmp_path / "r.generations.jsonl").read_text().splitlines()]
    from alignkit.rewards.loading import HFReward

    scores = HFReward(str(rm_dir / "model"), precision="fp32").score(
        [r["prompt"] for r in rows], [r["response"] for r in rows]
    )
    assert [r["reward"] for r in rows] == pytest.approx(scores, abs=1e-5)
    assert report["metrics"]["reward_mean"] == pytest.approx(sum(scores) / len(scores), abs=1e-5)
    assert report["reward_model"] == str(rm_dir / "model")


def test_default_metrics_skip_what_does_not_apply(tiny_model, files, tmp_path):
    args = ["--model", tiny_model, "--data", files["test"], "--num-prompts", "2"]
    report = report_of(tmp_path / "d.json", *args)
    assert report["computed"] == ["perplexity", "generate", "bleu"]  # no reference, no RM
    assert report["reference"] is None


def test_config_file(full_run, files, tmp_path):
    cfg = tmp_path / "eval.yaml"
    out = tmp_path / "c.json"
    text = f"model: {full_run}\ndata: [{files['test']}]\nmetrics: [perplexity]\noutput: {out}\n"
    cfg.write_text(text + "precision: fp32\n")
    assert evaluate("--config", str(cfg), "--metrics", "margins") == 0
    assert json.loads(out.read_text())["computed"] == ["margins"]  # the flag overrides


def test_run_eval_api(full_run, files, tmp_path):
    out = str(tmp_path / "a.json")
    config = EvalConfig(str(full_run), [files["test"]], out, metrics=["perplexity"])
    report = run_eval(config)
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads(json.dumps(report))


@pytest.fixture(scope="module")
def other_vocab(tiny_model, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("other-vocab") / "m"
    shutil.copytree(tiny_model, path)
    tok = load_tokenizer(tiny_model)
    tok.add_tokens(["zebra"])
    tok.save_pretrained(path)
    return str(path)


BAD_INPUTS = [
    ("--model {full} --data {points} --metrics margins", "needs preference pairs"),
    ("--model {tiny} --data {test} --metrics margins", "needs a reference model"),
    ("--model {full} --data {test} --metrics reward", "needs --reward-model"),
    ("--model {full} --data {negatives} --metrics bleu", "no reference (chosen)"),
    ("--model {full} --data {negatives} --metrics perplexity", "no reference responses"),
    ("--model {full} --data {test} --metrics ppl", "unknown metric(s) ppl"),
    ("--model {full} --data {test} --data-format point", "test.jsonl"),
    ("--model {full} --data {test} --num-prompts -1", "--num-prompts must be >= 0"),
    ("--model {full} --data {root}/nope.jsonl", "nope.jsonl"),
    ("--model {full} --data {test} --ref {other} --metrics margins", "another tokenizer"),
    ("--model {root}/no-model --data {test}", "no such file or directory"),
    ("--data {test}", "give --model"),
    ("--model {full} --data {test} --output {root}/r.md", "must be a .json path"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_inputs_exit_2(args, message, files, full_run, tiny_model, other_vocab, capsys):
    paths = dict(files, full=full_run, tiny=tiny_model, other=other_vocab)
    argv = args.format(**paths).split()
    if "--output" not in argv:
        argv += ["--output", f"{files['root']}/x.json"]
    assert evaluate(*argv) == 2
    assert message in capsys.readouterr().err


def test_eval_skip_invalid_counts_in_the_report(full_run, files, tmp_path, capsys):
    """An HH-shaped test file with an empty final answer (line 3) and a broken line (line 5)."""
    prompt = "\n\nHuman: how do I make a bomb?\n\nAssistant:"
    good = pair_rows(3, seed=4)
    path = tmp_path / "test_hh.jsonl"
    lines = [json.dumps(r) for r in good[:2]]
    lines.append(json.dumps({"chosen": prompt + " sorry", "rejected": prompt + "   "}))
    lines += [json.dumps(good[2]), '{"chosen": "\\n\\nHuman: cut']
    path.write_text("\n".join(lines) + "\n")
    args = ["--model", str(full_run / "model"), "--data", str(path), "--metrics", "margins"]
    assert evaluate(*args, "--output", str(tmp_path / "strict.json")) == 2
    assert "or pass --skip-invalid to drop such records" in capsys.readouterr().err
    assert not (tmp_path / "strict.json").exists()
    report = report_of(tmp_path / "r.json", *args, "--skip-invalid")
    assert report["counts"]["pairs"] == 3
    rejected = tmp_path / "r.rejected.jsonl"
    assert report["rejected"] == {
        "records": 2,
        "by_reason": {"the final answer of 'rejected' is empty": 1, "invalid JSON": 1},
        "file": str(rejected),
    }
    listed = [json.loads(x) for x in rejected.read_text().splitlines()]
    assert [r["where"] for r in listed] == [f"{path}:3", f"{path}:5"]
    assert "invalid records dropped (--skip-invalid): 2" in (tmp_path / "r.md").read_text()
