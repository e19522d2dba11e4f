"""One resolver of model specs for every verb (`alignkit.runs`): a run directory of `train`
or `train-rm` stands for its `model/` wherever a model is named, and a bad spec fails while
the options are validated — before any model is loaded or anything is generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import pair_rows, write_jsonl
from safetensors.torch import load_file

from alignkit.cli import main
from alignkit.errors import AlignkitError
from alignkit.inference.server import ChatModel, ChatParams
from alignkit.models import load_causal_lm, load_inference_model
from alignkit.runs import resolve_model_spec


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("spec-data")
    queries = root / "queries.jsonl"
    queries.write_text("".join(json.dumps({"prompt": f"bake a cake {i}"}) + "\n" for i in range(4)))
    return {
        "pairs": write_jsonl(root / "pairs.jsonl", pair_rows(8)),
        "test": write_jsonl(root / "test.jsonl", pair_rows(4, seed=3)),
        "queries": str(queries),
    }


def _run(verb: str, *args: str) -> int:
    return main([verb, *args, "--precision", "fp32"])


@pytest.fixture(scope="module")
def rm_run(tiny_model, data, tmp_path_factory) -> Path:
    """A finished `alignkit train-rm` run directory (what the verb prints)."""
    out = tmp_path_factory.mktemp("rm") / "run"
    args = ["--data", data["pairs"], "--model", tiny_model, "--max-steps", "1"]
    assert _run("train-rm", *args, "--output", str(out)) == 0
    return out


def test_eval_takes_a_train_rm_run_directory_as_reward_model(tiny_model, data, rm_run, tmp_path):
    report = tmp_path / "eval" / "report.json"
    args = ["--model", tiny_model, "--data", data["test"], "--reward-model", str(rm_run)]
    args += ["--metrics", "generate,reward", "--num-prompts", "2", "--max-new-tokens", "3"]
    assert _run("eval", *args, "--output", str(report)) == 0
    assert "reward_mean" in json.loads(report.read_text())["metrics"]


@pytest.mark.parametrize("verb", ["eval", "ple"])
def test_a_bad_reward_spec_fails_before_anything_is_generated(
    verb, tiny_model, data, tmp_path, capsys
):
    out = tmp_path / "out"
    unfinished = tmp_path / "unfinished-rm"  # a run that never saved its model
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text('{"step": 1}\n')
    if verb == "eval":
        args = ["--model", tiny_model, "--data", data["test"], "--output", str(out / "r.json")]
    else:
        args = ["--model", tiny_model, "--queries", data["queries"], "--output", str(out)]
    assert _run(verb, *args, "--reward-model", str(unfinished)) == 2
    assert "without a saved model" in capsys.readouterr().err
    assert not out.exists()  # nothing was generated or written


@pytest.mark.parametrize("flag", ["--model", "--ref"])
def test_eval_refuses_a_folder_without_a_model_at_once(flag, tiny_model, data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = {"--model": tiny_model, "--data": data["test"], "--output": str(tmp_path / "r.json")}
    args[flag] = str(tmp_path / "empty")
    assert _run("eval", *[x for kv in args.items() for x in kv]) == 2
    assert "holds no model" in capsys.readouterr().err


def test_train_starts_from_a_run_directory(tiny_model, data, tmp_path):
    """`--model RUN_DIR` of a full-weights run loads the run's model/: training 0 steps of
    it with lr 0 saves the same weights as the run saved."""
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--method", "sft", "--data", data["pairs"], "--max-steps", "1"]
    assert (
        _run("train", *common, "--model", tiny_model, "--lr", "1e-2", "--output", str(first)) == 0
    )
    assert (
        _run("train", *common, "--model", str(first), "--lr", "1e-12", "--output", str(second)) == 0
    )
    a = load_file(first / "model" / "model.safetensors")
    b = load_file(second / "model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    original = load_causal_lm(tiny_model).state_dict()
    assert not torch.allclose(a["model.norm.weight"], original["model.norm.weight"])


def test_a_lora_run_directory_loads_base_plus_adapter(tiny_model, data, tmp_path):
    run = tmp_path / "lora"
    args = ["--method", "sft", "--data", data["pairs"], "--max-steps", "2", "--lr", "1e-2"]
    args += ["--model", tiny_model, "--lora", "--lora-dropout", "0", "--output", str(run)]
    assert _run("train", *args) == 0
    model = load_causal_lm(str(run))  # the base from summary.json, the adapter from model/
    assert hasattr(model, "peft_config")
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        tuned = model(x).logits
        with model.disable_adapter():
            base = model(x).logits
    plain = load_causal_lm(tiny_model)(x).logits.detach()
    assert torch.allclose(base, plain, atol=1e-5) and not torch.allclose(tuned, plain, atol=1e-4)


# ------------------------------------------------------------------ serve: adapters, CLI


@pytest.fixture
def lora_run(tiny_model, tmp_path) -> Path:
    """A run directory laid out like `alignkit train --lora` writes it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    get_peft_model(base, config).save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run / "model")
    (run / "summary.json").write_text(json.dumps({"base_model": tiny_model, "steps": 1}))
    return run


