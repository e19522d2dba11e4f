"""The generator backends (`alignkit.inference.generators`): in-process HF (n samples, cut-off
rows) and vLLM (sampling parameters, a fake engine, LoRA weight sync)."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import torch
from conftest import chat

from alignkit.errors import AlignkitError
from alignkit.inference import generators as G
from alignkit.inference.generation import Completion, SamplingConfig, finished_rows

# ------------------------------------------------------------------ generators


def test_hf_generator_returns_n_samples_per_prompt(tiny_model) -> None:
    from alignkit.models import load_causal_lm, load_tokenizer

    gen = G.HFGenerator(load_causal_lm(tiny_model), load_tokenizer(tiny_model), None, False)
    sampling = SamplingConfig(max_new_tokens=4, do_sample=True, seed=0, batch_size=3)
    out = gen.generate([chat("a"), chat("b b")], sampling, 3)
    assert [len(group) for group in out] == [3, 3]
    assert gen.generate([chat("a")], sampling, 1) == gen.generate([chat("a")], sampling, 1)


def test_finished_rows_by_hand() -> None:
    new = torch.tensor([[5, 6, 2, 0], [5, 6, 7, 8], [2, 0, 0, 0]])  # eos 2, pad 0
    assert finished_rows(new, [2]) == [True, False, True]
    assert finished_rows(new, [8, 2]) == [True, True, True]
    assert finished_rows(new, []) == [False, False, False]


def test_hf_generator_marks_cut_off_samples(tiny_model) -> None:
    from alignkit.models import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(tiny_model), load_tokenizer(tiny_model)
    sampling = SamplingConfig(max_new_tokens=3)
    first = model.generate(**tok(["hi"], return_tensors="pt"), max_new_tokens=1, do_sample=False)
    tok.eos_token_id = int(first[0, -1])  # the greedy first token now ends the answer
    (stopped,) = G.HFGenerator(model, tok, None, False).generate(["hi"], sampling, 1)[0]
    assert stopped.finished
    tok.eos_token_id = len(tok) - 1 if int(first[0, -1]) != len(tok) - 1 else 0
    new = model.generate(**tok(["hi"], return_tensors="pt"), max_new_tokens=3, do_sample=False)
    (cut,) = G.HFGenerator(model, tok, None, False).generate(["hi"], sampling, 1)[0]
    assert cut.finished == (tok.eos_token_id in new[0, -3:].tolist())


def test_vllm_sampling_params_mapping() -> None:
    sampled = SamplingConfig(max_new_tokens=7, do_sample=True, temperature=0.7, top_p=0.9, seed=3)
    assert G.sampling_params_kwargs(sampled, 4) == {
        "n": 4, "max_tokens": 7, "seed": 3, "skip_special_tokens": True,
        "temperature": 0.7, "top_p": 0.9, "top_k": -1,
    }  # fmt: skip
    top_k = dataclasses.replace(sampled, top_k=20)
    assert G.sampling_params_kwargs(top_k, 1)["top_k"] == 20
    greedy = G.sampling_params_kwargs(G.greedy(sampled), 1)
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, -1)
    engine = G.engine_kwargs("/m", 0.4, 5, 300)
    assert engine["model"] == "/m" and engine["gpu_memory_utilization"] == 0.4
    assert engine["seed"] == 5 and engine["max_model_len"] == 300


def test_choose_backend() -> None:
    assert G.choose_backend("hf", 1, True, True) == "hf"
    assert G.choose_backend("auto", 1, True, True) == "vllm"
    assert G.choose_backend("auto", 1, False, True) == "hf"
    assert G.choose_backend("auto", 2, True, True) == "hf"
    assert G.choose_backend("vllm", 1, True, True) == "vllm"
    with pytest.raises(AlignkitError, match="vllm package, a CUDA GPU"):
        G.choose_backend("vllm", 1, False, False)


class _FakeLLM:
    def __init__(self) -> None:
        self.calls: list = []
        self.loaded: dict = {}
        self.eos: int | None = None
        model = types.SimpleNamespace(load_weights=lambda w: self.loaded.update(dict(w)))
        runner = types.SimpleNamespace(model=model)
        executor = types.SimpleNamespace(driver_worker=types.SimpleNamespace(model_runner=runner))
        self.llm_engine = types.SimpleNamespace(model_executor=executor)

    def generate(self, inputs, params, use_tqdm):
        self.calls.append((inputs, params))
        outs = [
            types.SimpleNamespace(  # vLLM's CompletionOutput: a finished one ends with EOS
                text=f" r{j} ",
                finish_reason="length" if j else "stop",
                token_ids=[13, 14] if j else [11, 12, self.eos],
            )
            for j in range(params.kwargs["n"])
        ]
        return [types.SimpleNamespace(outputs=outs) for _ in inputs]


def test_vllm_generator_with_a_fake_engine(tiny_model, monkeypatch) -> None:
    from alignkit.data.tokenize import tokenize_prompts
    from alignkit.models import load_tokenizer

    fake = types.ModuleType("vllm")
    fake.SamplingParams = lambda **kw: types.SimpleNamespace(kwargs=kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    tok = load_tokenizer(tiny_model)
    llm = _FakeLLM()
    llm.eos = tok.eos_token_id
    gen = G.VLLMGenerator(tok, {}, llm=llm)
    out = gen.generate([chat("a"), chat("b")], SamplingConfig(max_new_tokens=5, do_sample=True), 2)
    # "length" = cut off; the sampled ids without EOS
    row = [Completion("r0", True, (11, 12)), Completion("r1", False, (13, 14))]
    assert out == [row, row]
    inputs, sampling_params = llm.calls[0]
    assert inputs[0]["prompt_token_ids"] == tokenize_prompts([chat("a")], tok)[0]
    assert sampling_params.kwargs["n"] == 2 and sampling_params.kwargs["max_tokens"] == 5


def test_vllm_sync_pushes_merged_lora_weights(tiny_model) -> None:
    from alignkit.models import LoraSettings, load_causal_lm

    llm = _FakeLLM()
    gen = G.VLLMGenerator(None, {}, llm=llm)
    lora = load_causal_lm(tiny_model, lora=LoraSettings(target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a non-zero adapter, so merging changes q_proj
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    gen.sync(lora)
    base = load_causal_lm(tiny_model).state_dict()
    assert set(llm.loaded) == set(base)  # plain checkpoint names, no adapter tensors
    q = "model.layers.0.self_attn.q_proj"
    params = dict(lora.named_parameters())
    lora_a = params[f"base_model.model.{q}.lora_A.default.weight"]
    delta = 0.1 * lora_a.sum(0, keepdim=True) * (32 / 8)  # scale * B @ A with B = 0.1
    assert torch.allclose(llm.loaded[f"{q}.weight"], base[f"{q}.weight"] + delta, atol=1e-6)
    up = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(llm.loaded[up], base[up])
    # the trained model itself is left exactly as it was
    assert torch.equal(params[f"base_model.model.{q}.base_layer.weight"], base[f"{q}.weight"])
    gen.sync(load_causal_lm(tiny_model))
    assert torch.equal(llm.loaded[up], base[up])


@pytest.mark.skipif(
    not (G.vllm_available() and torch.cuda.is_available()), reason="needs vllm and a GPU"
)
def test_vllm_backend_generates(tiny_model) -> None:  # pragma: no cover - GPU CI only
    from alignkit.models import load_tokenizer

    engine = G.engine_kwargs(tiny_model, 0.2, 0, 256)
    gen = G.VLLMGenerator(load_tokenizer(tiny_model), engine)
    out = gen.generate([chat("a")], SamplingConfig(max_new_tokens=4, do_sample=True, seed=0), 2)
    assert len(out[0]) == 2
