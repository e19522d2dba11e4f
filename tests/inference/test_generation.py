"""Batched generation (alignkit.inference.generation)."""

from __future__ import annotations

import pytest
from tokenizers.processors import TemplateProcessing

from alignkit.data.tokenize import tokenize_prompts
from alignkit.inference.generation import SamplingConfig, generate
from alignkit.models import load_causal_lm, load_tokenizer

CHAT = ({"role": "user", "content": "the cat"},)
PLAIN = "the dog can help"  # shorter than CHAT rendered by the chat template


@pytest.fixture(scope="module")
def bos_model(tiny_model):
    """The tiny model, with a tokenizer that adds BOS to plain text (as Llama's does): a
    chat-rendered prompt already holds its special tokens and must not get another."""
    tokenizer = load_tokenizer(tiny_model)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{tokenizer.bos_token} $A",
        special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)],
    )
    assert tokenizer("the")["input_ids"][0] == tokenizer.bos_token_id
    return load_causal_lm(tiny_model), tokenizer


@pytest.mark.parametrize("prompts", [[CHAT, PLAIN], [PLAIN, CHAT]])
def test_a_batch_mixing_chat_and_plain_prompts_generates_as_each_alone(bos_model, prompts):
    model, tokenizer = bos_model
    sampling = SamplingConfig(max_new_tokens=8, batch_size=2)
    alone = [generate(model, tokenizer, [p], sampling, progress=False)[0] for p in prompts]
    assert generate(model, tokenizer, prompts, sampling, progress=False) == alone


def test_each_prompt_reaches_the_model_tokenized_as_for_training(bos_model, monkeypatch):
    """The ids given to `model.generate` (without padding) are `tokenize_prompts`' ids."""
    model, tokenizer = bos_model
    seen: list[list[int]] = []
    original = model.generate

    def spy(input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            seen.append([i for i, m in zip(ids, mask, strict=True) if m])
        return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    sampling = SamplingConfig(max_new_tokens=2, batch_size=2)
    generate(model, tokenizer, [CHAT, PLAIN], sampling, progress=False)
    expected = tokenize_prompts([CHAT, PLAIN], tokenizer)
    assert sorted(seen) == sorted(expected)
    assert expected[1][0] == tokenizer.bos_token_id  # plain text: one BOS
    assert expected[0].count(tokenizer.bos_token_id) == 2  # the template's two <|im_start|>
