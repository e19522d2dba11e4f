"""Errors a user can fix. The CLI turns them into a message and exit code 2."""

from __future__ import annotations


class AlignkitError(Exception):
    """Bad input or usage: the message says what is wrong and how to fix it."""


class DataError(AlignkitError):
    """A record of a data file is invalid.

    `where` is "path:line" for jsonl files and "path[record N]" for other formats.
    """

    def __init__(self, where: str, message: str, hint: str = "") -> None:
        self.where = where
        self.message = message
        self.hint = hint
        text = f"{where}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
