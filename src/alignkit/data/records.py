"""The record types every data format is parsed into.

A prompt is either plain text (already formatted, e.g. an HH-RLHF transcript ending in
"\\n\\nAssistant:") or a list of chat messages `{"role", "content"}` that is rendered with the
tokenizer's chat template at tokenization time. Responses are always plain text (for chat
data: the assistant message's content).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    rescaling). A demonstration is a binary point with label 1. `high_quality` marks the
    samples that get the SFT term in continuous ULMA (default: binary label == 1).
    `unfinished` marks a generated completion cut off at the generation limit: it is
    tokenized without EOS, so training on it does not teach stopping mid-sentence.
    """

    prompt: Prompt
    completion: str
    label: float
    binary: bool = True
    high_quality: bool = False
    source: str = ""
    unfinished: bool = False


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


@dataclass
class LoadSummary:
    """What loading a set of files found (printed by `alignkit data inspect`)."""

    files: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # format name -> records
    kinds: dict[str, int] = field(default_factory=dict)  # "pair"/"point"/"multi" -> records


def pair_to_points(pair: Pair) -> tuple[Point, Point]:
    """A pair is two points: chosen with label 1, rejected with label 0."""
    return (
        Point(pair.prompt, pair.chosen, 1.0, True, True, pair.source),
        Point(pair.prompt, pair.rejected, 0.0, True, False, pair.source),
    )
