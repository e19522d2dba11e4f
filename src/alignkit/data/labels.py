"""Score labels of point-wise data: `--label-transform`, `--high-quality-if` and the run's
label variant (torch-free).

ULMA and point-wise DPO read a real-valued label z as "higher = better" (the MSE term
regresses the implicit reward on z). Datasets often score the other way or on another scale:
the red-team attempts of Ganguli et al. (2022) are rated 0-4 by how successful the attack
was, 0 being the best (failed) attack. `--label-transform "4 - z"` (or "1 - z/4" for the
0/1 scale of binary labels) turns such a rating into a label, and `--high-quality-if "z == 0"`
marks the samples that get ULMA's SFT term (the paper: "those rated 0 are high quality
demonstration data").

Both apply to real-valued scores only (points whose label is not a binary 0/1, see
`alignkit.data.formats`); binary labels, demonstrations and pairs are left as they are. The
rule reads the score **as written in the file** (before the transform), so it can be copied
from the dataset's documentation whatever transform is used. With a rule, it alone decides
`high_quality` of every score-labelled point (a `high_quality` field of such a record is
overridden).

Only affine transforms `a*z + b` (a != 0) are accepted, parsed here without `eval`:
"4 - z", "-z + 4", "2*z + 1", "0.25*z - 1", "z/4", "1 - z/4", "z*0.5". A rule is one
comparison of z with a number: "z == 0", "z >= 3", "z > 0.5", "2 <= z", "z != 4".

The variant (binary or continuous labels) of a run is decided once from its whole training
data (`point_label_variant`), never per batch: when any point is real-valued, the binary
points (demonstrations, pairs turned into points) become scores 0/1 too
(`as_scores`), so that every batch of the run trains the same objective.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from alignkit.data.records import Point, Record
from alignkit.errors import AlignkitError

LabelVariant = Literal["binary", "continuous"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN = re.compile(rf"\s*(?:(?P<number>{_NUMBER})|(?P<z>z)|(?P<op>==|!=|>=|<=|[-+*/<>]))")
_TRANSFORM_EXAMPLES = '"4 - z", "z/4", "1 - z/4", "2*z + 1"'
_RULE_EXAMPLES = '"z == 0", "z >= 3", "z > 0.5"'
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_FLIPPED = {"==": "==", "!=": "!=", ">=": "<=", "<=": ">=", ">": "<", "<": ">"}


def _tokens(text: str, flag: str, examples: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: kind is "number", "z" or "op"; an error on anything else."""
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            bad = text[pos:].strip()[:12]
            raise _syntax(flag, text, f"unexpected {bad!r}", examples)
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _syntax(flag: str, text: str, problem: str, examples: str) -> AlignkitError:
    return AlignkitError(f"cannot read {flag} {text!r}: {problem}; write e.g. {examples}")


def _finite(value: float, flag: str, text: str, examples: str) -> float:
    if not math.isfinite(value):
        raise _syntax(flag, text, f"{value} is not a finite number", examples)
    return value


# ---------------------------------------------------------------- transform


@dataclass(frozen=True)
class LabelTransform:
    """z -> a*z + b (a != 0), parsed from `text` by `parse_label_transform`."""

    a: float
    b: float
    text: str

    def __call__(self, z: float) -> float:
        return self.a * z + self.b


def parse_label_transform(text: str) -> LabelTransform:
    """Parse an affine expression in z (see the module docstring); `AlignkitError` otherwise.

    Grammar: a sum of at most two signed terms, exactly one of them in z:
    `term := NUMBER | [NUMBER "*"] "z" [("*" | "/") NUMBER]`.
    """
    flag, examples = "--label-transform", _TRANSFORM_EXAMPLES
    tokens = _tokens(text, flag, examples)
    if not tokens:
        raise _syntax(flag, text, "the expression is empty", examples)
    a: float | None = None
    b = 0.0
    constants = 0
    i = 0
    while i < len(tokens):
        sign = 1.0
        if tokens[i] in (("op", "+"), ("op", "-")):
            sign = -1.0 if tokens[i][1] == "-" else 1.0
            i += 1
        elif i > 0:
            raise _syntax(flag, text, f"expected + or - before {tokens[i][1]!r}", examples)
        coefficient, value, i = _term(tokens, i, flag, text)
        if coefficient is None:
            constants += 1
            b += sign * value
        elif a is not None:
            raise _syntax(flag, text, "z appears more than once", examples)
        else:
            a = sign * coefficient
    if a is None:
        raise _syntax(flag, text, "the expression has no z", examples)
    if constants > 1:
        raise _syntax(flag, text, "give at most one constant", examples)
    if a == 0:
        raise _syntax(flag, text, "the factor of z is 0 (every label would be equal)", examples)
    return LabelTransform(_finite(a, flag, text, examples), _finite(b, flag, text, examples), text)


