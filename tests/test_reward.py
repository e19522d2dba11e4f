"""Reward models: the Bradley–Terry loss, the packed reward scorer, `alignkit train-rm`, and
`alignkit.rewards.loading` loading (HFReward scores == the trainer's rewards)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl

from alignkit.cli import main
from alignkit.data import load_records
from alignkit.data.records import Point
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.models import load_tokenizer
from alignkit.objectives import ObjectiveBatch, ObjectiveConfig, SeqLogps, compute_loss
from alignkit.objectives.losses import bradley_terry_loss
from alignkit.objectives.registry import BRADLEY_TERRY
from alignkit.rewards.loading import (
    CallableReward,
    HFReward,
    RewardScorer,
    check_reward_spec,
    last_token_positions,
    load_reward_model,
    load_sequence_classifier,
)
from alignkit.runs import REWARD_MARKER
from alignkit.scoring.packing import PAD_SEGMENT, PROMPT_SEGMENT, collate

FILLER = "the a sun rain cake help water fire code list sort answer question".split()


def preference_rows(n: int, seed: int, chat: bool = False) -> list[dict]:
    """A learnable task that a random reward model gets about 70% right: random words, the
    chosen response ends in "thanks", the rejected one in "rude"."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(FILLER) for _ in range(rng.randint(lo, hi)))

    rows = []
    for _ in range(n):
        question = words(2, 5)
        prompt = (
            [{"role": "user", "content": question}]
            if chat
            else f"\n\nHuman: {question}?\n\nAssistant:"
        )
        rows.append(
            {
                "prompt": prompt,
                "chosen": f" {words(1, 4)} thanks",
                "rejected": f" {words(1, 4)} rude",
            }
        )
    return rows


def approx(x: float | torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert float(x) == pytest.approx(expected, rel=tol, abs=tol)


# ------------------------------------------------------------ pure parts


def test_bradley_terry_loss_by_hand():
    chosen = torch.tensor([2.0, 0.0, -1.0])
    rejected = torch.tensor([0.0, 0.0, 1.0])
    losses = bradley_terry_loss(chosen, rejected)
    for value, expected in zip(
        losses, [math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(2))], strict=True
    ):
        approx(value, expected)


