"""Reading and writing files: outputs go to a temporary file and are renamed (never
half-written); jsonl files are read by one reader that names the bad line.

Every data file is opened by `open_regular`, which refuses what is not a regular file once
symlinks are followed (a FIFO would block forever, /dev/zero never ends), and split into lines
by `iter_lines`, which never holds more than `MAX_LINE_BYTES` of one line.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from alignkit.errors import AlignkitError, DataError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once (setting it back at once)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary path in `path`'s directory, then rename it to `path`.

    `write` may produce the file any way it likes (text, `torch.save`, a PNG); on any error
    the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory + os.replace."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# json.dumps(ensure_ascii=False) leaves these three raw; `str.splitlines()` (and some editors
# and tools) break a line at them, so every jsonl line is written with them escaped
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def jsonl_line(row: Any, **dumps: Any) -> str:
    """`row` as one jsonl line (with its "\\n"): readable UTF-8 (`ensure_ascii=False`), with
    U+0085, U+2028 and U+2029 escaped so that no reader splits the line at them. `dumps` go
    to `json.dumps` (e.g. `default=str`). Every jsonl file alignkit writes uses this."""
    return json.dumps(row, ensure_ascii=False, **dumps).translate(_LINE_BREAKS) + "\n"


def load_json(text: str | bytes) -> Any:
    """`json.loads`, with nesting too deep for the parser (`RecursionError`) reported as a
    `json.JSONDecodeError` like any other invalid JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        doc = text if isinstance(text, str) else ""
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None


MAX_LINE_BYTES = 64 << 20  # a jsonl line (one record) longer than 64 MiB is refused

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading in binary. Raises `AlignkitError` when it cannot be opened
    and `DataError(path, ...)` when it is not a regular file once symlinks are followed: a
    FIFO (opened without blocking, so this check never waits for a writer), a device such as
    /dev/zero, a socket or a folder."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise AlignkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise DataError(
            str(path),
            f"is {kind}, not a regular file",
            "alignkit reads data from regular files: save the data to a file first",
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def long_line_error(path: str | Path, number: int) -> DataError:
    """The error of a line longer than `MAX_LINE_BYTES` (`iter_lines` yields None for it)."""
    return DataError(
        f"{path}:{number}",
        f"the line is longer than {MAX_LINE_BYTES:,} bytes",
        "one record per line: is this a jsonl file?",
    )


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes | None, bool]]:
    """`(line number, line without its "\\n", whether a "\\n" ended it)` of every line of
    `path` (`open_regular`), split on b"\\n" only, a leading UTF-8 byte-order mark removed. A
    line longer than `MAX_LINE_BYTES` is read past in pieces and yielded as None (the caller
    raises `long_line_error` or skips it): memory never holds more of one line."""
    with open_regular(path) as handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            ended = raw.endswith(b"\n")
            if not ended and len(raw) > MAX_LINE_BYTES:
                while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield number, None, bool(rest)
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            yield number, raw[:-1] if ended else raw, ended


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line (`jsonl_line`), atomically."""
    atomic_write_text(path, "".join(jsonl_line(row) for row in rows))


def iter_jsonl(path: str | Path, *, allow_partial_last: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield `(line number, value)` of every non-blank line of a jsonl file.

    Lines are split on "\\n" only (a U+2028 inside a string is not a line break) and decoded
    one by one (`iter_lines`); a leading UTF-8 byte-order mark is ignored. A missing or
    unreadable file raises `AlignkitError`, one that is not a regular file `DataError(path)`;
    a line that is not UTF-8, not valid JSON (nested too deeply included) or longer than
    `MAX_LINE_BYTES` raises `DataError("path:line", ...)`, except a last line without its
    newline when `allow_partial_last` (a file another process is still appending to), which
    is skipped.
    """
    for number, raw, ended in iter_lines(path):
        partial = allow_partial_last and not ended
        if raw is None:
            if partial:
                return
            raise long_line_error(path, number)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if partial:
                return
            raise DataError(
                f"{path}:{number}",
                f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                "save the file as UTF-8",
            ) from exc
        if not line.strip():
            continue
        try:
            value = load_json(line)
        except json.JSONDecodeError as exc:
            if partial:
                return
            raise DataError(f"{path}:{number}", f"not valid JSON: {exc.msg}") from exc
        yield number, value


def read_jsonl(path: str | Path, *, allow_partial_last: bool = False) -> list[Any]:
    """The values of every non-blank line of a jsonl file (see `iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path, allow_partial_last=allow_partial_last)]
