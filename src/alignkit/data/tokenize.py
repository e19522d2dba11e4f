"""Tokenization: records -> prompt ids + K response ids, with a stated truncation policy.

The prompt and each response are tokenized separately and concatenated, so the prompt's
tokens are an exact prefix of prompt+response by construction: no token can merge across the
boundary (TRL users were bitten by exactly that). Each response ends with EOS, so the model
learns to stop. Chat-message prompts are rendered with the tokenizer's chat template
(`alignkit.data.prompts.render_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from alignkit.data.prompts import render_prompt
from alignkit.data.records import Multi, Pair, Point, Prompt, Record
from alignkit.errors import AlignkitError

Truncation = Literal["truncate", "drop"]


@dataclass
class Encoded:
    """One training example: a prompt and K >= 1 responses, as token ids."""

    prompt: list[int]
    responses: list[list[int]]
    labels: list[float]
    high_quality: list[bool]
    binary: bool
    index: int  # position of the record in the list given to `encode_records`

    @property
    def length(self) -> int:
        """Tokens of the packed row prompt|response_1|...|response_K."""
        return len(self.prompt) + sum(len(r) for r in self.responses)


@dataclass
class EncodeSummary:
    """How many examples the truncation policy touched."""

    total: int = 0
    kept: int = 0
    prompt_truncated: int = 0
    response_truncated: int = 0
    dropped: int = 0
    dropped_sources: list[str] = field(default_factory=list)

    def describe(self, max_length: int, policy: Truncation) -> str:
        text = f"{self.kept}/{self.total} examples kept (max_length={max_length}, {policy})"
        if self.prompt_truncated or self.response_truncated:
            text += (
                f"; prompt truncated (left) in {self.prompt_truncated}, "
                f"response truncated (right) in {self.response_truncated}"
            )
        if self.dropped:
            text += f"; {self.dropped} dropped as too long"
        return text


def _fields(record: Record) -> tuple[Prompt, list[str], list[float], list[bool], bool]:
    if isinstance(record, Pair):
        return record.prompt, [record.chosen, record.rejected], [1.0, 0.0], [True, False], True
    if isinstance(record, Point):
        return (
            record.prompt,
            [record.completion],
            [record.label],
            [record.high_quality],
            record.binary,
        )
    if isinstance(record, Multi):
        best = max(range(len(record.scores)), key=lambda i: record.scores[i])
        hq = [i == best for i in range(len(record.scores))]
        return record.prompt, list(record.responses), list(record.scores), hq, True
    raise TypeError(f"not a record: {record!r}")


def _unfinished(record: Record, k: int) -> list[bool]:
    """Per response: cut off at a generation limit (tokenized without EOS)?"""
    if isinstance(record, Point):
        return [record.unfinished]
    if isinstance(record, Multi) and record.unfinished:
        if len(record.unfinished) != k:
            raise ValueError(f"{k} responses but {len(record.unfinished)} unfinished flags")
        return list(record.unfinished)
    return [False] * k


def tokenize_prompts(prompts: Sequence[Prompt], tokenizer) -> list[list[int]]:
    """Token ids of each prompt (BOS added by the tokenizer for plain text, if it uses one)."""
    rendered = [render_prompt(p, tokenizer) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    for templated in (False, True):
        idx = [i for i, (_, t) in enumerate(rendered) if t == templated]
        if not idx:
            continue
        texts = [rendered[i][0] for i in idx]
        ids = tokenizer(texts, add_special_tokens=not templated)["input_ids"]
        for i, row in zip(idx, ids, strict=True):
            out[i] = list(row)
    return out


def tokenize_responses(
    responses: Sequence[str], tokenizer, unfinished: Sequence[bool] | None = None
) -> list[list[int]]:
    """Token ids of each response, tokenized alone, with EOS appended (except to the
    `unfinished` ones: generations cut off at the generation limit)."""
    if tokenizer.eos_token_id is None:
        raise AlignkitError("the tokenizer has no EOS token; set one before training")
    ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"] if responses else []
    cut = unfinished if unfinished is not None else [False] * len(ids)
    eos = [tokenizer.eos_token_id]
    # an unfinished response keeps EOS only if it has no token at all (it cannot be empty)
    return [list(row) + ([] if c and row else eos) for row, c in zip(ids, cut, strict=True)]


def _truncate(
    prompt: list[int], responses: list[list[int]], max_length: int, summary: EncodeSummary
) -> tuple[list[int], list[list[int]]]:
    """Fit prompt + the longest response into max_length, keeping the response if possible.

    The prompt loses tokens from the left (its end, next to the response, matters most) down
    to half of max_length; only then are responses cut from the right.
    """
    longest = max(len(r) for r in responses)
    if len(prompt) + longest <= max_length:
        return prompt, responses
    keep = min(len(prompt), max(max_length - longest, max_length // 2))
    if keep < len(prompt):
        prompt = prompt[len(prompt) - keep :]
        summary.prompt_truncated += 1
    room = max_length - len(prompt)
    if longest > room:
        responses = [r[:room] for r in responses]
        summary.response_truncated += 1
    return prompt, responses


def encode_records(
    records: Sequence[Record],
    tokenizer,
    max_length: int = 1024,
    truncation: Truncation = "truncate",
) -> tuple[list[Encoded], EncodeSummary]:
    """Tokenize every record. `max_length` bounds prompt + each single response."""
    if max_length < 8:
        raise AlignkitError(f"--max-length must be at least 8, got {max_length}")
    fields = [_fields(r) for r in records]
    prompt_ids = tokenize_prompts([f[0] for f in fields], tokenizer)
    flat = [resp for f in fields for resp in f[1]]
    cut = [c for r, f in zip(records, fields, strict=True) for c in _unfinished(r, len(f[1]))]
    response_ids = iter(tokenize_responses(flat, tokenizer, cut))
    summary = EncodeSummary(total=len(records))
    out: list[Encoded] = []
    for i, (record, (_, resps, labels, hq, binary)) in enumerate(zip(records, fields, strict=True)):
        prompt = prompt_ids[i]
        responses = [next(response_ids) for _ in resps]
        if not prompt:
            raise AlignkitError(f"{record.source}: the prompt is empty after tokenization")
        too_long = len(prompt) + max(len(r) for r in responses) > max_length
        if too_long and truncation == "drop":
            summary.dropped += 1
            summary.dropped_sources.append(record.source)
            continue
        prompt, responses = _truncate(prompt, responses, max_length, summary)
        out.append(Encoded(prompt, responses, list(labels), list(hq), binary, i))
    summary.kept = len(out)
    if not out:
        raise AlignkitError(
            f"no example is left after tokenization: {summary.describe(max_length, truncation)}"
        )
    return out, summary