def test_bradley_terry_method_metrics_and_mask():
    rewards = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, True], [True, False]])  # row 3 is no pair
    batch = ObjectiveBatch(
        kind="pair",
        policy=SeqLogps(rewards, torch.ones(3, 2)),
        labels=torch.tensor([[1.0, 0.0]] * 3),
        binary=torch.ones(3, dtype=torch.bool),
        high_quality=torch.tensor([[True, False]] * 3),
        mask=mask,
    )
    loss, metrics = compute_loss(BRADLEY_TERRY, batch, ObjectiveConfig())
    approx(loss, (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2)
    approx(metrics["rewards/chosen"], 1.0)
    approx(metrics["rewards/rejected"], 0.5)
    approx(metrics["rewards/margins"], 0.5)
    approx(metrics["rewards/accuracies"], 0.5)
    approx(metrics["loss"], float(loss))
    loss.backward()
    assert rewards.grad[2].abs().sum() == 0  # the masked row gets no gradient


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


# ------------------------------------------------------------ reward-model loading


def length_reward(prompts, responses):
    return [len(r) for r in responses]


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


# ------------------------------------------------------------ classifiers with several labels


@pytest.fixture(scope="module")
def sentiment_classifier(tiny_model, tmp_path_factory) -> Path:
    """A tiny random 2-label `LlamaForSequenceClassification` saved to disk with its tokenizer
    (0 = NEGATIVE, 1 = POSITIVE, like a sentiment classifier; PLE's IMDb reward)."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(3)
    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    model = LlamaForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    with torch.no_grad():
        model.score.weight.mul_(100)  # logits of order 1, so sigmoid / softmax are not ~0.5
    tok = load_tokenizer(tiny_model)
    model.config.pad_token_id = tok.pad_token_id
    path = tmp_path_factory.mktemp("classifier") / "sentiment"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


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


def test_train_rm_refuses_a_multi_label_classifier(sentiment_classifier, rm_data, tmp_path, capsys):
    args = ["train-rm", "--data", rm_data["train"], "--model", str(sentiment_classifier)]
    code = main([*args, "--output", str(tmp_path / "rm"), "--max-steps", "1"])
    assert code == 2 and "classifier with 2 labels" in capsys.readouterr().err


# ------------------------------------------------------------ train-rm


@pytest.fixture(scope="module")
def rm_data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("rm-data")
    held = preference_rows(16, seed=1) + preference_rows(16, seed=2, chat=True)
    return {
        "train": write_jsonl(root / "train.jsonl", preference_rows(64, seed=0)),
        "held": write_jsonl(root / "held.jsonl", held),
        "points": write_jsonl(
            root / "points.jsonl", [{"prompt": "a", "completion": "b", "label": 1}]
        ),
    }


def train_rm(tiny_model: str, data: dict[str, str], output: Path, *extra: str) -> int:
    args = ["train-rm", "--data", data["train"], "--eval-data", data["held"], "--model", tiny_model]
    args += ["--output", str(output), "--batch-size", "8", "--lr", "3e-3", "--precision", "fp32"]
    return main(args + list(extra))


@pytest.fixture(scope="module")
def trained_rm(tiny_model, rm_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rm") / "run"
    assert train_rm(tiny_model, rm_data, out, "--epochs", "2", "--logging-steps", "4") == 0
    return out


@pytest.fixture(scope="module")
def trained_lora_rm(tiny_model, rm_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rm-lora") / "run"
    extra = ["--lora", "--lora-r", "4", "--lora-dropout", "0", "--max-steps", "3"]
    assert train_rm(tiny_model, rm_data, out, *extra) == 0
    return out


def test_train_rm_raises_heldout_pair_accuracy(trained_rm, capsys):
    summary = json.loads((trained_rm / "summary.json").read_text())
    before = summary["eval_before"]["eval/rewards/accuracies"]
    after = summary["eval_after"]["eval/rewards/accuracies"]
    assert after >= 0.9 and after > before + 0.15, (before, after)
    margins = [summary[k]["eval/rewards/margins"] for k in ("eval_before", "eval_after")]
    assert margins[1] > margins[0]
    assert summary["steps"] == 16  # --epochs 2 of 64 pairs at --batch-size 8
    row = json.loads((trained_rm / "metrics.jsonl").read_text().splitlines()[1])
    names = ("chosen", "rejected", "margins", "accuracies")
    assert {f"rewards/{n}" for n in names} | {"loss"} <= set(row)
    config = json.loads((trained_rm / "config.json").read_text())
    assert config["method"] == "bradley-terry"
    model = trained_rm / "model"
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
    marker = json.loads((model / REWARD_MARKER).read_text())
    assert marker["method"] == "bradley-terry" and marker["max_length"] == 1024


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


def test_train_rm_lora_saves_an_adapter_with_the_score_head(trained_lora_rm, tiny_model):
    model = trained_lora_rm / "model"
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and adapter["r"] == 4
    assert "score" in adapter["modules_to_save"]
    rm = HFReward(str(model), precision="fp32")
    base = load_sequence_classifier(tiny_model)
    trained_head = rm.model.get_base_model().score.modules_to_save["default"].weight
    assert not torch.equal(trained_head, base.score.weight)  # the head was trained and saved
    assert json.loads((trained_lora_rm / "summary.json").read_text())["steps"] == 3


def test_train_rm_lora_all_linear_reaches_peft_as_its_shorthand(tiny_model, rm_data, tmp_path):
    """`--lora-targets all-linear` must reach peft as the string shorthand: as the list
    ['all-linear'] peft looks for a module of that name and fails."""
    out = tmp_path / "rm"
    args = ["train-rm", "--data", rm_data["train"], "--model", tiny_model, "--output", str(out)]
    args += ["--lora", "--lora-targets", "all-linear", "--max-steps", "1", "--precision", "fp32"]
    assert main(args) == 0
    targets = json.loads((out / "model" / "adapter_config.json").read_text())["target_modules"]
    # every linear layer of the tiny Llama but the score head (peft lists full module names)
    assert {name.rsplit(".", 1)[-1] for name in targets} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


def test_train_rm_config_file_and_flags(tiny_model, rm_data, tmp_path, capsys):
    cfg = tmp_path / "rm.yaml"
    cfg.write_text(f"data: [{rm_data['train']}]\nmax_steps: 5\nbatch_size: 2\nsave_model: false\n")
    out = tmp_path / "run"
    args = ["train-rm", "--config", str(cfg), "--model", tiny_model, "--output", str(out)]
    assert main([*args, "--max-steps", "1", "--eval-data", rm_data["held"]]) == 0
    printed = capsys.readouterr().out
    assert "done: 1 steps" in printed  # the flag overrides the file
    assert "held-out pair accuracy: " in printed
    assert not (out / "model").exists()  # save_model: false from the file
    assert json.loads((out / "config.json").read_text())["batch_size"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{points}"], "needs preference pairs"),
        (["--data", "{train}", "--config", "{yaml_beta}"], "unknown option(s) beta"),
        (["--data", "{train}", "--config", "{yaml_method}"], "always trains bradley-terry"),
        (["--data", "{train}", "--batch-size", "0"], "--batch-size must be > 0"),
        (["--data", "{missing}"], "missing"),
    ],
)
def test_train_rm_bad_input_exits_2(args, message, tiny_model, rm_data, tmp_path, capsys):
    (tmp_path / "beta.yaml").write_text("beta: 0.5\n")
    (tmp_path / "method.yaml").write_text("method: dpo\n")
    paths = dict(rm_data, yaml_beta=tmp_path / "beta.yaml", yaml_method=tmp_path / "method.yaml")
    paths["missing"] = tmp_path / "missing.jsonl"
    args = [a.format(**paths) for a in args]
    code = main(["train-rm", "--model", tiny_model, "--output", str(tmp_path / "o"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--method", "--beta", "--deft-lambda"])
def test_train_rm_has_no_policy_flags(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train-rm", "--data", "x", "--output", "y", flag, "1"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
