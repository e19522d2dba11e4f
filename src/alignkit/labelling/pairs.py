"""The files of the labelling loop: pools, pairs to label, verdicts, and their ids.

- pool (`alignkit generate` writes it): one line per prompt
  `{"prompt", "responses": [...], "finished": [...], "prompt_id", "model"}`;
- pairs to label (`alignkit label select` writes them): one line per pair
  `{"pair_id", "prompt", "a", "b", "score", "strategy"}`;
- verdicts (`alignkit label serve` / `label auto` append them): one line per verdict
  `{"pair_id", "verdict": "a"|"b"|"tie"|"skip", "annotator", "shown_left", "time", "prompt",
  "a", "b"}`, or an undo line `{"pair_id", "undo": true, "annotator", "time"}`.

A pair id is the first 16 hex digits of the sha256 of `[prompt, a, b]` as JSON (the prompt in
its JSON form: the text, or the list of `{role, content}` messages), so it changes when any of
the three texts changes: a label can always be checked against the texts it was given for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.formats import parse_prompt
from alignkit.data.prompts import prompt_json
from alignkit.data.records import Prompt
from alignkit.errors import AlignkitError, DataError
from alignkit.io import atomic_write_jsonl, iter_jsonl

VERDICTS = ("a", "b", "tie", "skip")
POOL_FIELDS = '{"prompt": text or chat messages, "responses": [text, ...]}'
PAIR_FIELDS = '{"pair_id", "prompt", "a", "b", "score", "strategy"}'


# ------------------------------------------------------------------ ids


def _hash16(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def pair_id(prompt: Prompt | list[dict[str, str]], a: str, b: str) -> str:
    """The id of the pair (prompt, a, b): 16 hex digits of
    sha256(json.dumps([prompt JSON form, a, b], ensure_ascii=False, sort_keys=True)).
    Order-sensitive: (prompt, b, a) has another id."""
    return _hash16([prompt_json(prompt), a, b])


def shown_left(seed: int, pair_id: str) -> str:
    """Which answer ("a" or "b") a labelling page (`label serve`, a Label Studio export) shows on the left: a fair coin drawn from
    sha256 of the seed and pair id, so every reload and restart shows the same order."""
    digest = hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()
    return "a" if digest[0] % 2 == 0 else "b"


def prompt_id(prompt: Prompt | list[dict[str, str]]) -> str:
    """The id of a prompt alone: 16 hex digits of sha256 of its JSON form (as `pair_id`)."""
    return _hash16(prompt_json(prompt))


def _string(row: dict, field: str, where: str, hint: str) -> str:
    value = row.get(field)
    if not isinstance(value, str):
        got = "missing" if field not in row else f"a {type(value).__name__}"
        raise DataError(where, f"field '{field}' must be a string, {got}", hint)
    return value


def _object(value: Any, where: str, expected: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(where, f"expected a JSON object {expected}")
    return value


# ------------------------------------------------------------------ pools


@dataclass(frozen=True)
class PoolEntry:
    """One prompt of a pool with its K generated responses (`finished[i]`: response i ended
    by itself, not cut at the generation limit). `source` is "path:line"."""

    prompt: Prompt
    responses: tuple[str, ...]
    finished: tuple[bool, ...]
    model: str
    source: str


def read_pool(path: str | Path) -> list[PoolEntry]:
    """The entries of a pool file (`alignkit generate`'s output), in file order.

    Raises `DataError("path:line", ...)` on a line that is not `POOL_FIELDS`, and
    `AlignkitError` when the file is empty or unreadable."""
    entries = []
    for number, row in iter_jsonl(path):
        where = f"{path}:{number}"
        row = _object(row, where, POOL_FIELDS)
        responses = row.get("responses")
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise DataError(
                where,
                "field 'responses' must be a list of strings",
                f"a pool line is {POOL_FIELDS}",
            )
        finished = row.get("finished", [True] * len(responses))
        if (
            not isinstance(finished, list)
            or len(finished) != len(responses)
            or not all(isinstance(f, bool) for f in finished)
        ):
            raise DataError(
                where,
                "field 'finished' must be a list of true/false, one per response",
                "remove it or give one flag per response",
            )
        model = row.get("model", "")
        entries.append(
            PoolEntry(
                parse_prompt(row.get("prompt"), where),
                tuple(responses),
                tuple(finished),
                model if isinstance(model, str) else str(model),
                where,
            )
        )
    if not entries:
        raise AlignkitError(f"pool file {path} has no prompts; write it with `alignkit generate`")
    return entries


# ------------------------------------------------------------------ pairs to label


@dataclass(frozen=True)
class LabelPair:
    """A pair to label: two answers `a`, `b` to `prompt` (unordered: neither is preferred),
    the selection `score` that chose it (None when not scored) and the `strategy` name."""

    pair_id: str
    prompt: Prompt
    a: str
    b: str
    score: float | None
    strategy: str
    source: str = ""

    @classmethod
    def make(cls, prompt: Prompt, a: str, b: str, score: float | None, strategy: str) -> LabelPair:
        """A pair with its id computed from the texts."""
        return cls(pair_id(prompt, a, b), prompt, a, b, score, strategy)

    def to_json(self) -> dict[str, Any]:
        """The pair as a line of the pairs file."""
        return {
            "pair_id": self.pair_id,
            "prompt": prompt_json(self.prompt),
            "a": self.a,
            "b": self.b,
            "score": self.score,
            "strategy": self.strategy,
        }


def pair_from_row(row: Any, where: str, *, check_id: bool = True) -> LabelPair:
    """A `LabelPair` from a pairs-file row; with `check_id`, a row whose `pair_id` is not the
    id of its texts is refused (`DataError` at `where`)."""
    row = _object(row, where, PAIR_FIELDS)
    prompt = parse_prompt(row.get("prompt"), where)
    hint = f"a pair line is {PAIR_FIELDS}"
    a, b = _string(row, "a", where, hint), _string(row, "b", where, hint)
    given = _string(row, "pair_id", where, hint)
    if check_id and given != pair_id(prompt, a, b):
        raise DataError(
            where,
            f"pair_id {given} does not match its prompt and answers (their id is "
            f"{pair_id(prompt, a, b)}): the texts were changed after the pair was chosen",
            "restore the texts, or choose the pairs again with `alignkit label select`",
        )
    score = row.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise DataError(where, "field 'score' must be a number or null")
    strategy = row.get("strategy", "")
    return LabelPair(
        given, prompt, a, b, None if score is None else float(score), str(strategy), where
    )


def read_pairs(path: str | Path) -> list[LabelPair]:
    """The pairs of a pairs file (`alignkit label select`'s output), ids checked against
    the texts; `DataError("path:line")` on a bad or tampered line, or a repeated pair id."""
    pairs: list[LabelPair] = []
    seen: dict[str, str] = {}
    for number, row in iter_jsonl(path):
        pair = pair_from_row(row, f"{path}:{number}")
        if pair.pair_id in seen:
            raise DataError(
                pair.source,
                f"pair {pair.pair_id} is already at {seen[pair.pair_id]}",
                "keep one line per pair",
            )
        seen[pair.pair_id] = pair.source
        pairs.append(pair)
    if not pairs:
        raise AlignkitError(
            f"pairs file {path} has no pairs; write it with `alignkit label select`"
        )
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[LabelPair]) -> None:
    """Write a pairs file atomically."""
    atomic_write_jsonl(path, (pair.to_json() for pair in pairs))


# ------------------------------------------------------------------ verdicts


@dataclass(frozen=True)
class Verdict:
    """One label of a pair by one annotator: `verdict` is "a", "b", "tie" or "skip";
    `shown_left` which answer was shown on the left ("a"/"b", None when unknown); `prompt`,
    `a`, `b` the texts labelled (None when the line does not carry them); `source` "path:line".
    """

    pair_id: str
    verdict: str
    annotator: str
    shown_left: str | None = None
    time: str | None = None
    prompt: Prompt | None = None
    a: str | None = None
    b: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        """The verdict as a line of a verdicts file."""
        row: dict[str, Any] = {
            "pair_id": self.pair_id,
            "verdict": self.verdict,
            "annotator": self.annotator,
            "shown_left": self.shown_left,
            "time": self.time,
        }
        if self.prompt is not None:
            row["prompt"] = prompt_json(self.prompt)
        if self.a is not None and self.b is not None:
            row.update(a=self.a, b=self.b)
        return row


def verdict_from_row(row: Any, where: str) -> Verdict | None:
    """A `Verdict` from a verdicts-file row (or a line of an exported jsonl with its
    "verdict" filled in); None for a row whose verdict is still empty ("" or null).
    Unknown verdict values are a `DataError` at `where`."""
    row = _object(row, where, '{"pair_id", "verdict", ...}')
    hint = 'a verdict line is {"pair_id", "verdict": "a"|"b"|"tie"|"skip", "annotator", ...}'
    pid = _string(row, "pair_id", where, hint)
    value = row.get("verdict")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value.strip().lower() not in VERDICTS:
        raise DataError(where, f"unknown verdict {value!r}", f"write one of {', '.join(VERDICTS)}")
    has_texts = all(key in row for key in ("prompt", "a", "b"))
    shown = row.get("shown_left")
    return Verdict(
        pair_id=pid,
        verdict=value.strip().lower(),
        annotator=str(row.get("annotator") or ""),
        shown_left=shown if shown in ("a", "b") else None,
        time=row.get("time") if isinstance(row.get("time"), str) else None,
        prompt=parse_prompt(row["prompt"], where) if has_texts else None,
        a=_string(row, "a", where, hint) if has_texts else None,
        b=_string(row, "b", where, hint) if has_texts else None,
        source=where,
    )


def read_verdict_lines(path: str | Path) -> tuple[list[Verdict], int]:
    """(the verdicts in force, the number of lines without a verdict yet).

    Undo lines (`"undo": true`) cancel the annotator's latest verdict in force on that pair
    (the one before it then holds again; an undo with nothing to cancel does nothing). The
    last verdict in force per (pair_id, annotator) wins. A last line without its newline (a
    writer killed mid-line) is ignored. Results are in the file order of the winning lines."""
    stacks: dict[tuple[str, str], list[Verdict]] = {}
    unlabelled = 0
    for number, row in iter_jsonl(path, allow_partial_last=True):
        where = f"{path}:{number}"
        if isinstance(row, dict) and row.get("undo") is True:
            pid = _string(row, "pair_id", where, 'an undo line is {"pair_id", "undo": true, ...}')
            stack = stacks.get((pid, str(row.get("annotator") or "")), [])
            if stack:
                stack.pop()
            continue
        verdict = verdict_from_row(row, where)
        if verdict is None:
            unlabelled += 1
            continue
        stacks.setdefault((verdict.pair_id, verdict.annotator), []).append(verdict)
    in_force = [stack[-1] for stack in stacks.values() if stack]
    return sorted(in_force, key=_line_number), unlabelled


def _line_number(verdict: Verdict) -> int:
    return int(verdict.source.rsplit(":", 1)[1])


def read_verdicts(path: str | Path) -> list[Verdict]:
    """The verdicts in force in a verdicts file (see `read_verdict_lines`)."""
    return read_verdict_lines(path)[0]
