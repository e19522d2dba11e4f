"""Reading and writing files: outputs go to a temporary file and are renamed (never
half-written); jsonl files are read by one reader that names the bad line."""

from __future__ import annotations

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


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def iter_jsonl(path: str | Path, *, allow_partial_last: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield `(line number, value)` of every non-blank line of a jsonl file.

    A missing or unreadable file raises `AlignkitError`; a line that is not valid JSON raises
    `DataError("path:line", ...)`, except a last line without its newline when
    `allow_partial_last` (a file another process is still appending to), which is skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AlignkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if allow_partial_last and number == len(lines) and not text.endswith("\n"):
                return
            raise DataError(f"{path}:{number}", f"not valid JSON: {exc.msg}") from exc
        yield number, value


def read_jsonl(path: str | Path, *, allow_partial_last: bool = False) -> list[Any]:
    """The values of every non-blank line of a jsonl file (see `iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path, allow_partial_last=allow_partial_last)]
