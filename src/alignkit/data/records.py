"""The record types every data format is parsed into.

A prompt is either plain text (already formatted, e.g. an HH-RLHF transcript ending in
"\\n\\nAssistant:") or a list of chat messages `{"role", "content"}` that is rendered with the
tokenizer's chat template at tokenization time. Responses are always plain text (for chat
data: the assistant message's content).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
Prompt = str | tuple[Message, ...]


@dataclass(frozen=True)
class Pair:
    """A preference pair: `chosen` is preferred to `rejected` for `prompt`."""

    prompt: Prompt
    chosen: str
    rejected: str
    source: str = ""  # "path:line" of the record it came from


@dataclass(frozen=True)
class Point:
    """A point-wise example `(x, y, z)`.

    `label` is 1.0/0.0 when `binary`, else a real score (higher = better after any
    `--label-transform`, `alignkit.data.labels`). A demonstration is a binary point with
    label 1. For a binary label the label decides positive vs negative and `high_quality`
    always equals `label == 1` (a record whose `high_quality` contradicts its binary label is
    refused); for a score, `high_quality` (the record's field, or `--high-quality-if`) marks
    the samples that get the SFT term in continuous ULMA.
    `unfinished` marks a generated completion cut off at the generation limit: it is
    tokenized without EOS, so training on it does not teach stopping mid-sentence.
    """

    prompt: Prompt
    completion: str
    label: float
    binary: bool = True
    # None (not given) becomes `binary and label == 1`: after construction always a bool
    high_quality: bool | None = None
    source: str = ""
    unfinished: bool = False

    def __post_init__(self) -> None:
        if self.high_quality is None:
            object.__setattr__(self, "high_quality", self.binary and self.label == 1.0)


@dataclass(frozen=True)
class Multi:
    """One prompt with k >= 2 scored responses (SHP-style). `unfinished` (empty, or one flag
    per response) marks generated responses cut off at the generation limit (no EOS)."""

    prompt: Prompt
    responses: tuple[str, ...]
    scores: tuple[float, ...]
    source: str = ""
    unfinished: tuple[bool, ...] = ()


Record = Pair | Point | Multi


@dataclass(frozen=True)
class Rejected:
    """An invalid record dropped by `load_records(..., skip_invalid=True)`.

    `where` is its "path:line" (or "path[record N]"), `reason` the kind of problem (the error
    message without record-specific details, used to count), `message` and `hint` those of
    the `DataError`, `row` the record as read (None for a line that is not valid JSON).
    """

    where: str
    reason: str
    message: str
    hint: str = ""
    row: Any = None

    def to_json(self) -> dict[str, Any]:
        """One row of `rejected.jsonl`."""
        error = f"{self.message} ({self.hint})" if self.hint else self.message
        out: dict[str, Any] = {"where": self.where, "reason": self.reason, "error": error}
        if self.row is not None:
            out["record"] = self.row
        return out


@dataclass
class LoadSummary:
    """What loading a set of files found (printed by `alignkit data inspect`).

    `skip_invalid`: the files were loaded with it; `rejected` lists the invalid records it
    dropped (empty otherwise).
    """

    files: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # format name -> records
    kinds: dict[str, int] = field(default_factory=dict)  # "pair"/"point"/"multi" -> records
    skip_invalid: bool = False
    rejected: list[Rejected] = field(default_factory=list)

    def rejected_by_reason(self) -> dict[str, int]:
        """reason -> number of dropped records, most frequent first (ties: first seen)."""
        return rejected_by_reason(self.rejected)


def rejected_by_reason(rejected: Sequence[Rejected]) -> dict[str, int]:
    """reason -> number of `rejected` records, most frequent first (ties: first seen)."""
    counts: dict[str, int] = {}
    for item in rejected:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def pair_to_points(pair: Pair) -> tuple[Point, Point]:
    """A pair is two points: chosen with label 1, rejected with label 0."""
    return (
        Point(pair.prompt, pair.chosen, 1.0, True, True, pair.source),
        Point(pair.prompt, pair.rejected, 0.0, True, False, pair.source),
    )
