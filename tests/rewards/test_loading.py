"""`alignkit.rewards.loading`: the packed reward scorer, loading reward models (functions,
foreign checkpoints, classifiers with several labels, --reward-label/--reward-output checked),
and HFReward's scores == the trainer's rewards on train-rm runs (full and LoRA)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import length_reward, preference_rows, write_jsonl

from alignkit.cli import main
from alignkit.data import load_records
from alignkit.data.records import Point
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.models import load_tokenizer
from alignkit.rewards.loading import (
    CallableReward,
    HFReward,
    RewardScorer,
    check_reward_spec,
    last_token_positions,
    load_reward_model,
    load_sequence_classifier,
)
from alignkit.scoring.packing import PAD_SEGMENT, PROMPT_SEGMENT, collate


def approx(x: float | torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert float(x) == pytest.approx(expected, rel=tol, abs=tol)


def test_last_token_positions():
    p, a, b, pad = PROMPT_SEGMENT, 1, 2, PAD_SEGMENT
    segments = torch.tensor([[p, p, a, a, a, b, b], [p, a, b, pad, pad, pad, pad]])
    assert last_token_positions(segments, 2).tolist() == [[4, 6], [1, 2]]
    assert last_token_positions(segments, 3)[:, 2].tolist() == [0, 0]  # absent response


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_reward_scorer_equals_unpacked_forward(attention, tiny_model):
    """The packed row prompt|chosen|rejected gives each response the reward it gets alone."""
    tok = load_tokenizer(tiny_model)
    model = load_sequence_classifier(tiny_model, pad_token_id=tok.pad_token_id).eval()
    model.set_attn_implementation(attention)
    rows = preference_rows(3, seed=5)
    records, _ = load_records([write_jsonl(Path(tiny_model) / "scorer.jsonl", rows)])
    encoded, _ = encode_records(records, tok, 64)
    batch = collate(encoded, tok.pad_token_id)
    with torch.no_grad():
        packed = RewardScorer(model)(batch)
        for i, e in enumerate(encoded):
            for j, resp in enumerate(e.responses):
                ids = torch.tensor([e.prompt + resp])
                hidden = model.model(input_ids=ids).last_hidden_state[0, -1]
                approx(packed[i, j], float(model.score(hidden)), tol=1e-4)
        batch.mask[0, 1] = False
        assert RewardScorer(model)(batch)[0, 1] == 0


def test_load_sequence_classifier_errors(tmp_path):
    with pytest.raises(AlignkitError, match="cannot load a reward model"):
        load_sequence_classifier(str(tmp_path / "missing"))


def test_load_reward_model_callables():
    assert load_reward_model(length_reward).score(["p", "q"], ["ab", "c"]) == [2.0, 1.0]
    spec = f"{__name__}:length_reward"
    assert load_reward_model(spec).score(["p"], ["abc"]) == [3.0]
    scorer = CallableReward(length_reward)
    assert load_reward_model(scorer) is scorer
    with pytest.raises(AlignkitError, match="cannot import reward function"):
        load_reward_model(f"{__name__}:nope")
    with pytest.raises(AlignkitError, match="1 prompts but 2 responses"):
        scorer.score(["p"], ["a", "b"])
    with pytest.raises(AlignkitError, match="returned 1 scores for 2"):
        CallableReward(lambda p, r: [1.0]).score(["p", "q"], ["a", "b"])


def test_hfreward_on_a_foreign_model_uses_the_chat_template(tiny_model, tmp_path):
    """A model without alignkit_reward.json: the conversation rendered by its chat template and
    the model's own HF forward (here a causal-LM checkpoint with a fresh head)."""
    torch.manual_seed(0)
    foreign = load_sequence_classifier(tiny_model)
    foreign.save_pretrained(tmp_path / "rm")
    tok = load_tokenizer(tiny_model)
    tok.save_pretrained(tmp_path / "rm")
    rm = HFReward(str(tmp_path / "rm"), batch_size=2, precision="fp32")
    assert rm.input_format == "chat"
    prompts = ["the cat", ({"role": "user", "content": "a dog"},), "sun"]
    responses = ["sorry", "sure here is how", "rain water"]
    scores = rm.score(prompts, responses)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "sorry"}],
        tokenize=False,
    )
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        approx(scores[0], float(rm.model(**enc).logits[0, 0]), tol=1e-4)
    other_batching = HFReward(str(tmp_path / "rm"), batch_size=3, precision="fp32")
    assert other_batching.score(prompts, responses) == pytest.approx(scores, abs=1e-4)
    assert rm.score([], []) == []


