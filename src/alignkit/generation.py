"""Batched generation with Hugging Face `generate` (left padding, greedy or sampled)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from alignkit.data.records import Prompt
from alignkit.encoding import render_prompt


@dataclass
class SamplingConfig:
    """How to decode: greedy when `do_sample` is False."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 8
    seed: int | None = None


def as_prompt(text_or_messages: Prompt | str, chat: bool) -> Prompt:
    """A user query as a prompt: wrapped as a chat message when `chat` is True."""
    if chat and isinstance(text_or_messages, str):
        return ({"role": "user", "content": text_or_messages},)
    return text_or_messages


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Prompt],
    sampling: SamplingConfig | None = None,
    autocast: torch.dtype | None = None,
    progress: bool = True,
) -> list[str]:
    """The model's response text to each prompt (special tokens stripped)."""
    sampling = sampling or SamplingConfig()
    device = next(model.parameters()).device
    texts = [render_prompt(p, tokenizer) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]), reverse=True)
    out: list[str] = [""] * len(texts)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        chunks = [
            order[i : i + sampling.batch_size] for i in range(0, len(order), sampling.batch_size)
        ]
        for chunk in tqdm(chunks, desc="generating", disable=not progress, leave=False):
            # chat-rendered prompts already hold their special tokens
            templated = texts[chunk[0]][1]
            enc = tokenizer(
                [texts[i][0] for i in chunk],
                return_tensors="pt",
                padding=True,
                add_special_tokens=not templated,
            ).to(device)
            kwargs = {
                "max_new_tokens": sampling.max_new_tokens,
                "do_sample": sampling.do_sample,
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            }
            if sampling.do_sample:
                kwargs.update(
                    temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k
                )
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            with torch.autocast(
                device.type, dtype=autocast or torch.float32, enabled=autocast is not None
            ):
                ids = model.generate(**enc, **kwargs)
            new = ids[:, enc["input_ids"].shape[1] :]
            for i, row in zip(chunk, new, strict=True):
                out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return out
