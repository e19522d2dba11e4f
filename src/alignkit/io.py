"""Reading and writing files: outputs go to a temporary file and are renamed (never
half-written); jsonl files are read by one reader that names the bad line."""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line (`jsonl_line`), atomically."""
    atomic_write_text(path, "".join(jsonl_line(row) for row in rows))


def iter_jsonl(path: str | Path, *, allow_partial_last: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield `(line number, value)` of every non-blank line of a jsonl file.

    Lines are split on "\\n" only (a U+2028 inside a string is not a line break) and decoded
    one by one; a leading UTF-8 byte-order mark is ignored. A missing or unreadable file
    raises `AlignkitError`; a line that is not UTF-8 or not valid JSON (nested too deeply
    included) raises `DataError("path:line", ...)`, except a last line without its newline
    when `allow_partial_last` (a file another process is still appending to), which is skipped.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AlignkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the file's last newline ends a line; it does not start one
    for number, raw in enumerate(lines, 1):
        partial = allow_partial_last and number == len(lines) and not data.endswith(b"\n")
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
