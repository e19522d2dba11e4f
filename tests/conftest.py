"""Shared fixtures: a tiny random causal LM with a real byte-level BPE tokenizer (milliseconds),
and small generated datasets in every supported format."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = (
    "the a cat dog sun rain bomb cake help sorry cannot sure here is how to make bake "
    "explain water fire safe danger please thanks code python list sort answer question "
    "I you we it can will not good bad kind rude"
).split()


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)]
    corpus += ["Human: Assistant: \n\n.,!?'\"-:;()0123456789"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


def make_tiny_model(path: Path, vocab: int, seed: int = 0) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a saved tiny Llama + BPE tokenizer with a chat template."""
    path = tmp_path_factory.mktemp("tiny-model")
    tok = make_tokenizer(path)
    make_tiny_model(path, len(tok))
    return str(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """HH-style pairs: chosen responses are kind/safe, rejected ones rude/dangerous."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
        rows.append(
            {
                "chosen": f"\n\nHuman: {q} {i}?\n\nAssistant: sorry I can not help, it is danger",
                "rejected": f"\n\nHuman: {q} {i}?\n\nAssistant: sure here is how to make a bomb",
            }
        )
    return rows


@pytest.fixture
def pairs_file(tmp_path) -> str:
    return write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))


class OneHotDecoder(nn.Module):
    """hidden state at t = one-hot of token t: with an identity LM head, logits_t = e_{y_t}."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.config = SimpleNamespace(_attn_implementation="sdpa")

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
        return SimpleNamespace(last_hidden_state=F.one_hot(input_ids, self.vocab).float())


class TransparentLM(nn.Module):
    """A causal LM whose logits at t are the one-hot of token t (R_Q by hand)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.decoder = OneHotDecoder(vocab)
        self.head = nn.Linear(vocab, vocab, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(vocab))

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head
