"""`alignkit eval` end to end on the tiny model and a tiny trained run: the report and its
files, the flags, a trained reward model, config files, bad inputs and --skip-invalid."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import (
    evaluate,
    length_reward,  # noqa: F401 (named by a --reward-model spec)
    pair_rows,
    report_of,
)

from alignkit.cli import main
from alignkit.data import load_records
from alignkit.data.prompts import chat_records
from alignkit.evaluation import metrics as M
from alignkit.evaluation.runner import prompt_items
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.models import load_tokenizer


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
    # the prompts as the run was trained on them (the chat template, its config.json says)
    records = chat_records(load_records([files["test"]])[0], load_tokenizer(str(full_run)), True)
    items = prompt_items(records)
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
