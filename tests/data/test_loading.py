"""Loading files (`alignkit.data.loading`): errors with file and line, jsonl / json / parquet /
`save_to_disk`, and messy data (`skip_invalid`: dropped, counted and listed)."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest
from conftest import PROMPT, A, H, msg, reads_fifo_promptly, write_hh_like, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit import io
from alignkit.cli import main
from alignkit.data import (
    InvalidDataError,
    Pair,
    Point,
    iter_rows,
    load_records,
)
from alignkit.errors import DataError

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


def test_deep_nesting_is_an_invalid_line_not_a_crash(tmp_path: Path) -> None:
    """100k `[` on a jsonl line, inside a record, or as a .json file: a `DataError` naming the
    file and line (the parser's RecursionError), dropped and counted under skip_invalid."""
    good = {"chosen": PROMPT + " yes", "rejected": PROMPT + " no"}
    deep = "[" * 100_000
    path = tmp_path / "deep.jsonl"
    path.write_text(
        json.dumps(good) + "\n" + deep + "\n" + '{"chosen": ' + deep + "\n", encoding="utf-8"
    )
    with pytest.raises(InvalidDataError) as info:
        load_records([str(path)])
    assert [e.where for e in info.value.errors] == [f"{path}:2", f"{path}:3"]
    assert "nested too deeply" in str(info.value)
    records, summary = load_records([str(path)], skip_invalid=True)
    assert [r.source for r in records] == [f"{path}:1"]
    assert summary.rejected_by_reason() == {"invalid JSON": 2}
    whole = tmp_path / "deep.json"
    whole.write_text(deep, encoding="utf-8")
    with pytest.raises(DataError, match=r"deep.json:1: invalid JSON: nested too deeply"):
        list(iter_rows(str(whole)))


def _records_or_errors(data: bytes) -> int:
    """How many lines of a jsonl file are a record or an error: every line but the blank
    ones (str.strip: U+001C is blank too) after a leading byte-order mark; a line that is not
    UTF-8 is an error even where its bytes look blank."""
    lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
    count = 0
    for raw in lines:
        try:
            count += bool(raw.decode("utf-8").strip())
        except UnicodeDecodeError:
            count += 1
    return count


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=200)
    | st.lists(
        st.sampled_from([b"[", b"{", b'"a"', b":", b",", b"\n", b"1", b"]", b"}", b"\xff"]),
        max_size=60,
    ).map(b"".join)
    | st.integers(0, 50_000).map(lambda n: b"[" * n)
)
def test_any_bytes_give_rows_or_errors_naming_the_file_and_line(tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("any.jsonl", "any.json"):
        path = folder / name
        path.write_bytes(data)
        try:
            rows = list(iter_rows(str(path)))
        except DataError as exc:
            assert exc.where == str(path) or exc.where.startswith(f"{path}:")
        else:
            assert all(where.startswith(str(path)) for where, _ in rows)
    errors: list[DataError] = []
    rows = list(iter_rows(str(folder / "any.jsonl"), errors))  # the bad lines are collected
    assert len(rows) + len(errors) == _records_or_errors(data)
    assert all(e.where.startswith(f"{folder / 'any.jsonl'}:") for e in errors)


def test_a_fifo_or_a_device_as_data_is_refused(tmp_path: Path) -> None:
    """C6: `--data` naming a FIFO or a character device (a symlink to /dev/null stands for
    /dev/zero) of any supported extension: an error naming the file, at once."""
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InvalidDataError, match=r"pipe.jsonl: is a FIFO"):
        reads_fifo_promptly(fifo, lambda: load_records([str(fifo)]))
    assert reads_fifo_promptly(fifo, lambda: main(["data", "inspect", str(fifo)])) == 2
    for name in ("zero.jsonl", "zero.json", "zero.parquet"):
        (tmp_path / name).symlink_to("/dev/null")
        with pytest.raises(InvalidDataError, match=f"{name}: is a character device"):
            load_records([str(tmp_path / name)])


def test_a_line_over_the_bound_is_one_bad_record(tmp_path: Path, monkeypatch) -> None:
    """C6: a jsonl line longer than MAX_LINE_BYTES (1,000 bytes here) is an invalid record
    naming its line, dropped under skip_invalid; the lines after it are read."""
    monkeypatch.setattr(io, "MAX_LINE_BYTES", 1000)
    good = {"chosen": PROMPT + " yes", "rejected": PROMPT + " no"}
    long = {"chosen": PROMPT + " y" * 1000, "rejected": PROMPT + " no"}
    path = write_jsonl(tmp_path / "d.jsonl", [good, long, good])
    with pytest.raises(InvalidDataError) as info:
        load_records([path])
    assert [e.where for e in info.value.errors] == [f"{path}:2"]
    assert "longer than 1,000 bytes" in str(info.value)
    records, summary = load_records([path], skip_invalid=True)
    assert [r.source for r in records] == [f"{path}:1", f"{path}:3"]
    assert [r.where for r in summary.rejected] == [f"{path}:2"]
