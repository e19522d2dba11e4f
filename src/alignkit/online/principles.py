"""Principle prompts (PLE): the text `p` that guides the second response `y_p ~ pi(.|[p, x])`.

Built-in principles live in `alignkit/principles/<name>.txt` (sources in the README there):
`hh` (the PLE paper's principle, sec. 4.1: ethical, informative, helpful; the default),
`imdb` and `tldr` (the paper's appendix A.3 prompts, verbatim), `general` (alignkit's own
wording of the HH rules). `--principle` takes one of those names or the path of a text file.

Two ways to put `p` in front of `x`:
- `prefix` (the default; the paper's `[p, x]`, p concatenated before the query): `p` and a
  blank line are prepended to the query text, or, for a chat prompt, to its first user
  message, so `p` comes before the whole dialogue history `x` (the paper's HH `x`). Works for
  plain-text and chat models, and for chat templates without a system role.
- `system`: `p` becomes a system message before the conversation (chat models only). An
  existing leading system message keeps its text after `p`. Not the paper's form.
The policy is always trained on `x` without `p`; `p` only shapes the sampled `y_p`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from alignkit.data.records import Message, Prompt
from alignkit.errors import AlignkitError

PrincipleMode = Literal["system", "prefix"]
MODES: tuple[str, ...] = ("system", "prefix")
SEPARATOR = "\n\n"


def builtin_principles() -> dict[str, str]:
    """Name -> text of every principle shipped with alignkit."""
    folder = resources.files("alignkit") / "principles"
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".txt"):
            found[entry.name[: -len(".txt")]] = entry.read_text(encoding="utf-8").strip()
    return dict(sorted(found.items()))


def load_principle(spec: str) -> str:
    """The principle text of a built-in name or a text file (surrounding blanks removed)."""
    builtin = builtin_principles()
    if spec in builtin:
        return builtin[spec]
    path = Path(spec)
    if not path.is_file():
        raise AlignkitError(
            f"--principle {spec!r} is neither a built-in principle "
            f"({', '.join(builtin)}) nor a text file"
        )
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise AlignkitError(f"principle file {spec} is empty")
    return text


def _prefixed(content: str, principle: str) -> str:
    return principle + SEPARATOR + content


def _with_system(messages: tuple[Message, ...], principle: str) -> tuple[Message, ...]:
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": _prefixed(messages[0]["content"], principle)}
        return (first, *messages[1:])
    return ({"role": "system", "content": principle}, *messages)


def _with_prefix(messages: tuple[Message, ...], principle: str) -> tuple[Message, ...]:
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise AlignkitError("a chat query without a user message cannot take a prefix principle")
    first = users[0]  # [p, x]: p before the whole dialogue, not only its last turn
    changed = {"role": "user", "content": _prefixed(messages[first]["content"], principle)}
    return (*messages[:first], changed, *messages[first + 1 :])


def apply_principle(query: Prompt, principle: str, mode: PrincipleMode) -> Prompt:
    """The principle-guided prompt [p, x] for the query x."""
    if mode == "prefix":
        if isinstance(query, str):
            return _prefixed(query, principle)
        return _with_prefix(query, principle)
    if mode == "system":
        if isinstance(query, str):
            raise AlignkitError(
                "--principle-mode system needs chat queries (a model with a chat template and "
                "--chat); use --principle-mode prefix for plain-text prompts"
            )
        return _with_system(query, principle)
    raise AlignkitError(f"--principle-mode must be one of {', '.join(MODES)}, got {mode!r}")