def _term(
    tokens: list[tuple[str, str]], i: int, flag: str, text: str
) -> tuple[float | None, float, int]:
    """One term at `tokens[i]`: (factor of z, or None for a constant; the constant; next i)."""
    examples = _TRANSFORM_EXAMPLES
    factor = 1.0
    if i < len(tokens) and tokens[i][0] == "number":
        number = float(tokens[i][1])
        if i + 1 < len(tokens) and tokens[i + 1] == ("op", "*"):
            factor, i = number, i + 2
        else:
            return None, number, i + 1
    if i >= len(tokens) or tokens[i][0] != "z":
        found = repr(tokens[i][1]) if i < len(tokens) else "the end"
        raise _syntax(flag, text, f"expected a number or z, found {found}", examples)
    i += 1
    if i + 1 < len(tokens) and tokens[i] in (("op", "*"), ("op", "/")):
        op, operand = tokens[i][1], tokens[i + 1]
        if operand[0] != "number":
            raise _syntax(flag, text, f"expected a number after {op!r}", examples)
        number = float(operand[1])
        if op == "/" and number == 0:
            raise _syntax(flag, text, "division by 0", examples)
        factor = factor * number if op == "*" else factor / number
        i += 2
    elif i < len(tokens) and tokens[i] in (("op", "*"), ("op", "/")):
        raise _syntax(flag, text, f"expected a number after {tokens[i][1]!r}", examples)
    return factor, 0.0, i


# ---------------------------------------------------------------- rule


@dataclass(frozen=True)
class HighQualityRule:
    """`z OP value`, parsed from `text` by `parse_high_quality_rule`."""

    op: str
    value: float
    text: str

    def __call__(self, z: float) -> bool:
        return _COMPARE[self.op](z, self.value)


def parse_high_quality_rule(text: str) -> HighQualityRule:
    """Parse `z OP NUMBER` or `NUMBER OP z` (OP: == != >= <= > <; a number may have a sign);
    `AlignkitError` otherwise."""
    flag, examples = "--high-quality-if", _RULE_EXAMPLES
    tokens = _tokens(text, flag, examples)
    ops = [j for j, (kind, value) in enumerate(tokens) if kind == "op" and value in _COMPARE]
    if len(ops) != 1:
        raise _syntax(flag, text, "expected one comparison (==, !=, >=, <=, >, <)", examples)
    cut = ops[0]
    left, op, right = tokens[:cut], tokens[cut][1], tokens[cut + 1 :]
    if left == [("z", "z")]:
        value = _signed_number(right, flag, text)
    elif right == [("z", "z")]:
        value, op = _signed_number(left, flag, text), _FLIPPED[op]
    else:
        raise _syntax(flag, text, "compare z itself with a number", examples)
    return HighQualityRule(op, _finite(value, flag, text, examples), text)


def _signed_number(tokens: list[tuple[str, str]], flag: str, text: str) -> float:
    sign = 1.0
    if tokens and tokens[0] in (("op", "-"), ("op", "+")):
        sign = -1.0 if tokens[0][1] == "-" else 1.0
        tokens = tokens[1:]
    if len(tokens) != 1 or tokens[0][0] != "number":
        raise _syntax(flag, text, "compare z with a plain number", _RULE_EXAMPLES)
    return sign * float(tokens[0][1])


# ---------------------------------------------------------------- applying


@dataclass
class LabelReport:
    """What `apply_label_options` did, for the log and summary.json."""

    scores: int = 0  # points with a real-valued label
    transform: str | None = None
    high_quality_if: str | None = None
    high_quality: int = 0  # score-labelled points marked high quality
    label_range: tuple[float, float] | None = None  # of the labels after the transform

    def to_json(self) -> dict[str, Any]:
        return {
            "score_labels": self.scores,
            "label_transform": self.transform,
            "high_quality_if": self.high_quality_if,
            "high_quality_scores": self.high_quality,
            "label_range": list(self.label_range) if self.label_range else None,
        }


def apply_label_options(
    records: Sequence[Record],
    transform: LabelTransform | None = None,
    rule: HighQualityRule | None = None,
    require_scores: bool = True,
) -> tuple[list[Record], LabelReport]:
    """Apply `rule` (on the score as written) and then `transform` to every point with a
    real-valued label; other records pass unchanged. With `require_scores`, an
    `AlignkitError` when a transform or rule is given but no record has a real-valued label
    (the option would silently do nothing)."""
    out: list[Record] = []
    report = LabelReport(
        transform=transform.text if transform else None,
        high_quality_if=rule.text if rule else None,
    )
    labels: list[float] = []
    for record in records:
        if isinstance(record, Point) and not record.binary:
            high_quality = rule(record.label) if rule else record.high_quality
            label = transform(record.label) if transform else record.label
            record = replace(record, label=label, high_quality=high_quality)
            report.scores += 1
            report.high_quality += high_quality
            if not math.isfinite(label):
                raise AlignkitError(
                    f"{record.source or 'a record'}: --label-transform {report.transform!r} "
                    f"turns the score {record.label} into {label}"
                )
            labels.append(label)
        out.append(record)
    if (transform or rule) and require_scores and not report.scores:
        given = " and ".join(
            f"{flag} {text!r}"
            for flag, text in (
                ("--label-transform", report.transform),
                ("--high-quality-if", report.high_quality_if),
            )
            if text
        )
        raise AlignkitError(
            f"{given} applies to real-valued point labels, but the data has none (binary "
            "labels, demonstrations and pairs are used as they are); drop the option"
        )
    if labels:
        report.label_range = (min(labels), max(labels))
    return out, report


def point_label_variant(records: Sequence[Record]) -> LabelVariant:
    """ "continuous" when any point of `records` has a real-valued label, else "binary"."""
    scored = any(isinstance(r, Point) and not r.binary for r in records)
    return "continuous" if scored else "binary"


def as_scores(records: Sequence[Record]) -> list[Record]:
    """Every binary point as a score point (label 0/1 kept, `high_quality` = label == 1), so
    that a run with real-valued labels trains one objective; other records unchanged."""
    return [replace(r, binary=False) if isinstance(r, Point) and r.binary else r for r in records]
