"""Recognise the format of each row, validate every field and build records.

Formats (the key sets a row must contain; extra keys are ignored):

- `hh`: chosen, rejected as Anthropic HH-RLHF transcripts (strings). The prompt is their
  longest common prefix cut back to (and including) its last "\\n\\nAssistant:".
- `trl-pair`: prompt, chosen, rejected (strings, or chat messages), or TRL's implicit-prompt
  form: only chosen, rejected as full conversations sharing their leading messages.
- `point`: prompt, completion, label (bool or 0/1 -> binary, other number -> score) and an
  optional high_quality bool.
- `demonstration`: prompt, completion, or messages (a chat ending in an assistant answer).
- `multi`: prompt, responses (k >= 2 strings), scores (k numbers).

Two formats are only read when named (`--data-format`), never detected:

- `shp`: Stanford Human Preferences comparisons, one row per pair of comments of a post:
  post_id, history, human_ref_A, human_ref_B, score_A, score_B (optional labels,
  c_root_id_A, c_root_id_B). `load_records` groups the rows of a post into one `multi`
  record (`ShpPosts`): prompt = history, responses = its distinct comments, scores = their
  vote scores.
- `ratings`: prompt, response, rating (a number) -> a `point` with a real-valued label
  (never binary), optional high_quality.

A prompt is a string or a tuple of messages `{"role", "content"}`; a response given as chat
messages must be exactly one assistant message, whose content becomes the response text.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Literal

from alignkit.data.prompts import prompt_json
from alignkit.data.records import (
    Message,
    Multi,
    Pair,
    Point,
    Prompt,
    Record,
    pair_to_points,
)
from alignkit.errors import AlignkitError, DataError

FORMATS = ("hh", "trl-pair", "point", "demonstration", "multi", "shp", "ratings")
# `--data-format`: a format name of FORMATS, or auto (detected per record)
DataFormat = Literal["auto", "hh", "trl-pair", "point", "demonstration", "multi", "shp", "ratings"]
assert DataFormat.__args__ == ("auto", *FORMATS)  # type: ignore[attr-defined]
KINDS = ("pair", "point", "multi")
ROLES = ("system", "user", "assistant")
HH_ASSISTANT = "\n\nAssistant:"

# Key sets each format accepts, in detection order (the first one a row contains wins).
_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("multi", ("prompt", "responses", "scores")),
    ("trl-pair", ("prompt", "chosen", "rejected")),
    ("hh", ("chosen", "rejected")),  # or trl-pair with an implicit prompt (message lists)
    ("point", ("prompt", "completion", "label")),
    ("demonstration", ("prompt", "completion")),
    ("demonstration", ("messages",)),
)
# Formats read only when named, never detected: their key sets.
SHP_FIELDS = ("post_id", "history", "human_ref_A", "human_ref_B", "score_A", "score_B")
RATINGS_FIELDS = ("prompt", "response", "rating")
_NAMED_ONLY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shp", SHP_FIELDS),
    ("ratings", RATINGS_FIELDS),
)
RECOGNISED = (
    "hh {chosen, rejected} (transcripts); "
    "trl-pair {prompt, chosen, rejected} or {chosen, rejected} (message lists); "
    "point {prompt, completion, label}; "
    "demonstration {prompt, completion} or {messages}; "
    "multi {prompt, responses, scores}"
)
_BOOL_LIKE = {"true", "false", "yes", "no", "0", "1", "t", "f", "y", "n"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


# ---------------------------------------------------------------- detection


def detect_format(row: Any, where: str = "row") -> str:
    """The name of the format `row` is in (one of `FORMATS`), from its keys.

    Raises `DataError` when the row is not an object or matches no format (naming the
    missing field when the row looks like one format, else listing the recognised key sets).
    """
    _require_object(row, where)
    for name, keys in _SIGNATURES:
        if all(key in row for key in keys):
            if name == "hh" and isinstance(row["chosen"], list):
                return "trl-pair"  # implicit prompt: full conversations
            return name
    raise _unknown_format(row, where)


def _require_object(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise DataError(
            where,
            f"record is a JSON {_type_name(row)}, not an object",
            'write one object per record, e.g. {"prompt": ..., "chosen": ..., "rejected": ...}',
        )


def _unknown_format(row: dict, where: str) -> DataError:
    """Name the missing fields of the format the row resembles most, if any."""
    best: tuple[int, int, tuple[str, ...], str] | None = None
    for name, keys in _SIGNATURES:
        overlap = [key for key in keys if key in row and key != "prompt"]
        missing = [key for key in keys if key not in row]
        if overlap and (best is None or (len(overlap), -len(missing)) > best[:2]):
            best = (len(overlap), -len(missing), keys, name)
    for name, keys in _NAMED_ONLY:
        if all(key in row for key in keys):
            return DataError(
                where,
                f"unknown format; the fields {', '.join(keys)} are those of format '{name}', "
                "which is read only when named",
                f"choose format '{name}' (--data-format {name}; `alignkit data inspect "
                f"--format {name}`)",
            )
    if best is None:
        fields = ", ".join(sorted(map(str, row))) or "none"
        return DataError(where, f"unknown format (fields: {fields})", f"recognised: {RECOGNISED}")
    return _missing(where, best[2], best[3], row)


def _missing(where: str, keys: tuple[str, ...], fmt: str, row: dict) -> DataError:
    names = ", ".join(f"'{key}'" for key in keys if key not in row)
    return DataError(
        where,
        f"missing field {names} (the record looks like format '{fmt}')",
        f"format '{fmt}' needs the fields {', '.join(keys)}",
    )


def _check_explicit(row: Any, fmt: str, where: str) -> str:
    """Check a row has the fields of the format the user named."""
    _require_object(row, where)
    options = [keys for name, keys in (*_SIGNATURES, *_NAMED_ONLY) if name == fmt]
    if fmt == "trl-pair":
        options.append(("chosen", "rejected"))
    if any(all(key in row for key in keys) for keys in options):
        return fmt
    raise _missing(where, options[0], fmt, row)


# ---------------------------------------------------------------- fields


def _text(value: Any, field: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(
            where, f"field '{field}' must be a string, got {_type_name(value)}", "quote the text"
        )
    bad = _SURROGATE.search(value)
    if bad:
        # JSON allows "\ud83d" alone; such a string cannot be encoded (tokenizers, files)
        raise DataError(
            where,
            f"field '{field}' contains an unpaired UTF-16 surrogate "
            f"(\\u{ord(bad.group()):04x} at character {bad.start()})",
            "the text was cut inside an emoji or another character outside the BMP; "
            "repair or remove the record",
        )
    return value


def _nonempty(text: str, field: str, where: str, what: str = "field '{}'") -> str:
    if not text.strip():
        raise DataError(
            where,
            f"{what.format(field)} is empty (whitespace only)",
            "give a real response or remove the record",
        )
    return text


def _messages(value: Any, field: str, where: str) -> tuple[Message, ...]:
    """Validate a chat: a list of {"role", "content"} objects (other keys are dropped)."""
    if not isinstance(value, list | tuple):
        raise DataError(
            where,
            f"field '{field}' must be a list of messages, got {_type_name(value)}",
            'write [{"role": "user", "content": "..."}, ...]',
        )
    return tuple(_message(item, f"{field}[{i}]", where) for i, item in enumerate(value))


def _message(item: Any, field: str, where: str) -> Message:
    hint = 'a message is {"role": "system"|"user"|"assistant", "content": "text"}'
    if not isinstance(item, dict) or "role" not in item or "content" not in item:
        raise DataError(where, f"message {field} needs 'role' and 'content'", hint)
    if item["role"] not in ROLES:
        raise DataError(
            where, f"message {field} has role {item['role']!r}, not one of {', '.join(ROLES)}", hint
        )
    return {"role": item["role"], "content": _text(item["content"], f"{field}.content", where)}


def parse_prompt(value: Any, where: str) -> Prompt:
    """A prompt field: a string, or a non-empty list of `{role, content}` messages (roles
    system/user/assistant, text contents; other keys dropped) as a tuple. `DataError` at
    `where` (e.g. "path:line") otherwise. The one prompt parser of every reader (data
    records, query files, generations, labelling files)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        messages = _messages(value, "prompt", where)
        if not messages:
            raise DataError(where, "field 'prompt' has no messages", "give at least one message")
        return messages
    raise DataError(
        where,
        f"field 'prompt' must be a string or a list of messages, got {_type_name(value)}",
        "quote the text or write a list of chat messages",
    )


