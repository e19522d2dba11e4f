"""Statistics of a loaded data set (`alignkit data inspect`).

Lengths are counted per record: every record contributes its prompt once and each of its
responses (a pair two, a point one, a multi record k). A chat prompt's length in characters
is the sum of its messages' contents; in tokens it is the rendered chat template (with the
generation prompt) when the tokenizer has one, else the contents joined by newlines
(`alignkit.data.prompts.prompt_token_text`).
Percentiles use the nearest-rank method (p95 of n values = the ceil(0.95 n)-th smallest).
A text longer than `_PIECE_CHARS` characters is tokenized in pieces of at most that many
(cut before a white space where the piece's second half has one) and their counts summed, so
memory stays bounded (a tokenizer needs about 140 bytes per character of one text); such a
count may differ from the whole text's by a token or so per piece.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from alignkit.data.formats import kind_of
from alignkit.data.prompts import prompt_key, prompt_token_text
from alignkit.data.records import LoadSummary, Multi, Pair, Point, Prompt, Record

_TOKENIZE_CHUNK = 512
_PIECE_CHARS = 1 << 18


def describe(values: Sequence[float]) -> dict[str, float] | None:
    """mean / median / p95 / max of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
    }


def _responses(record: Record) -> tuple[str, ...]:
    if isinstance(record, Pair):
        return (record.chosen, record.rejected)
    if isinstance(record, Point):
        return (record.completion,)
    return record.responses


def _prompt_chars(prompt: Prompt) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(message["content"]) for message in prompt)


def _label_stats(points: list[Point]) -> dict[str, Any] | None:
    if not points:
        return None
    binary = [point.label for point in points if point.binary]
    scores = [point.label for point in points if not point.binary]
    continuous = None
    if scores:
        continuous = {
            "count": len(scores),
            "min": min(scores),
            "mean": statistics.fmean(scores),
            "max": max(scores),
        }
    return {
        "binary": {"positive": binary.count(1.0), "negative": binary.count(0.0)},
        "continuous": continuous,
        "high_quality": sum(point.high_quality for point in points),
    }


def _multi_stats(multis: list[Multi]) -> dict[str, Any] | None:
    if not multis:
        return None
    sizes = [len(multi.responses) for multi in multis]
    return {
        "records": len(multis),
        "responses_per_prompt": {
            "min": min(sizes),
            "mean": statistics.fmean(sizes),
            "max": max(sizes),
        },
    }


def _duplicates(records: Sequence[Record]) -> int:
    """How many (prompt, response) items repeat an earlier one."""
    items = [(prompt_key(r.prompt), text) for r in records for text in _responses(r)]
    return len(items) - len(set(items))


def _pieces(text: str, size: int) -> list[str]:
    """`text` in pieces of at most `size` characters, each ending before the last white space
    of its second half when there is one (a token rarely spans a white space)."""
    pieces, start = [], 0
    while len(text) - start > size:
        end = start + size
        space = max(text.rfind(c, start + size // 2, end) for c in " \n\t")
        end = space if space > start else end
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def _token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each text; a text over `_PIECE_CHARS` characters is counted piece by piece."""

    def count(batch: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]]

    counts: list[int] = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = list(texts[start : start + _TOKENIZE_CHUNK])
        found = count([text if len(text) <= _PIECE_CHARS else "" for text in chunk])
        for i, text in enumerate(chunk):
            if len(text) > _PIECE_CHARS:
                found[i] = sum(count([piece])[0] for piece in _pieces(text, _PIECE_CHARS))
        counts.extend(found)
    return counts


def inspect_records(
    records: Sequence[Record], summary: LoadSummary, tokenizer: Any = None
) -> dict[str, Any]:
    """A JSON-serialisable dict of statistics (token lengths only when `tokenizer` is given)."""
    prompts = [record.prompt for record in records]
    responses = [text for record in records for text in _responses(record)]
    kinds: dict[str, int] = {}
    for record in records:
        kinds[kind_of(record)] = kinds.get(kind_of(record), 0) + 1
    stats: dict[str, Any] = {
        "files": list(summary.files),
        "records": len(records),
        "formats": dict(summary.counts),
        "kinds": kinds,
        "prompts": len({prompt_key(prompt) for prompt in prompts}),
        "prompt_chars": describe([_prompt_chars(prompt) for prompt in prompts]),
        "response_chars": describe([len(text) for text in responses]),
        "labels": _label_stats([r for r in records if isinstance(r, Point)]),
        "multi": _multi_stats([r for r in records if isinstance(r, Multi)]),
        "duplicates": _duplicates(records),
    }
    if summary.skip_invalid:
        stats["rejected"] = {
            "records": len(summary.rejected),
            "by_reason": summary.rejected_by_reason(),
        }
    if tokenizer is not None:
        prompt_texts = [prompt_token_text(prompt, tokenizer) for prompt in prompts]
        stats["prompt_tokens"] = describe(_token_counts(tokenizer, prompt_texts))
        stats["response_tokens"] = describe(_token_counts(tokenizer, responses))
    return stats


# ---------------------------------------------------------------- report


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _lengths(name: str, summary: dict[str, float] | None) -> str:
    if summary is None:
        return f"  {name:<16} -"
    parts = "  ".join(f"{key} {_number(value)}" for key, value in summary.items())
    return f"  {name:<16} {parts}"


def _label_lines(labels: dict[str, Any]) -> list[str]:
    binary, scores = labels["binary"], labels["continuous"]
    lines = []
    if binary["positive"] or binary["negative"]:
        lines.append(
            f"  binary labels:   {binary['positive']} positive / {binary['negative']} negative"
        )
    if scores:
        lines.append(
            f"  score labels:    {scores['count']} (min {_number(scores['min'])}, "
            f"mean {_number(scores['mean'])}, max {_number(scores['max'])})"
        )
    lines.append(f"  high quality:    {labels['high_quality']} points")
    return lines


def format_report(stats: dict[str, Any]) -> str:
    """The statistics of `inspect_records` as a few human-readable lines."""
    lines = [
        f"{stats['records']} valid records in {len(stats['files'])} file(s): "
        + ", ".join(stats["files"]),
        f"  formats:         {_counts(stats['formats'])}",
        f"  kinds:           {_counts(stats['kinds'])}",
        f"  distinct prompts: {stats['prompts']}",
        _lengths("prompt chars:", stats["prompt_chars"]),
        _lengths("response chars:", stats["response_chars"]),
    ]
    if "prompt_tokens" in stats:
        lines.append(_lengths("prompt tokens:", stats["prompt_tokens"]))
        lines.append(_lengths("response tokens:", stats["response_tokens"]))
    if stats["labels"]:
        lines.extend(_label_lines(stats["labels"]))
    if stats["multi"]:
        per = stats["multi"]["responses_per_prompt"]
        lines.append(
            f"  multi:           {stats['multi']['records']} records, responses per prompt "
            f"min {per['min']} mean {_number(per['mean'])} max {per['max']}"
        )
    lines.append(f"  duplicates:      {stats['duplicates']} (same prompt and response)")
    if "rejected" in stats:
        dropped = stats["rejected"]
        lines.append(f"  dropped:         {dropped['records']} invalid records (--skip-invalid)")
        lines += [f"    {count:>6}  {reason}" for reason, count in dropped["by_reason"].items()]
    return "\n".join(lines)