def test_adapter_run_directory(lora_run, tiny_model):
    for spec in (str(lora_run), str(lora_run / "model")):
        resolved = resolve_model_spec(spec)
        assert (resolved.base, resolved.adapter_path) == (tiny_model, str(lora_run / "model"))
    loaded = load_inference_model(str(lora_run))
    assert "adapter" in loaded.description and not hasattr(loaded.model, "peft_config")
    chat = ChatModel(loaded, "lora", max_new_tokens=4)
    completion = chat.complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=3))
    assert 0 < completion.completion_tokens <= 3


def test_adapter_base_from_adapter_config(lora_run, tiny_model):
    (lora_run / "summary.json").unlink()
    assert resolve_model_spec(str(lora_run / "model")).base == tiny_model
    config_path = lora_run / "model" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = None
    config_path.write_text(json.dumps(config))
    with pytest.raises(AlignkitError, match="base model is unknown"):
        resolve_model_spec(str(lora_run / "model"))


def test_plain_specs_pass_through(tiny_model):
    for name in (tiny_model, "default", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        resolved = resolve_model_spec(name)
        assert (resolved.weights, resolved.adapter_path) == (name, None)


def test_bad_model_specs_fail_before_loading(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignkitError, match="holds no model"):
        resolve_model_spec(str(tmp_path / "empty"))
    with pytest.raises(AlignkitError, match="no such file or directory"):
        resolve_model_spec(str(tmp_path / "missing"))
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(AlignkitError, match="without a saved model"):
        resolve_model_spec(str(unfinished))


# ------------------------------------------------------------------ one prompt format


@pytest.mark.parametrize("flag, chat", [((), True), (("--no-chat",), False)])
def test_generate_renders_prompts_as_the_run_was_trained(
    tiny_model, tmp_path, monkeypatch, flag, chat
):
    """`train` records its prompt format (default: the chat template) in config.json, and
    `generate --model RUN` renders a plain-text prompt exactly as training did. The old code
    trained on the plain text and sampled through the chat template."""
    import alignkit.train.trainer as trainer_module
    from alignkit.data.prompts import render_prompt
    from alignkit.io import read_jsonl
    from alignkit.models import load_tokenizer

    text = "how do I bake a cake"
    rows = [{"prompt": text, "chosen": " sure here is how", "rejected": " no"}] * 4
    seen: list = []
    encode = trainer_module.encode_records
    monkeypatch.setattr(
        trainer_module,
        "encode_records",
        lambda records, *a: seen.extend(records) or encode(records, *a),
    )
    run = tmp_path / "run"
    args = ["--data", write_jsonl(tmp_path / "p.jsonl", rows), "--max-steps", "1"]
    assert _run("train", *args, "--model", tiny_model, "--output", str(run), *flag) == 0
    assert json.loads((run / "config.json").read_text())["chat"] is chat
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"prompt": text}])
    pool = tmp_path / "pool.jsonl"
    argv = ["--model", str(run), "--prompts", prompts, "--output", str(pool)]
    assert _run("generate", *argv, "--num-responses", "1", "--max-new-tokens", "2") == 0
    sent = read_jsonl(pool)[0]["prompt"]
    tokenizer = load_tokenizer(str(run))
    as_sampled = render_prompt(sent if isinstance(sent, str) else tuple(sent), tokenizer)[0]
    as_trained = render_prompt(seen[0].prompt, tokenizer)[0]
    assert as_sampled == as_trained
    assert as_trained.startswith("<|im_start|>user") is chat


def test_chat_format_of_a_model(tmp_path, tiny_model):
    from alignkit.runs import chat_format

    def run_dir(name: str, config: dict) -> str:
        run = tmp_path / name
        (run / "model").mkdir(parents=True)
        (run / "model" / "config.json").write_text("{}")
        (run / "summary.json").write_text("{}")
        (run / "config.json").write_text(json.dumps(config))
        return str(run)

    assert chat_format(None, tiny_model) and chat_format(None, "default")  # not a run
    assert not chat_format(None, run_dir("old-train", {"method": "dpo"}))  # trained plain
    assert chat_format(None, run_dir("online", {"chat": True}))
    assert not chat_format(None, run_dir("plain", {"method": "dpo", "chat": False}))
    assert chat_format(True, run_dir("given", {"method": "dpo", "chat": False}))  # flag wins