PROMPTS = ["the cat", ({"role": "user", "content": "a dog"},), "sun"]


RESPONSES = ["sorry", "sure here is how", "rain water"]


def own_logits(path: Path) -> list[list[float]]:
    """The classifier's own logits (transformers alone, one unpadded conversation at a time)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = load_tokenizer(str(path))
    out = []
    for prompt, response in zip(PROMPTS, RESPONSES, strict=True):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        text = tok.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out.append(model(**enc).logits[0].tolist())
    return out


@pytest.mark.parametrize("label", [0, 1])
def test_a_two_label_classifier_keeps_its_labels_and_scores_label_n(sentiment_classifier, label):
    logits = own_logits(sentiment_classifier)
    assert len(logits[0]) == 2 and logits[0][0] != logits[0][1]
    expected = {
        "raw": [row[label] for row in logits],
        "sigmoid": [1 / (1 + math.exp(-row[label])) for row in logits],
        # softmax(l)[N] = e^{l_N} / (e^{l_0} + e^{l_1})
        "softmax": [math.exp(row[label]) / sum(math.exp(v) for v in row) for row in logits],
    }
    for output, values in expected.items():
        rm = load_reward_model(
            str(sentiment_classifier), label=label, output=output, precision="fp32", batch_size=2
        )
        assert isinstance(rm, HFReward) and rm.input_format == "chat"
        assert rm.model.config.num_labels == 2  # its own head, not a fresh 1-output one
        assert rm.score(PROMPTS, RESPONSES) == pytest.approx(values, abs=1e-5), output


def test_packed_scorer_reads_label_n(sentiment_classifier):
    """The alignkit encoding (`RewardScorer`) on a 2-label head: softmax(head(h_last))[1]."""
    rm = HFReward(
        str(sentiment_classifier), precision="fp32", input_format="alignkit", label=1,
        output="softmax",
    )  # fmt: skip
    records = [Point(p, r, 1.0) for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    encoded, _ = encode_records(records, rm.tokenizer, 64)
    scores = rm.score(PROMPTS, RESPONSES)
    with torch.no_grad():
        for e, score in zip(encoded, scores, strict=True):
            ids = torch.tensor([e.prompt + e.responses[0]])
            hidden = rm.model.model(input_ids=ids).last_hidden_state[0, -1]
            l0, l1 = rm.model.score(hidden).tolist()
            approx(score, math.exp(l1) / (math.exp(l0) + math.exp(l1)), tol=1e-4)


def test_a_classifier_without_chat_template_gets_its_special_tokens(sentiment_classifier, tmp_path):
    """A BERT-style classifier (no chat template; its tokenizer adds [CLS]-like tokens) reads
    prompt text + response with the tokens its post-processor adds, as in its own training."""
    import shutil

    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForSequenceClassification

    path = tmp_path / "plain-classifier"
    shutil.copytree(sentiment_classifier, path)
    tok = load_tokenizer(str(path))
    tok.chat_template = None
    cls_id = tok.convert_tokens_to_ids("<|im_start|>")
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", cls_id)]
    )
    tok.save_pretrained(path)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    rm = HFReward(str(path), label=1, precision="fp32")
    assert not getattr(rm.tokenizer, "chat_template", None)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    for prompt, response in [("I rented this movie ", "and loved it"), ("the cat", " sorry")]:
        enc = load_tokenizer(str(path))(prompt + response, return_tensors="pt")
        assert enc["input_ids"][0, 0] == cls_id  # the classifier's own input starts with it
        with torch.no_grad():
            expected = float(model(**enc).logits[0, 1])
        approx(rm.score([prompt], [response])[0], expected, tol=1e-5)


def test_reward_label_and_output_are_checked(sentiment_classifier, tiny_model, tmp_path):
    clf = str(sentiment_classifier)
    with pytest.raises(AlignkitError, match=r"--reward-label 2 does not exist.*1 = POSITIVE"):
        HFReward(clf, label=2)
    with pytest.raises(AlignkitError, match="--reward-label 2 does not exist"):
        check_reward_spec(clf, 2)  # before anything loads: read from config.json
    check_reward_spec(clf, 1, "softmax")
    # a causal LM gets a fresh one-output head: label 0 only, and softmax of it would be 1
    with pytest.raises(AlignkitError, match="has 1 output"):
        check_reward_spec(tiny_model, 1)
    with pytest.raises(AlignkitError, match="softmax needs a classifier with 2 or more"):
        check_reward_spec(tiny_model, 0, "softmax")
    with pytest.raises(AlignkitError, match="softmax needs a classifier with 2 or more"):
        HFReward(tiny_model, output="softmax")
    with pytest.raises(AlignkitError, match="returns its own scores"):
        check_reward_spec(f"{__name__}:length_reward", 1)
    with pytest.raises(AlignkitError, match="returns its own scores"):
        load_reward_model(length_reward, output="sigmoid")


def test_eval_and_online_options_check_the_reward_label(sentiment_classifier, tiny_model, capsys):
    from alignkit.evaluation.runner import EvalConfig
    from alignkit.online.config import PLEConfig

    clf = str(sentiment_classifier)
    EvalConfig(
        model=tiny_model, data=["t.jsonl"], output="r.json", reward_model=clf, reward_label=1
    ).validate()
    with pytest.raises(AlignkitError, match="--reward-label 3"):
        EvalConfig(
            model=tiny_model, data=["t.jsonl"], output="r.json", reward_model=clf, reward_label=3
        ).validate()
    with pytest.raises(AlignkitError, match="--reward-label 3"):
        PLEConfig(queries="q", output="o", reward_model=clf, reward_label=3).validate()
    code = main(
        ["eval", "--model", tiny_model, "--data", "t.jsonl", "--output", "r.json",
         "--reward-model", clf, "--reward-label", "5"]
    )  # fmt: skip
    assert code == 2 and "--reward-label 5 does not exist" in capsys.readouterr().err


def trainer_rewards(rm: HFReward, path: str) -> tuple[list, torch.Tensor]:
    """The rewards (n, 2) of a pair file exactly as RewardTrainer computes them (K=2 rows)."""
    records, _ = load_records([path])
    encoded, _ = encode_records(records, rm.tokenizer, 1024)
    batch = collate(encoded, rm.tokenizer.pad_token_id)
    with torch.no_grad():
        return records, RewardScorer(rm.model)(batch)


@pytest.mark.parametrize("which", ["full", "lora"])
def test_hfreward_score_equals_trainer_reward(which, trained_rm, trained_lora_rm, rm_data):
    run = trained_rm if which == "full" else trained_lora_rm
    rm = load_reward_model(str(run / "model"), precision="fp32", batch_size=5)
    assert isinstance(rm, HFReward) and rm.input_format == "alignkit"
    records, rewards = trainer_rewards(rm, rm_data["held"])
    prompts = [r.prompt for r in records]
    chosen = rm.score(prompts, [r.chosen for r in records])
    rejected = rm.score(prompts, [r.rejected for r in records])
    assert isinstance(prompts[-1], tuple)  # chat-message prompts (rendered by the template)
    assert chosen == pytest.approx(rewards[:, 0].tolist(), abs=1e-4)
    assert rejected == pytest.approx(rewards[:, 1].tolist(), abs=1e-4)
    # the trainer's own held-out numbers after training, from summary.json
    after = json.loads((run / "summary.json").read_text())["eval_after"]
    approx(after["eval/rewards/chosen"], sum(chosen) / len(chosen), tol=1e-4)
    approx(after["eval/rewards/rejected"], sum(rejected) / len(rejected), tol=1e-4)
