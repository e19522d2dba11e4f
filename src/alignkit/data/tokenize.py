"""Tokenization: records -> prompt ids + K response ids, with a stated truncation policy.

The prompt and each response are tokenized separately and concatenated, so the prompt's
tokens are an exact prefix of prompt+response by construction: no token can merge across the
boundary (TRL users were bitten by exactly that). Each response ends with EOS, so the model
learns to stop. Chat-message prompts are rendered with the tokenizer's chat template
(`alignkit.data.prompts.render_prompt`).

Memory stays bounded by `max_length`, not by the data: a text longer than `max_length *
CHARS_PER_TOKEN` characters is cut before it is tokenized (a prompt keeps its end, a response
its start: the sides truncation keeps), so one 50 MB record costs what a record of 32k
characters per 1,024 tokens does instead of gigabytes. The tokens kept are those of the whole
text: a cut text must still give `_MARGIN` tokens more than can be kept (else it is tokenized
again from a cut twice as long), so no token that the cut changed is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from alignkit.data.prompts import render_prompt
from alignkit.data.records import Multi, Pair, Point, Prompt, Record
from alignkit.errors import AlignkitError

Truncation = Literal["truncate", "drop"]

# characters per token of --max-length that a text is cut to before tokenizing (English
# averages about 4; tokens of 32 or more characters are runs of spaces or symbols)
CHARS_PER_TOKEN = 32
_MARGIN = 8  # tokens of a cut text beyond those kept: the cut changes only the last few


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


def _cut(text: str, chars: int, keep_end: bool) -> str:
    """At most `chars` characters of `text`: its end (`keep_end`) or its start."""
    if len(text) <= chars:
        return text
    return text[len(text) - chars :] if keep_end else text[:chars]


def tokenize_bounded(
    texts: Sequence[str],
    tokenize: Callable[[list[str]], list[list[int]]],
    max_tokens: int | None,
    keep_end: bool,
) -> list[list[int]]:
    """`tokenize(texts)` of texts of which only `max_tokens` tokens, at the end (`keep_end`)
    or the start, will be kept: a longer text is cut to `max_tokens * CHARS_PER_TOKEN`
    characters first, and cut again twice as long (up to the whole text) while it gives fewer
    than `max_tokens + _MARGIN` tokens. Those kept tokens are the whole text's, and no call
    of `tokenize` gets more characters than about twice what they need. None: no cut."""
    if not texts:
        return []
    if max_tokens is None:
        return [list(row) for row in tokenize(list(texts))]
    chars = max_tokens * CHARS_PER_TOKEN
    ids = [list(row) for row in tokenize([_cut(text, chars, keep_end) for text in texts])]
    for i, text in enumerate(texts):
        limit = chars
        while len(text) > limit and len(ids[i]) < max_tokens + _MARGIN:
            limit *= 2
            ids[i] = list(tokenize([_cut(text, limit, keep_end)])[0])
    return ids


def tokenize_prompts(
    prompts: Sequence[Prompt], tokenizer, max_tokens: int | None = None
) -> list[list[int]]:
    """Token ids of each prompt (BOS added by the tokenizer for plain text, if it uses one).
    `max_tokens`: only the last that many are needed (`tokenize_bounded`)."""
    rendered = [render_prompt(p, tokenizer) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    for templated in (False, True):
        idx = [i for i, (_, t) in enumerate(rendered) if t == templated]
        if not idx:
            continue

        def tokenize(texts: list[str], special: bool = not templated) -> list[list[int]]:
            return tokenizer(texts, add_special_tokens=special)["input_ids"]

        texts = [rendered[i][0] for i in idx]
        ids = tokenize_bounded(texts, tokenize, max_tokens, keep_end=True)
        for i, row in zip(idx, ids, strict=True):
            out[i] = row
    return out


def tokenize_responses(
    responses: Sequence[str],
    tokenizer,
    unfinished: Sequence[bool] | None = None,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Token ids of each response, tokenized alone, with EOS appended (except to the
    `unfinished` ones: generations cut off at the generation limit). `max_tokens`: only the
    first that many are needed (`tokenize_bounded`)."""
    if tokenizer.eos_token_id is None:
        raise AlignkitError("the tokenizer has no EOS token; set one before training")

    def tokenize(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]

    ids = tokenize_bounded(responses, tokenize, max_tokens, keep_end=False)
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
    # no side keeps more than max_length tokens: longer texts are cut before tokenizing
    prompt_ids = tokenize_prompts([f[0] for f in fields], tokenizer, max_length)
    flat = [resp for f in fields for resp in f[1]]
    cut = [c for r, f in zip(records, fields, strict=True) for c in _unfinished(r, len(f[1]))]
    response_ids = iter(tokenize_responses(flat, tokenizer, cut, max_length))
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