def _response(value: Any, field: str, where: str) -> str:
    """A response: a string, or a list of exactly one assistant message."""
    if isinstance(value, list | tuple):
        messages = _messages(value, field, where)
        if len(messages) != 1:
            raise DataError(
                where,
                f"field '{field}' has {len(messages)} messages; next to a 'prompt' it must be "
                "only the assistant answer",
                "move earlier turns into 'prompt', or drop 'prompt' and give full "
                "conversations in chosen/rejected (TRL's implicit-prompt form)",
            )
        return _answer(messages, field, where)
    return _nonempty(_text(value, field, where), field, where)


def _answer(messages: tuple[Message, ...], field: str, where: str) -> str:
    """The content of the last message, which must be a non-empty assistant message."""
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(
            where,
            f"field '{field}' must end with an assistant message",
            "the last message is the response to learn from",
        )
    return _nonempty(messages[-1]["content"], field, where)


def _number(value: Any, field: str, where: str) -> float:
    if isinstance(value, str) and value.strip().lower() in _BOOL_LIKE:
        raise DataError(
            where,
            f"field '{field}' is the string {value!r}; bool-like strings are not accepted",
            "write true/false or 1/0 without quotes",
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DataError(
            where,
            f"field '{field}' must be a number, got {_type_name(value)} {value!r}",
            "write a JSON number without quotes",
        )
    if not math.isfinite(value):
        raise DataError(
            where, f"field '{field}' is {value}", "scores must be finite numbers (no NaN/inf)"
        )
    return float(value)


def _label(value: Any, where: str) -> tuple[float, bool]:
    """(label, binary): bool or integer 0/1 -> binary, any other finite number -> score."""
    if isinstance(value, bool):
        return float(value), True
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return float(value), True
    return _number(value, "label", where), False


def _optional_bool(row: dict, field: str, default: bool, where: str) -> bool:
    value = row.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise DataError(
            where,
            f"field '{field}' must be true or false, got {_type_name(value)} {value!r}",
            "write true/false without quotes, or leave the field out",
        )
    return value


# ---------------------------------------------------------------- parsers


def _pair(prompt: Prompt, chosen: str, rejected: str, where: str, what: str = "field '{}'") -> Pair:
    _nonempty(chosen, "chosen", where, what)
    _nonempty(rejected, "rejected", where, what)
    if chosen == rejected:
        raise _identical(where)
    return Pair(prompt, chosen, rejected, where)


def _identical(where: str) -> DataError:
    return DataError(
        where,
        "chosen and rejected responses are identical",
        "a preference pair needs two different responses; remove the record",
    )


def _parse_hh(row: dict, where: str) -> Pair:
    chosen = _text(row["chosen"], "chosen", where)
    rejected = _text(row["rejected"], "rejected", where)
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(HH_ASSISTANT)
    if cut < 0:
        raise DataError(
            where,
            "chosen and rejected transcripts do not share a prompt ending in '\\n\\nAssistant:'",
            "both transcripts must start with the same '\\n\\nHuman: ...\\n\\nAssistant:' turns",
        )
    end = cut + len(HH_ASSISTANT)
    # real HH-RLHF files hold pairs whose last "Assistant:" turn is empty in one transcript
    return _pair(chosen[:end], chosen[end:], rejected[end:], where, "the final answer of '{}'")


def _parse_trl_pair(row: dict, where: str) -> Pair:
    if "prompt" not in row:
        return _parse_implicit_pair(row, where)
    prompt = parse_prompt(row["prompt"], where)
    chosen = _response(row["chosen"], "chosen", where)
    return _pair(prompt, chosen, _response(row["rejected"], "rejected", where), where)


def _parse_implicit_pair(row: dict, where: str) -> Pair:
    """TRL's implicit prompt: the leading messages chosen and rejected share."""
    if not isinstance(row["chosen"], list):
        raise DataError(
            where,
            "without a 'prompt' field, chosen and rejected must be lists of messages",
            "string transcripts are the 'hh' format; or add a 'prompt' field",
        )
    chosen = _messages(row["chosen"], "chosen", where)
    rejected = _messages(row["rejected"], "rejected", where)
    if chosen == rejected:
        raise _identical(where)
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise DataError(
            where,
            "chosen and rejected conversations share no leading messages (the prompt)",
            "both must start with the same prompt messages",
        )
    chosen_answer = _implicit_answer(chosen[shared:], "chosen", where)
    rejected_answer = _implicit_answer(rejected[shared:], "rejected", where)
    return _pair(chosen[:shared], chosen_answer, rejected_answer, where)


def _implicit_answer(rest: tuple[Message, ...], field: str, where: str) -> str:
    if len(rest) != 1:
        raise DataError(
            where,
            f"field '{field}' continues with {len(rest)} messages after the shared prompt; "
            "expected exactly one assistant answer",
            "give chosen and rejected conversations that differ only in the last message",
        )
    return _answer(rest, field, where)


def _parse_point(row: dict, where: str) -> Point:
    prompt = parse_prompt(row["prompt"], where)
    completion = _response(row["completion"], "completion", where)
    label, binary = _label(row["label"], where)
    high_quality = _optional_bool(row, "high_quality", binary and label == 1.0, where)
    return Point(prompt, completion, label, binary, high_quality, where)


def _parse_demonstration(row: dict, where: str) -> Point:
    if "prompt" in row and "completion" in row:
        prompt = parse_prompt(row["prompt"], where)
        completion = _response(row["completion"], "completion", where)
    else:
        messages = _messages(row["messages"], "messages", where)
        completion = _answer(messages, "messages", where)
        prompt = messages[:-1]
        if not prompt:
            raise DataError(
                where, "field 'messages' has no prompt before the answer", "add the user turn"
            )
    return Point(prompt, completion, 1.0, True, True, where)


def _parse_multi(row: dict, where: str) -> Multi:
    prompt = parse_prompt(row["prompt"], where)
    responses, scores = row["responses"], row["scores"]
    for field, value in (("responses", responses), ("scores", scores)):
        if not isinstance(value, list | tuple):
            raise DataError(where, f"field '{field}' must be a list, got {_type_name(value)}")
    if len(responses) < 2 or len(responses) != len(scores):
        raise DataError(
            where,
            f"{len(responses)} responses and {len(scores)} scores",
            "give k >= 2 responses and exactly one score per response",
        )
    texts = tuple(
        _nonempty(_text(text, f"responses[{i}]", where), f"responses[{i}]", where)
        for i, text in enumerate(responses)
    )
    values = tuple(_number(score, f"scores[{i}]", where) for i, score in enumerate(scores))
    return Multi(prompt, texts, values, where)


def _parse_ratings(row: dict, where: str) -> Point:
    """A rated response: a point whose label is the rating (a real score, never binary)."""
    prompt = parse_prompt(row["prompt"], where)
    response = _response(row["response"], "response", where)
    rating = _number(row["rating"], "rating", where)
    high_quality = _optional_bool(row, "high_quality", False, where)
    return Point(prompt, response, rating, False, high_quality, where)


# ---------------------------------------------------------------- SHP


@dataclass(frozen=True)
class ShpComparison:
    """One SHP row: two comments of the post `post_id`, each `(key, text, score)`; the key
    is the comment id (c_root_id_A/B) when the row has one, else the text."""

    post_id: str | int
    history: Prompt
    comments: tuple[tuple[Any, str, float], ...]
    where: str


def shp_comparison(row: Any, where: str) -> ShpComparison:
    """Validate one SHP row (`SHP_FIELDS`, optional labels and c_root_id_A/B).

    Refuses two identical comments and a `labels` value (1: A preferred, 0: B preferred)
    that prefers the comment with fewer votes: SHP's preferred comment is the higher-scored
    one, and the multi record keeps the scores, not the labels.
    """
    _check_explicit(row, "shp", where)
    post_id = row["post_id"]
    if isinstance(post_id, bool) or not isinstance(post_id, str | numbers.Integral):
        raise DataError(
            where,
            f"field 'post_id' must be a string or an integer, got {_type_name(post_id)}",
            "it names the post, whose rows become one record",
        )
    if isinstance(post_id, str) and not post_id.strip():
        raise DataError(where, "field 'post_id' is empty", "give the id of the post")
    history = parse_prompt(row["history"], where)
    comments = []
    for side in "AB":
        text = _response(row[f"human_ref_{side}"], f"human_ref_{side}", where)
        score = _number(row[f"score_{side}"], f"score_{side}", where)
        comment_id = row.get(f"c_root_id_{side}")
        key = ("id", comment_id) if isinstance(comment_id, str) and comment_id else ("text", text)
        comments.append((key, text, score))
    if comments[0][0] == comments[1][0]:
        raise DataError(
            where,
            "human_ref_A and human_ref_B are the same comment",
            "a comparison needs two different comments; remove the record",
        )
    _check_shp_label(row.get("labels"), comments[0][2], comments[1][2], where)
    return ShpComparison(
        int(post_id) if isinstance(post_id, numbers.Integral) else post_id,
        history,
        tuple(comments),
        where,
    )


def _check_shp_label(labels: Any, score_a: float, score_b: float, where: str) -> None:
    if labels is None:
        return
    if isinstance(labels, bool) or not isinstance(labels, numbers.Real) or labels not in (0, 1):
        raise DataError(
            where,
            f"field 'labels' must be 1 (A preferred) or 0 (B preferred), got "
            f"{_type_name(labels)} {labels!r}",
            "write 1 or 0, or leave the field out",
        )
    side, lower = ("A", score_a < score_b) if labels == 1 else ("B", score_b < score_a)
    if lower:
        raise DataError(
            where,
            f"'labels' prefers comment {side}, which has fewer votes "
            f"(score_A {score_a:g}, score_B {score_b:g})",
            "in SHP the preferred comment is the higher-scored one; fix the labels or the "
            "scores, or remove the record",
        )


@dataclass
class _ShpPost:
    history: Prompt
    where: str
    index: dict[Any, int] = _field(default_factory=dict)  # comment key -> position
    texts: list[str] = _field(default_factory=list)
    scores: list[float] = _field(default_factory=list)
    sources: list[str] = _field(default_factory=list)  # where each comment first appeared


class ShpPosts:
    """Groups SHP comparisons by post into `multi` records: prompt = the history,
    responses = the post's distinct comments (in order of first mention), scores = their
    vote scores; posts in order of their first row, `source` = the where of that row."""

    def __init__(self) -> None:
        self._posts: dict[Any, _ShpPost] = {}

    def add(self, comparison: ShpComparison) -> None:
        """Add a row's two comments to its post. Raises `DataError` (at the row, the post
        unchanged) when the row contradicts earlier rows of the post: another history, or a
        comment with another text or score."""
        where = comparison.where
        post = self._posts.get(comparison.post_id)
        if post is None:
            post = _ShpPost(comparison.history, where)
        elif post.history != comparison.history:
            raise DataError(
                where,
                f"post {comparison.post_id!r} has another 'history' than at {post.where}",
                "the rows of one post must give the same post text",
            )
        for side, (key, text, score) in zip("AB", comparison.comments, strict=True):
            position = post.index.get(key)
            if position is None:
                continue
            first = post.sources[position]
            name = f"{key[1]!r}" if key[0] == "id" else f"human_ref_{side}"
            if post.texts[position] != text:
                raise DataError(
                    where,
                    f"comment {name} of post {comparison.post_id!r} has another text than "
                    f"at {first}",
                    "a comment id must name one text",
                )
            if post.scores[position] != score:
                raise DataError(
                    where,
                    f"comment {name} of post {comparison.post_id!r} has score_{side} "
                    f"{score:g} here but {post.scores[position]:g} at {first}",
                    "each comment must have one vote score in all rows of its post",
                )
        for key, text, score in comparison.comments:
            if key not in post.index:
                post.index[key] = len(post.texts)
                post.texts.append(text)
                post.scores.append(score)
                post.sources.append(where)
        self._posts.setdefault(comparison.post_id, post)

    def __len__(self) -> int:
        return len(self._posts)

    def records(self) -> list[Multi]:
        return [
            Multi(post.history, tuple(post.texts), tuple(post.scores), post.where)
            for post in self._posts.values()
        ]


def _parse_shp(row: dict, where: str) -> Multi:
    """One SHP row alone: a multi record of its two comments (`load_records` groups the
    rows of a post instead)."""
    posts = ShpPosts()
    posts.add(shp_comparison(row, where))
    return posts.records()[0]


_PARSERS: dict[str, Callable[[dict, str], Record]] = {
    "hh": _parse_hh,
    "trl-pair": _parse_trl_pair,
    "point": _parse_point,
    "demonstration": _parse_demonstration,
    "multi": _parse_multi,
    "shp": _parse_shp,
    "ratings": _parse_ratings,
}


def check_format_name(fmt: str) -> None:
    """Raise `AlignkitError` unless `fmt` is "auto" or one of `FORMATS`."""
    if fmt != "auto" and fmt not in FORMATS:
        raise AlignkitError(f"unknown data format {fmt!r}; choose auto, {', '.join(FORMATS)}")


def parse_named(row: Any, where: str, fmt: str) -> tuple[str, Record]:
    """`parse_row` that also returns the name of the format the row was read as."""
    name = detect_format(row, where) if fmt == "auto" else _check_explicit(row, fmt, where)
    return name, _PARSERS[name](row, where)


def parse_row(row: dict, where: str, fmt: str = "auto") -> Record:
    """Validate one row and build its record (`source` = `where`).

    `fmt` is "auto" (detect from the keys) or one of `FORMATS`. Raises `DataError` naming
    `where`. `alignkit.data.loading.load_records` also makes the labels of a file consistent
    (integer 0/1 labels next to other scores are scores) before `check_binary_label`; a row
    parsed alone is its own file.
    """
    check_format_name(fmt)
    record = parse_named(row, where, fmt)[1]
    if isinstance(record, Point):
        check_binary_label(record)
    return record


def check_binary_label(point: Point) -> None:
    """Refuse a binary point whose `high_quality` contradicts its label.

    For binary data the label z decides positive (1) vs negative (0) in every point-wise
    method; `high_quality` belongs to real-valued scores. A record such as
    `{"label": 1, "high_quality": false}` is ambiguous, so it is an error (`DataError` at
    the point's source) rather than a silently flipped gradient.
    """
    if point.binary and point.high_quality != (point.label == 1.0):
        label = int(point.label)
        raise DataError(
            point.source,
            f"binary label {label} contradicts 'high_quality': {str(point.high_quality).lower()};"
            " for binary labels the label decides positive (1) or negative (0)",
            "remove 'high_quality', which marks the high-quality samples among real-valued "
            "scores, or fix the label",
        )


def kind_of(record: Record) -> str:
    """The kind of a record: "pair", "point" or "multi"."""
    if isinstance(record, Pair):
        return "pair"
    return "point" if isinstance(record, Point) else "multi"


# ---------------------------------------------------------------- conversion

_NEEDS = {
    "pair": "preference pairs (prompt, chosen, rejected)",
    "point": "point-wise examples (prompt, completion, label) or pairs",
    "multi": "ranked responses (prompt, responses, scores) or pairs",
}


def as_kind(records: Sequence[Record], kind: str) -> list[Record]:
    """Convert records to the shape a method trains on.

    "point": a pair becomes two points (chosen 1, rejected 0), points stay.
    "pair": only pairs are accepted. "multi": a pair becomes Multi((chosen, rejected),
    (1.0, 0.0)), multi records stay. Anything else raises `AlignkitError` naming the records.
    """
    if kind not in KINDS:
        raise AlignkitError(f"unknown record kind {kind!r}; choose {', '.join(KINDS)}")
    accepted = {"pair": ("pair",), "point": ("pair", "point"), "multi": ("pair", "multi")}[kind]
    bad = [record for record in records if kind_of(record) not in accepted]
    if bad:
        raise _wrong_kind(len(records), bad, kind)
    converted: list[Record] = []
    for record in records:
        converted.extend(_convert(record, kind))
    return converted


def _convert(record: Record, kind: str) -> tuple[Record, ...]:
    if not isinstance(record, Pair) or kind == "pair":
        return (record,)
    if kind == "point":
        return pair_to_points(record)
    pair = record
    return (Multi(pair.prompt, (pair.chosen, pair.rejected), (1.0, 0.0), pair.source),)


def record_row(
    record: Record, *, source: bool = True, binary_high_quality: bool = False
) -> dict[str, Any]:
    """A record as a row of the format of its kind (`trl-pair`, `point` or `multi`) that
    `parse_row` reads back as the same record, plus its `source` (an extra field, ignored
    when read; `source=False`: left out, as in the rows `alignkit select` writes). A binary
    label is written as true/false, a score as a number with its `high_quality`, so that
    reading the file back keeps binary and real-valued labels apart; `binary_high_quality`:
    a binary label's `high_quality` (always `label == 1`) is written too."""
    if not isinstance(record, (Pair, Point, Multi)):
        raise TypeError(f"not a record: {record!r}")
    row: dict[str, Any] = {"prompt": prompt_json(record.prompt)}
    if isinstance(record, Pair):
        row.update(chosen=record.chosen, rejected=record.rejected)
    elif isinstance(record, Point):
        row.update(completion=record.completion)
        if record.binary:
            row["label"] = record.label == 1.0
            if binary_high_quality:
                row["high_quality"] = record.high_quality
        else:
            row.update(label=record.label, high_quality=record.high_quality)
    else:
        row.update(responses=list(record.responses), scores=list(record.scores))
    if source and record.source:
        row["source"] = record.source
    return row


def _wrong_kind(total: int, bad: list[Record], kind: str) -> AlignkitError:
    listed = "; ".join(f"{record.source or '?'} is a {kind_of(record)}" for record in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    hint = {
        "pair": "give pair data (hh or trl-pair), or use a point-wise method such as ULMA",
        "point": "multi-response scores are only comparable within a prompt; use a method "
        "for ranked responses or convert them to pairs",
        "multi": "point-wise data has no second response to rank against; give pairs or "
        "multi-response data",
    }[kind]
    return AlignkitError(
        f"this method needs {_NEEDS[kind]}, but {len(bad)} of {total} records are not: "
        f"{listed}{more}. Hint: {hint}"
    )
