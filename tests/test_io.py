"""`alignkit.io`: atomic writes; the one jsonl writer and reader (every file we write, we can
read: line separators inside strings, bad bytes, deep nesting)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import reads_fifo_promptly
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit import io
from alignkit.errors import AlignkitError, DataError
from alignkit.io import atomic_write_jsonl, iter_jsonl, jsonl_line, load_json, read_jsonl


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    """Outputs are written to a temporary file (mkstemp: mode 0600) and renamed; they end with
    the mode any other new file gets under the process umask."""
    import os

    from alignkit.io import atomic_write_text

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_text(tmp_path / "out.json", "{}")
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------ the jsonl writer and reader

# every character `str.splitlines()` breaks a line at, besides "\n" and "\r"
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r"]


@pytest.mark.parametrize("sep", SEPARATORS)
def test_a_jsonl_file_we_write_is_read_back_whatever_its_text_holds(tmp_path: Path, sep) -> None:
    rows = [{"prompt": "hi", "responses": [f"one{sep}two", "x y"]}, {"n": f"{sep}é"}]
    path = tmp_path / "out.jsonl"
    atomic_write_jsonl(path, rows)
    raw = path.read_bytes()
    assert raw.count(b"\n") == 2 and sep.encode() not in raw  # escaped, one line per row
    assert "é" in raw.decode("utf-8")  # still readable UTF-8, not \u00e9
    assert read_jsonl(path) == rows
    assert jsonl_line(rows[0]).endswith("\n") and json.loads(jsonl_line(rows[0])) == rows[0]


@pytest.mark.parametrize("sep", SEPARATORS)
def test_the_reader_splits_lines_on_newline_only(tmp_path: Path, sep) -> None:
    """A file written by another tool with the characters raw inside a string reads too."""
    row = {"a": f"x{sep}y"}
    path = tmp_path / "raw.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\r\n\n" + '{"b": 1}', encoding="utf-8")
    assert list(iter_jsonl(path)) == [(1, row), (3, {"b": 1})]


def test_the_reader_names_the_line_of_bad_bytes_and_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid UTF-8"):
        read_jsonl(path)
    path.write_bytes(b'{"a": 1}\n' + b"[" * 100_000 + b"\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON: nested too deeply"):
        read_jsonl(path)
    # a last line still being appended (cut, even inside a character) is left out
    path.write_bytes(b'{"a": 1}\n{"b": "\xc3')
    assert read_jsonl(path, allow_partial_last=True) == [{"a": 1}]
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        load_json(b"[" * 100_000)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.lists(
        st.sampled_from([b"[", b"{", b'"', b"\n", b"1", b"]", b"\xe2\x80\xa8", b"\xff", b"\r"]),
        max_size=60,
    ).map(b"".join)
    | st.integers(0, 50_000).map(lambda n: b'{"a": ' + b"[" * n)
)
def test_any_bytes_give_values_or_an_error_naming_the_file_and_line(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "any.jsonl"
    path.write_bytes(data)
    for partial in (False, True):
        try:
            values = list(iter_jsonl(path, allow_partial_last=partial))
        except DataError as exc:
            assert exc.where.startswith(f"{path}:") and exc.where.rsplit(":", 1)[1].isdigit()
        else:
            assert all(isinstance(number, int) for number, _ in values)
    path.unlink()
    with pytest.raises(AlignkitError, match="cannot read"):
        read_jsonl(path)


# ------------------------------------------------------------ what is not a regular file


def test_a_fifo_or_a_device_is_refused_not_read(tmp_path: Path) -> None:
    """C6: a FIFO named .jsonl would block forever, /dev/zero never ends: refused at once with
    the kind of file named (/dev/null stands for /dev/zero: the old reader read it to the
    end, which for /dev/zero never comes)."""
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe.jsonl: is a FIFO \(named pipe\), not a regular"):
        reads_fifo_promptly(fifo, lambda: read_jsonl(fifo))
    device = tmp_path / "zero.jsonl"
    device.symlink_to("/dev/null")
    with pytest.raises(DataError, match=r"zero.jsonl: is a character device, not a regular file"):
        read_jsonl(device)
    with pytest.raises(DataError, match="is a folder"):
        read_jsonl(tmp_path)
    with pytest.raises(AlignkitError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_a_line_over_the_bound_is_an_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    """C6: a line longer than MAX_LINE_BYTES (64 MiB; 1,000 bytes here) is never held whole:
    a DataError naming the file and line; the lines around it read as usual."""
    monkeypatch.setattr(io, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "long.jsonl"
    long_row = json.dumps({"text": "x" * 5000})
    path.write_text('{"a": 1}\n' + long_row + '\n{"b": 2}\n' + long_row, encoding="utf-8")
    seen = [(number, raw, ended) for number, raw, ended in io.iter_lines(path)]
    assert seen == [
        (1, b'{"a": 1}', True),
        (2, None, True),
        (3, b'{"b": 2}', True),
        (4, None, False),
    ]
    with pytest.raises(DataError, match=r"long.jsonl:2: the line is longer than 1,000 bytes"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n' + long_row, encoding="utf-8")  # being appended to
    assert read_jsonl(path, allow_partial_last=True) == [{"a": 1}]
    path.write_text("x" * 1000 + "\n", encoding="utf-8")  # exactly the bound: read
    with pytest.raises(DataError, match=r"long.jsonl:1: not valid JSON"):
        read_jsonl(path)
