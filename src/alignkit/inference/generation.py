"""Batched generation with Hugging Face `generate` (left padding, greedy or sampled)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alignkit.data.prompts import render_prompt
from alignkit.data.records import Prompt


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


@dataclass(frozen=True)
class Completion:
    """A generated response; `finished` is False when it was cut at `max_new_tokens` before
    the model emitted EOS (trainers then must not append EOS to it). `token_ids`: the sampled
    tokens (without EOS and padding) when the backend returns them, else empty; RL losses
    score these exact tokens rather than a re-tokenization of `text`."""

    text: str
    finished: bool = True
    token_ids: tuple[int, ...] = ()


def finished_rows(new_ids: torch.Tensor, eos_ids: Sequence[int]) -> list[bool]:
    """(B, T) generated ids -> per row: did the model emit an EOS token? (Padding after an
    early stop is only added to rows that stopped, so pad == eos is harmless.)"""
    if not eos_ids:
        return [False] * new_ids.shape[0]
    hit = torch.isin(new_ids, torch.tensor(list(eos_ids), device=new_ids.device))
    return hit.any(dim=1).tolist()


def eos_token_ids(tokenizer: Any) -> list[int]:
    """The tokenizer's end-of-sequence token ids (none, one, or several)."""
    eos = tokenizer.eos_token_id
    return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))


def sampled_ids(row: Sequence[int], eos_ids: Sequence[int], finished: bool) -> tuple[int, ...]:
    """The tokens a model sampled in one generated row: up to its first EOS when it finished
    (the padding after it dropped), else the whole row."""
    if finished:
        stop = next((j for j, t in enumerate(row) if t in eos_ids), len(row))
        row = row[:stop]
    return tuple(int(t) for t in row)


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
    return [
        c.text
        for c in generate_completions(model, tokenizer, prompts, sampling, autocast, progress)
    ]


@torch.no_grad()
def generate_completions(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Prompt],
    sampling: SamplingConfig | None = None,
    autocast: torch.dtype | None = None,
    progress: bool = True,
) -> list[Completion]:
    """The model's response to each prompt: text (special tokens stripped) and whether it
    ended with EOS within `max_new_tokens`."""
    sampling = sampling or SamplingConfig()
    device = next(model.parameters()).device
    texts = [render_prompt(p, tokenizer) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]), reverse=True)
    # a batch holds plain or chat-rendered prompts, never both: they are tokenized differently
    groups = [[i for i in order if texts[i][1] == templated] for templated in (False, True)]
    out: list[Completion] = [Completion("")] * len(texts)
    eos_ids = eos_token_ids(tokenizer)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        chunks = [
            group[i : i + sampling.batch_size]
            for group in groups
            for i in range(0, len(group), sampling.batch_size)
        ]
        for chunk in tqdm(chunks, desc="generating", disable=not progress, leave=False):
            # the same for the whole chunk; chat-rendered text already holds its special tokens
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
            done = finished_rows(new, eos_ids)
            for i, row, fin in zip(chunk, new, done, strict=True):
                text = tokenizer.decode(row, skip_special_tokens=True).strip()
                out[i] = Completion(text, fin, sampled_ids(row.tolist(), eos_ids, fin))
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return out
