"""Label options (`alignkit.data.labels`): label transforms, high-quality rules, ratings."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PAIR, write_jsonl

from alignkit.data import (
    Point,
    load_records,
)
from alignkit.data.labels import (
    apply_label_options,
    as_scores,
    parse_high_quality_rule,
    parse_label_transform,
    point_label_variant,
)
from alignkit.errors import AlignkitError

# ---------------------------------------------------------------- label options


@pytest.mark.parametrize(
    ("text", "a", "b"),
    [
        ("4 - z", -1.0, 4.0),
        ("-z + 4", -1.0, 4.0),
        ("4-z", -1.0, 4.0),
        ("z", 1.0, 0.0),
        ("2*z + 1", 2.0, 1.0),
        ("0.25*z - 1", 0.25, -1.0),
        ("z/4", 0.25, 0.0),
        ("1 - z/4", -0.25, 1.0),
        ("z*0.5", 0.5, 0.0),
        ("3 + 2*z", 2.0, 3.0),
        ("1e-1*z", 0.1, 0.0),
    ],
)
def test_label_transform_accepts_affine_forms(text: str, a: float, b: float) -> None:
    transform = parse_label_transform(text)
    assert (transform.a, transform.b) == (pytest.approx(a), pytest.approx(b))
    # a rating of 4 on each: a*4 + b by hand
    assert transform(4.0) == pytest.approx(a * 4 + b)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("z*z", "expected a number after '*'"),
        ("z**2", "expected a number after '*'"),
        ("4", "the expression has no z"),
        ("z + 1 + 2", "give at most one constant"),
        ("z - z", "z appears more than once"),
        ("(4 - z)", "unexpected '(4 - z)'"),
        ("__import__('os')", "unexpected"),
        ("4 - x", "unexpected 'x'"),
        ("z/0", "division by 0"),
        ("0*z + 1", "the factor of z is 0"),
        ("2z", "expected + or - before 'z'"),
        ("", "the expression is empty"),
        ("1e999*z", "is not a finite number"),
    ],
)
def test_label_transform_refuses_everything_else(text: str, problem: str) -> None:
    with pytest.raises(AlignkitError, match="cannot read --label-transform") as info:
        parse_label_transform(text)
    assert problem in str(info.value) and '"4 - z"' in str(info.value)


def test_high_quality_rules() -> None:
    cases = {"z == 0": [1, 0, 0], "z >= 3": [0, 0, 1], "z > 0.5": [0, 1, 1], "2 <= z": [0, 0, 1]}
    cases |= {"z != 4": [1, 1, 0], "z < -1": [0, 0, 0], "-1 < z": [1, 1, 1]}
    for text, expected in cases.items():
        rule = parse_high_quality_rule(text)
        assert [int(rule(z)) for z in (0.0, 1.0, 4.0)] == expected, text
    for text in ("z", "z = 0", "z == y", "1 < z < 3", "z >= 1 and z < 2", "-z > 1", "z == z"):
        with pytest.raises(AlignkitError, match="cannot read --high-quality-if"):
            parse_high_quality_rule(text)


def test_red_team_ratings_become_labels_and_demonstrations(tmp_path: Path) -> None:
    # red-team attempts rated 0 (failed attack, the best answer) .. 4 (successful attack)
    rows = [
        {"prompt": f"attack {r}", "completion": f"answer {r}", "label": r} for r in (0, 1, 4, 0)
    ]
    records, _ = load_records([write_jsonl(tmp_path / "red.jsonl", rows)])
    assert [(r.label, r.binary) for r in records] == [
        (0, False),
        (1, False),
        (4, False),
        (0, False),
    ]
    demo = Point("p", "demo", 1.0, True, True, "d:1")
    out, report = apply_label_options(
        [*records, demo], parse_label_transform("4 - z"), parse_high_quality_rule("z == 0")
    )
    # the rule reads the rating as written (0 = best), the transform makes higher = better
    assert [(p.label, p.high_quality) for p in out] == [
        (4.0, True),
        (3.0, False),
        (0.0, False),
        (4.0, True),
        (1.0, True),  # the demonstration (binary) is left as it is
    ]
    assert report.to_json() == {
        "score_labels": 4,
        "label_transform": "4 - z",
        "high_quality_if": "z == 0",
        "high_quality_scores": 2,
        "label_range": [0.0, 4.0],
    }
    assert point_label_variant(out) == "continuous"
    assert point_label_variant([demo, PAIR]) == "binary"
    assert as_scores(out)[-1] == Point("p", "demo", 1.0, False, True, "d:1")
    with pytest.raises(AlignkitError, match="applies to real-valued point labels"):
        apply_label_options([demo], parse_label_transform("4 - z"))
    assert apply_label_options([demo], parse_label_transform("4 - z"), require_scores=False)[0] == [
        demo
    ]
