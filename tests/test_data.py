"""Tests of alignkit.data: loading, format detection, validation, conversion, inspect, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alignkit.cli import main
from alignkit.data import (
    InvalidDataError,
    LoadSummary,
    Multi,
    Pair,
    Point,
    as_kind,
    detect_format,
    format_report,
    inspect_records,
    iter_rows,
    load_records,
    parse_row,
)
from alignkit.data.labels import (
    apply_label_options,
    as_scores,
    parse_high_quality_rule,
    parse_label_transform,
    point_label_variant,
)
from alignkit.errors import AlignkitError, DataError

H, A = "\n\nHuman:", "\n\nAssistant:"
PROMPT = f"{H} What is the sky's colour?{A}"


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def one(row: dict, fmt: str = "auto") -> Any:
    return parse_row(row, "f.jsonl:1", fmt)


def error_of(row: Any, fmt: str = "auto") -> str:
    with pytest.raises(DataError) as info:
        parse_row(row, "f.jsonl:7", fmt)
    assert str(info.value).startswith("f.jsonl:7: ")
    return str(info.value)


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


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


# ---------------------------------------------------------------- files


def test_load_records_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
        + "\n\n{broken\n"
        + json.dumps({"prompt": "p", "chosen": "a", "rejected": "a"})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidDataError) as info:
        load_records([str(path)])
    lines = str(info.value).splitlines()
    assert lines[0] == "2 invalid records found:"
    assert lines[1].startswith(f"  {path}:3: invalid JSON")
    assert lines[2].startswith(f"  {path}:4: chosen and rejected responses are identical")
    assert [e.where for e in info.value.errors] == [f"{path}:3", f"{path}:4"]


def test_iter_rows_raises_on_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:2: invalid JSON"):
        list(iter_rows(str(path)))


def test_max_errors_aggregates_across_files(tmp_path: Path) -> None:
    bad = {"prompt": "p", "completion": "c", "label": "yes"}
    first = write_jsonl(tmp_path / "a.jsonl", [bad, {"prompt": "p", "completion": "c"}, bad])
    second = tmp_path / "b.json"
    second.write_text(json.dumps([bad, 5]), encoding="utf-8")
    with pytest.raises(InvalidDataError) as info:
        load_records([first, str(second), str(tmp_path / "missing.jsonl")], max_errors=3)
    text = str(info.value)
    assert (
        text.splitlines()[0] == "4 invalid records and 1 unusable file found (showing the first 3):"
    )
    assert f"{first}:1:" in text and f"{first}:3:" in text and f"{second}[record 0]:" in text
    assert f"{second}[record 1]" not in text
    assert (info.value.invalid_records, info.value.bad_files) == (4, 1)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        list(iter_rows(str(tmp_path / "nope.jsonl")))
    (tmp_path / "d.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"unknown file type \(supported: .jsonl, .json, .parquet"):
        list(iter_rows(str(tmp_path / "d.csv")))
    (tmp_path / "e.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InvalidDataError, match="e.jsonl: no records found"):
        load_records([str(tmp_path / "e.jsonl")])
    (tmp_path / "s.json").write_text('"text"', encoding="utf-8")
    with pytest.raises(DataError, match="expected a list of records, got a JSON str"):
        list(iter_rows(str(tmp_path / "s.json")))
    (tmp_path / "bad.json").write_text('[\n{"a": 1},\n{oops}]', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:3: invalid JSON"):
        list(iter_rows(str(tmp_path / "bad.json")))


def test_json_with_data_key_and_mixed_files(tmp_path: Path) -> None:
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"data": [{"prompt": "p", "completion": "c"}]}), encoding="utf-8")
    hh = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": PROMPT + " a", "rejected": PROMPT + " b"}])
    records, summary = load_records([str(wrapped), hh])
    assert records[0].source == f"{wrapped}[record 0]"
    assert records[1].source == f"{hh}:1"
    assert summary.files == [str(wrapped), hh]
    assert summary.counts == {"demonstration": 1, "hh": 1}
    assert summary.kinds == {"point": 1, "pair": 1}


def test_parquet_round_trip(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(
        [
            {
                "prompt": [msg("user", "p")],
                "chosen": [msg("assistant", "a")],
                "rejected": [msg("assistant", "b")],
            },
            {
                "prompt": [msg("user", "q")],
                "chosen": [msg("assistant", "c")],
                "rejected": [msg("assistant", "c")],
            },
        ]
    )
    path = str(tmp_path / "d.parquet")
    pq.write_table(table, path)
    with pytest.raises(InvalidDataError, match=r"d.parquet\[record 1\]: chosen and rejected"):
        load_records([path])
    pq.write_table(table.slice(0, 1), path)
    records, _ = load_records([path])
    assert records == [Pair((msg("user", "p"),), "a", "b", f"{path}[record 0]")]


def test_save_to_disk_round_trip(tmp_path: Path) -> None:
    import datasets

    rows = {"prompt": ["p", "q"], "completion": ["c", "d"], "label": [True, False]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    records, summary = load_records([str(tmp_path / "ds")])
    assert records[1] == Point("q", "d", 0.0, True, False, f"{tmp_path / 'ds'}[record 1]")
    assert summary.counts == {"point": 2}

    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"2 splits \(train, test\).*dd/train"):
        list(iter_rows(str(tmp_path / "dd")))
    assert len(load_records([str(tmp_path / "dd" / "train")])[0]) == 2

    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(
        str(tmp_path / "one")
    )
    assert len(load_records([str(tmp_path / "one")])[0]) == 2
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a dataset saved with datasets' save_to_disk"):
        list(iter_rows(str(tmp_path / "plain")))


# ---------------------------------------------------------------- as_kind

PAIR = Pair("p", "a", "b", "x.jsonl:1")
POINT = Point("p", "c", 1.0, True, True, "x.jsonl:2")
MULTI = Multi("p", ("a", "b", "c"), (1.0, 2.0, 3.0), "x.jsonl:3")


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


# ---------------------------------------------------------------- inspect


class WordTokenizer:
    """One token per whitespace-separated word; no chat template."""

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        return {"input_ids": [text.split() for text in texts]}


def test_inspect_statistics_by_hand() -> None:
    records = [
        Pair("abcd", "xy", "xyz", "f:1"),  # prompt 4 chars; responses 2, 3
        Point("abcd", "xy", 1.0, True, True, "f:2"),  # duplicate of (abcd, xy)
        Point("ef", "one two three", 2.5, False, False, "f:3"),  # response 13
        Point("ef", "ok", 0.0, True, False, "f:4"),  # response 2
        Multi((msg("user", "hello"),), ("a", "bb"), (1.0, 3.5), "f:5"),  # prompt 5; 1, 2
    ]
    summary = LoadSummary(files=["f"], counts={"trl-pair": 1, "point": 3, "multi": 1})
    stats = inspect_records(records, summary, tokenizer=WordTokenizer())
    assert stats["records"] == 5
    assert stats["kinds"] == {"pair": 1, "point": 3, "multi": 1}
    assert stats["prompts"] == 3
    # prompt chars: 4, 4, 2, 2, 5 -> mean 3.4, median 4, p95 = 5th smallest = 5
    assert stats["prompt_chars"] == {"mean": pytest.approx(3.4), "median": 4, "p95": 5, "max": 5}
    # response chars: 2, 3, 2, 13, 2, 1, 2 -> sorted 1 2 2 2 2 3 13
    assert stats["response_chars"] == {
        "mean": pytest.approx(25 / 7),
        "median": 2,
        "p95": 13,
        "max": 13,
    }
    assert stats["labels"] == {
        "binary": {"positive": 1, "negative": 1},
        "continuous": {"count": 1, "min": 2.5, "mean": 2.5, "max": 2.5},
        "high_quality": 1,
    }
    assert stats["multi"] == {
        "records": 1,
        "responses_per_prompt": {"min": 2, "mean": 2.0, "max": 2},
    }
    assert stats["duplicates"] == 1
    # response tokens: 1, 1, 1, 3, 1, 1, 1
    assert stats["response_tokens"] == {
        "mean": pytest.approx(9 / 7),
        "median": 1,
        "p95": 3,
        "max": 3,
    }
    assert stats["prompt_tokens"]["max"] == 1
    report = format_report(stats)
    assert "5 valid records in 1 file(s): f" in report
    assert "binary labels:   1 positive / 1 negative" in report
    assert "duplicates:      1" in report
    assert "response tokens:" in report


# ---------------------------------------------------------------- CLI


def make_tokenizer(folder: Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "</s>": 1, "Sure": 2, "Surely": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>"
    )
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def test_cli_inspect_ok_with_json_and_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_jsonl(
        tmp_path / "hh.jsonl",
        [{"chosen": PROMPT + " Sure thing", "rejected": PROMPT + " Surely not"}],
    )
    out = tmp_path / "stats.json"
    tokenizer = make_tokenizer(tmp_path / "tok")
    code = main(["data", "inspect", data, "--json", str(out), "--tokenizer", tokenizer])
    assert code == 0
    printed = capsys.readouterr().out
    assert "1 valid records in 1 file(s)" in printed and "formats:         hh 1" in printed
    stats = json.loads(out.read_text(encoding="utf-8"))
    assert stats["kinds"] == {"pair": 1}
    assert stats["response_tokens"]["max"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_cli_inspect_invalid_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "completion": "c", "label": "false"}])
    assert main(["data", "inspect", data]) == 2
    err = capsys.readouterr().err
    assert "1 invalid record found:" in err
    assert f"{data}:1: field 'label' is the string 'false'" in err


def test_cli_format_option_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    assert main(["data", "inspect", data, "--format", "point"]) == 2
    assert "missing field 'label'" in capsys.readouterr().err
    assert main(["data", "inspect", data, "--format", "demonstration", "--max-errors", "1"]) == 0
    assert main(["data"]) == 2
    assert "inspect" in capsys.readouterr().out


def test_cli_bad_tokenizer_and_json_folder_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    (tmp_path / "empty").mkdir()
    assert main(["data", "inspect", data, "--tokenizer", str(tmp_path / "empty")]) == 2
    assert "cannot load a tokenizer" in capsys.readouterr().err
    assert main(["data", "inspect", data, "--json", str(tmp_path / "no" / "s.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


class ChatTokenizer(WordTokenizer):
    chat_template = "set"

    def apply_chat_template(
        self, messages: list, tokenize: bool, add_generation_prompt: bool
    ) -> str:
        assert not tokenize and add_generation_prompt
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"


def test_inspect_chat_prompt_tokens_use_the_chat_template() -> None:
    records = [Point((msg("system", "be nice"), msg("user", "hi")), "ok", 1.0, True, True, "f:1")]
    stats = inspect_records(records, LoadSummary(files=["f"]), tokenizer=ChatTokenizer())
    assert stats["prompt_chars"]["max"] == 9  # "be nice" + "hi"
    assert stats["prompt_tokens"]["max"] == 6  # <system> be nice <user> hi <assistant>


# ---------------------------------------------------------------- real, messy data


def write_hh_like(path: Path) -> tuple[str, dict[str, int]]:
    """A file shaped like Anthropic HH-RLHF (harmless-base): {"chosen", "rejected"}
    transcripts, UTF-8 with a byte-order mark, non-ASCII text written raw (an emoji, an
    accent, a right-to-left name, a combining mark, U+2028 inside a string), a duplicate
    pair, and the problems real files have: an empty final answer in chosen (line 4) and in
    rejected (line 6, whitespace only; a 512-pair sample of harmless-base has two such
    pairs), an unpaired surrogate (line 8), a truncated line (line 9) and identical answers
    (line 10). Returns the path and the line numbers of the invalid rows."""
    prompts = [
        f"{H} How do I pick a lock? \U0001f512{A}",
        f"{H} Who is \u05d3\u05d5\u05d3?{A} A name.{H} Say it again\u2028please{A}",
        f"{H} Caf\u00e9 or cafe\u0301?{A}",
    ]
    good = [
        {"chosen": p + " I can't help with that.", "rejected": p + f" Sure, step {i}: \U0001f600"}
        for i, p in enumerate(prompts)
    ]
    rows = [
        good[0],  # 1
        good[1],  # 2
        good[2],  # 3
        {"chosen": prompts[0], "rejected": prompts[0] + " Use a pin."},  # 4
        good[0],  # 5: duplicate of line 1 (valid: kept, counted by inspect)
        {"chosen": prompts[1] + " No.", "rejected": prompts[1] + "  \n "},  # 6
        {"chosen": prompts[2] + " Both.", "rejected": prompts[2] + " Neither."},  # 7
    ]
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    lines.append(  # 8: JSON allows a lone surrogate escape
        '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: bad \\ud83d", '
        '"rejected": "\\n\\nHuman: hi\\n\\nAssistant: fine"}'
    )
    lines.append('{"chosen": "\\n\\nHuman: cut off')  # 9
    lines.append(json.dumps({"chosen": prompts[2] + " same", "rejected": prompts[2] + " same"}))
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path), {
        "chosen empty": 4,
        "rejected empty": 6,
        "surrogate": 8,
        "json": 9,
        "same": 10,
    }


def test_hh_like_file_is_refused_by_default_naming_the_flag(tmp_path: Path) -> None:
    path, bad = write_hh_like(tmp_path / "harmless.jsonl")
    with pytest.raises(InvalidDataError) as info:
        load_records([path])
    assert [e.where for e in info.value.errors] == [f"{path}:{n}" for n in sorted(bad.values())]
    text = str(info.value)
    assert f"{path}:4: the final answer of 'chosen' is empty" in text
    assert f"{path}:6: the final answer of 'rejected' is empty" in text
    assert "or pass --skip-invalid to drop such records." in text


def test_skip_invalid_drops_counts_and_lists_the_hh_problems(tmp_path: Path) -> None:
    path, bad = write_hh_like(tmp_path / "harmless.jsonl")
    out = tmp_path / "out" / "rejected.jsonl"
    records, summary = load_records([path], skip_invalid=True, rejected_path=out)
    # 10 lines: 5 invalid; the 5 valid ones (a duplicate included) are kept in file order
    assert [r.source for r in records] == [f"{path}:{n}" for n in (1, 2, 3, 5, 7)]
    assert records[0] == Pair(
        f"{H} How do I pick a lock? \U0001f512{A}",
        " I can't help with that.",
        " Sure, step 0: \U0001f600",
        f"{path}:1",
    )
    assert records[1].prompt.endswith("again\u2028please" + A)  # U+2028 is not a line break
    assert records[2].prompt == f"{H} Caf\u00e9 or cafe\u0301?{A}"
    assert summary.counts == {"hh": 5} and summary.kinds == {"pair": 5}
    assert summary.rejected_by_reason() == {
        "the final answer of 'chosen' is empty": 1,
        "the final answer of 'rejected' is empty": 1,
        "field 'chosen' contains an unpaired UTF-16 surrogate": 1,
        "invalid JSON": 1,
        "chosen and rejected responses are identical": 1,
    }
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["where"] for row in written] == [f"{path}:{n}" for n in sorted(bad.values())]
    assert written[0]["reason"] == "the final answer of 'chosen' is empty"
    assert written[0]["record"]["rejected"].endswith(" Use a pin.")
    assert "record" not in written[3]  # the line that is not JSON
    assert written[2]["record"]["chosen"].endswith("bad \ud83d")  # escaped, so writable


def test_skip_invalid_all_records_invalid_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"chosen": PROMPT, "rejected": PROMPT + " x"},
            {"chosen": PROMPT + " y", "rejected": PROMPT},
        ],
    )
    with pytest.raises(InvalidDataError, match="all 2 records are invalid, none is left") as info:
        load_records([path], skip_invalid=True)
    assert [e.where for e in info.value.errors] == [f"{path}:1", f"{path}:2"]
    assert "--skip-invalid to drop" not in str(info.value)
    # a good file next to it is enough; a missing file is still an error of its own
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "p", "completion": "c"}])
    assert len(load_records([path, good], skip_invalid=True)[0]) == 1
    with pytest.raises(InvalidDataError, match="1 unusable file found"):
        load_records([good, str(tmp_path / "missing.jsonl")], skip_invalid=True)


def test_skip_invalid_writes_an_empty_list_when_nothing_is_dropped(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "p", "completion": "c"}])
    out = tmp_path / "rejected.jsonl"
    out.write_text("stale\n", encoding="utf-8")
    _, summary = load_records([good], skip_invalid=True, rejected_path=out)
    assert summary.rejected == [] and out.read_text(encoding="utf-8") == ""


def test_jsonl_line_that_is_not_utf8_is_one_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        b'{"prompt": "p", "completion": "ok"}\n{"prompt": "caf\xe9", "completion": "c"}\n'
    )
    with pytest.raises(InvalidDataError, match=r"latin1.jsonl:2: line is not valid UTF-8"):
        load_records([str(path)])
    records, summary = load_records([str(path)], skip_invalid=True)
    assert len(records) == 1 and summary.rejected[0].reason == "line is not valid UTF-8"


def test_cli_inspect_skip_invalid(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, bad = write_hh_like(tmp_path / "harmless.jsonl")
    assert main(["data", "inspect", path]) == 2
    assert "or pass --skip-invalid" in capsys.readouterr().err
    assert main(["data", "inspect", path, "--skip-invalid"]) == 0
    printed = capsys.readouterr().out
    assert "5 valid records in 1 file(s)" in printed
    assert "duplicates:      2" in printed  # line 5 repeats both answers of line 1
    assert "dropped:         5 invalid records (--skip-invalid)" in printed
    assert "1  the final answer of 'chosen' is empty" in printed
    assert not list(tmp_path.glob("*.rejected.jsonl"))  # without --json only counted
    stats_path = tmp_path / "stats.json"
    assert main(["data", "inspect", path, "--skip-invalid", "--json", str(stats_path)]) == 0
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    rejected = tmp_path / "stats.rejected.jsonl"
    assert stats["rejected"]["records"] == 5
    assert stats["rejected"]["by_reason"]["invalid JSON"] == 1
    assert stats["rejected"]["file"] == str(rejected)
    rows = [json.loads(line) for line in rejected.read_text(encoding="utf-8").splitlines()]
    assert [row["where"] for row in rows] == [f"{path}:{n}" for n in sorted(bad.values())]
    only_bad = write_jsonl(tmp_path / "e.jsonl", [{"chosen": PROMPT, "rejected": PROMPT + " x"}])
    assert main(["data", "inspect", only_bad, "--skip-invalid"]) == 2
    assert "all 1 record are invalid" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["deft", "real"])
def test_cli_select_skip_invalid_writes_rejected_into_the_output(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture, verb: str
) -> None:
    path, bad = write_hh_like(tmp_path / "harmless.jsonl")
    out = tmp_path / verb
    args = ["select", verb, "--data", path, "--model", tiny_model, "--output", str(out)]
    args += ["--precision", "fp32"]
    args += (
        ["--keep-count", "2"] if verb == "deft" else ["--strategy", "random", "--fraction", "0.5"]
    )
    if verb == "real":
        args += ["--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 2
    assert "or pass --skip-invalid" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    listed = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in listed] == [f"{path}:{n}" for n in sorted(bad.values())]
    assert (out / "subset.jsonl").exists()


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


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    """Outputs are written to a temporary file (mkstemp: mode 0600) and renamed; they end with
    the mode any other new file gets under the process umask."""
    import os

    from alignkit.io import atomic_write_text

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_text(tmp_path / "out.json", "{}")
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask
