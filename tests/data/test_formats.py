"""Record formats (`alignkit.data.formats`): hh, trl-pair (strings, conversational, implicit
prompt), point, demonstration and multi records, the validation messages, explicit formats and
`as_kind` conversions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import MULTI, PAIR, POINT, PROMPT, A, H, msg, write_jsonl

from alignkit.data import (
    InvalidDataError,
    Multi,
    Pair,
    Point,
    as_kind,
    detect_format,
    load_records,
    parse_row,
)
from alignkit.errors import AlignkitError, DataError


def one(row: dict, fmt: str = "auto") -> Any:
    return parse_row(row, "f.jsonl:1", fmt)


def error_of(row: Any, fmt: str = "auto") -> str:
    with pytest.raises(DataError) as info:
        parse_row(row, "f.jsonl:7", fmt)
    assert str(info.value).startswith("f.jsonl:7: ")
    return str(info.value)


# ---------------------------------------------------------------- hh


def test_hh_prompt_cut_mid_word_back_to_last_marker() -> None:
    row = {"chosen": PROMPT + " Sure, blue.", "rejected": PROMPT + " Surely green."}
    pair = one(row)
    assert detect_format(row) == "hh"
    assert pair == Pair(PROMPT, " Sure, blue.", " Surely green.", "f.jsonl:1")


def test_hh_multi_turn_prompt_uses_last_shared_marker() -> None:
    prompt = f"{H} hi{A} Hello!{H} sky colour?{A}"
    pair = one({"chosen": prompt + " Blue.", "rejected": prompt + " Green."})
    assert pair.prompt == prompt
    assert (pair.chosen, pair.rejected) == (" Blue.", " Green.")


def test_hh_chosen_with_extra_turns() -> None:
    chosen = PROMPT + f" Blue.{H} Why?{A} Rayleigh scattering."
    pair = one({"chosen": chosen, "rejected": PROMPT + " Green."})
    assert pair.prompt == PROMPT
    assert pair.chosen == f" Blue.{H} Why?{A} Rayleigh scattering."
    assert pair.rejected == " Green."


def test_hh_without_shared_marker_is_an_error() -> None:
    text = error_of({"chosen": f"{H} a{A} x", "rejected": f"{H} b{A} y"})
    assert "do not share a prompt ending in '\\n\\nAssistant:'" in text


def test_hh_identical_and_empty_responses() -> None:
    assert "identical" in error_of({"chosen": PROMPT + " x", "rejected": PROMPT + " x"})
    assert "'rejected' is empty" in error_of({"chosen": PROMPT + " x", "rejected": PROMPT + "  "})


# ---------------------------------------------------------------- trl-pair


def test_trl_pair_strings() -> None:
    pair = one({"prompt": "Q?", "chosen": "yes", "rejected": "no", "id": 3})
    assert pair == Pair("Q?", "yes", "no", "f.jsonl:1")


def test_trl_pair_conversational() -> None:
    row = {
        "prompt": [msg("system", "be brief"), msg("user", "Q?")],
        "chosen": [msg("assistant", "yes")],
        "rejected": "no",
    }
    pair = one(row)
    assert detect_format(row) == "trl-pair"
    assert pair.prompt == (msg("system", "be brief"), msg("user", "Q?"))
    assert (pair.chosen, pair.rejected) == ("yes", "no")


def test_trl_pair_conversational_chosen_with_two_messages_is_an_error() -> None:
    row = {
        "prompt": [msg("user", "Q?")],
        "chosen": [msg("user", "Q?"), msg("assistant", "yes")],
        "rejected": [msg("assistant", "no")],
    }
    assert "field 'chosen' has 2 messages" in error_of(row)


def test_trl_pair_implicit_prompt() -> None:
    shared = [msg("user", "hi"), msg("assistant", "hello"), msg("user", "Q?")]
    row = {
        "chosen": [*shared, msg("assistant", "yes")],
        "rejected": [*shared, msg("assistant", "no")],
    }
    pair = one(row)
    assert detect_format(row) == "trl-pair"
    assert pair == Pair(tuple(shared), "yes", "no", "f.jsonl:1")


def test_trl_pair_implicit_prompt_errors() -> None:
    no_shared = {
        "chosen": [msg("user", "a"), msg("assistant", "x")],
        "rejected": [msg("user", "b"), msg("assistant", "y")],
    }
    assert "share no leading messages" in error_of(no_shared)
    longer = {
        "chosen": [
            msg("user", "a"),
            msg("assistant", "x"),
            msg("user", "more"),
            msg("assistant", "z"),
        ],
        "rejected": [msg("user", "a"), msg("assistant", "y")],
    }
    assert "'chosen' continues with 3 messages" in error_of(longer)
    same = {"chosen": no_shared["chosen"], "rejected": no_shared["chosen"]}
    assert "identical" in error_of(same)
    strings = {"chosen": "x", "rejected": "y"}
    assert "must be lists of messages" in error_of(strings, fmt="trl-pair")


# ---------------------------------------------------------------- point / demonstration / multi


@pytest.mark.parametrize(
    ("label", "expected", "binary", "high_quality"),
    [
        (True, 1.0, True, True),
        (False, 0.0, True, False),
        (1, 1.0, True, True),
        (0, 0.0, True, False),
    ],
)
def test_point_binary_labels(label: Any, expected: float, binary: bool, high_quality: bool) -> None:
    point = one({"prompt": "p", "completion": "c", "label": label})
    assert point == Point("p", "c", expected, binary, high_quality, "f.jsonl:1")


def test_point_score_labels_and_high_quality_flag() -> None:
    assert one({"prompt": "p", "completion": "c", "label": 3}) == Point(
        "p", "c", 3.0, False, False, "f.jsonl:1"
    )
    point = one({"prompt": "p", "completion": "c", "label": 0.5, "high_quality": True})
    assert (point.label, point.binary, point.high_quality) == (0.5, False, True)
    # a binary label may repeat what it says in high_quality, never contradict it
    point = one({"prompt": "p", "completion": "c", "label": 1, "high_quality": True})
    assert (point.binary, point.high_quality) == (True, True)
    assert one({"prompt": "p", "completion": "c", "label": False, "high_quality": False}) == Point(
        "p", "c", 0.0, True, False, "f.jsonl:1"
    )


@pytest.mark.parametrize(
    ("label", "high_quality"), [(1, False), (True, False), (0, True), (False, True)]
)
def test_binary_label_contradicted_by_high_quality_is_refused(
    label: Any, high_quality: bool
) -> None:
    # the old parser accepted {"label": 1, "high_quality": false}, and every point-wise method
    # then trained the point as a negative (its likelihood pushed down)
    row = {"prompt": "p", "completion": "c", "label": label, "high_quality": high_quality}
    text = error_of(row)
    assert f"binary label {int(label)} contradicts 'high_quality': {str(high_quality).lower()}" in (
        text
    )
    assert "the label decides" in text


def test_point_built_in_code_takes_high_quality_from_its_label() -> None:
    # the old default high_quality=False made Point(x, y, 1.0) a negative for every
    # consumer of the flag (e.g. DEFT's positive/negative token counts)
    assert Point("p", "c", 1.0).high_quality is True
    assert Point("p", "c", 0.0).high_quality is False
    assert Point("p", "c", 1.0, binary=False).high_quality is False  # a score: only if marked
    assert Point("p", "c", 3.0, False, True).high_quality is True


def test_binary_label_conflict_in_a_file_names_the_line(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p", "completion": "a", "label": 1},
        {"prompt": "p", "completion": "b", "label": 1, "high_quality": False},
    ]
    path = write_jsonl(tmp_path / "b.jsonl", rows)
    with pytest.raises(InvalidDataError) as info:
        load_records([path])
    assert [e.where for e in info.value.errors] == [f"{path}:2"]
    records, summary = load_records([path], skip_invalid=True)
    assert [r.completion for r in records] == ["a"]
    assert summary.counts == {"point": 1}
    assert [(r.where, r.reason) for r in summary.rejected] == [
        (f"{path}:2", "binary label 1 contradicts 'high_quality'")
    ]
    # next to other ratings the same row is the score 1 and may be marked either way
    rating = write_jsonl(
        tmp_path / "r.jsonl", [*rows, {"prompt": "p", "completion": "c", "label": 4}]
    )
    records, _ = load_records([rating])
    assert [(r.label, r.binary, r.high_quality) for r in records] == [
        (1.0, False, False),
        (1.0, False, False),
        (4.0, False, False),
    ]


def test_point_conversational() -> None:
    row = {"prompt": [msg("user", "p")], "completion": [msg("assistant", "c")], "label": False}
    assert one(row) == Point((msg("user", "p"),), "c", 0.0, True, False, "f.jsonl:1")


def test_integer_labels_of_a_rating_file_are_scores(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "completion": f"c{i}", "label": i} for i in (0, 1, 4)]
    rows.append({"prompt": "p", "completion": "c", "label": True})
    records, _ = load_records([write_jsonl(tmp_path / "r.jsonl", rows)])
    assert [(r.label, r.binary) for r in records] == [
        (0.0, False),
        (1.0, False),
        (4.0, False),
        (1.0, True),
    ]
    assert [r.high_quality for r in records] == [False, False, False, True]


def test_demonstrations() -> None:
    assert one({"prompt": "p", "completion": "c"}) == Point("p", "c", 1.0, True, True, "f.jsonl:1")
    row = {"messages": [msg("user", "p"), msg("assistant", "c")]}
    assert detect_format(row) == "demonstration"
    assert one(row) == Point((msg("user", "p"),), "c", 1.0, True, True, "f.jsonl:1")
    assert "must end with an assistant message" in error_of({"messages": [msg("user", "p")]})
    assert "no prompt before the answer" in error_of({"messages": [msg("assistant", "c")]})


def test_multi() -> None:
    row = {"prompt": "p", "responses": ["a", "b", "c"], "scores": [3, 1.5, -2]}
    assert one(row) == Multi("p", ("a", "b", "c"), (3.0, 1.5, -2.0), "f.jsonl:1")
    bad = {"prompt": "p", "responses": ["a", "b"], "scores": [1.0]}
    assert "2 responses and 1 scores" in error_of(bad)
    assert "k >= 2" in error_of({"prompt": "p", "responses": ["a"], "scores": [1.0]})


# ---------------------------------------------------------------- validation messages


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["not", "an", "object"], "record is a JSON list, not an object"),
        (
            {"prompt": "p", "chosen": "x"},
            "missing field 'rejected' (the record looks like format 'trl-pair')",
        ),
        ({"prompt": "p", "responses": ["a", "b"]}, "missing field 'scores'"),
        ({"text": "hello"}, "unknown format (fields: text)"),
        (
            {"prompt": 3, "chosen": "x", "rejected": "y"},
            "field 'prompt' must be a string or a list",
        ),
        (
            {"prompt": "p", "chosen": None, "rejected": "y"},
            "field 'chosen' must be a string, got null",
        ),
        ({"prompt": "p", "chosen": " \n", "rejected": "y"}, "field 'chosen' is empty"),
        (
            {"prompt": "p", "chosen": "x", "rejected": "x"},
            "chosen and rejected responses are identical",
        ),
        ({"prompt": "p", "completion": "c", "label": "true"}, "bool-like strings are not accepted"),
        ({"prompt": "p", "completion": "c", "label": "3.5"}, "field 'label' must be a number"),
        ({"prompt": "p", "completion": "c", "label": float("nan")}, "field 'label' is nan"),
        (
            {"prompt": "p", "responses": ["a", "b"], "scores": [1, float("inf")]},
            "'scores[1]' is inf",
        ),
        (
            {"prompt": "p", "responses": ["a", "b"], "scores": [1, None]},
            "'scores[1]' must be a number",
        ),
        (
            {"prompt": "p", "completion": "c", "label": 1, "high_quality": "yes"},
            "'high_quality' must be true or false",
        ),
        (
            {"prompt": [{"role": "user"}], "completion": "c"},
            "message prompt[0] needs 'role' and 'content'",
        ),
        (
            {"prompt": [msg("human", "p")], "completion": "c"},
            "has role 'human', not one of system, user, assistant",
        ),
        (
            {"prompt": [msg("user", "p")], "completion": [msg("user", "c")]},
            "must end with an assistant message",
        ),
        ({"prompt": [], "completion": "c"}, "field 'prompt' has no messages"),
    ],
)
def test_validation_errors(row: Any, expected: str) -> None:
    assert expected in error_of(row)


def test_unknown_format_lists_recognised_key_sets() -> None:
    text = error_of({"question": "q"})
    assert "point {prompt, completion, label}" in text
    assert "multi {prompt, responses, scores}" in text


def test_explicit_format() -> None:
    assert "missing field 'label'" in error_of({"prompt": "p", "completion": "c"}, fmt="point")
    assert one({"prompt": "p", "completion": "c", "label": 1}, fmt="demonstration").label == 1.0
    with pytest.raises(AlignkitError, match="unknown data format 'csv'"):
        parse_row({}, "x", fmt="csv")


def test_as_kind_conversions() -> None:
    assert as_kind([PAIR, POINT], "point") == [
        Point("p", "a", 1.0, True, True, "x.jsonl:1"),
        Point("p", "b", 0.0, True, False, "x.jsonl:1"),
        POINT,
    ]
    assert as_kind([PAIR], "pair") == [PAIR]
    assert as_kind([PAIR, MULTI], "multi") == [
        Multi("p", ("a", "b"), (1.0, 0.0), "x.jsonl:1"),
        MULTI,
    ]


def test_as_kind_errors_name_the_records() -> None:
    with pytest.raises(
        AlignkitError,
        match=r"needs preference pairs .* 2 of 3 records are not: x.jsonl:2 is a point; x.jsonl:3 is a multi",
    ):
        as_kind([PAIR, POINT, MULTI], "pair")
    with pytest.raises(AlignkitError, match="x.jsonl:2 is a point"):
        as_kind([POINT], "multi")
    with pytest.raises(AlignkitError, match="x.jsonl:3 is a multi"):
        as_kind([MULTI], "point")
    with pytest.raises(AlignkitError, match="unknown record kind"):
        as_kind([PAIR], "triple")
