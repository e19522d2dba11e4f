"""docs/methods.md has a section for every registered method, online method and selector.

The convention (stated at the top of docs/methods.md): a section starts with one anchor line
`<!-- KIND: NAME -->` per name it documents, directly above its heading (several anchors may
share a heading). KIND is a key of `REGISTRIES`: `objective` (the training methods,
`alignkit.objectives.registry.METHODS`), `online` (the online verbs,
`alignkit.online.config.ONLINE_METHODS`), `selector` (`alignkit.select.registry.SELECTORS`,
filled by importing every module of the package, so that selectors registered from other
layers, such as rm-margin, are in it), `acquisition` (the acquisition functions of active
learning in rounds, `alignkit.select.acquisition.ACQUISITIONS`). A new registry adds its KIND here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import alignkit

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
ANCHOR = re.compile(r"^<!-- ([a-z]+): (\S+) -->$")


def _objectives() -> set[str]:
    from alignkit.objectives.registry import METHODS

    return set(METHODS)


def _online() -> set[str]:
    from alignkit.online.config import ONLINE_METHODS

    return set(ONLINE_METHODS)


def _selectors() -> set[str]:
    for module in pkgutil.walk_packages(alignkit.__path__, "alignkit."):
        if not module.name.endswith("__main__"):  # importing __main__ would run the CLI
            importlib.import_module(module.name)  # modules that register selectors do it here
    from alignkit.select.registry import SELECTORS

    return set(SELECTORS)


def _acquisitions() -> set[str]:
    from alignkit.select.acquisition import ACQUISITIONS

    return set(ACQUISITIONS)


REGISTRIES: dict[str, Callable[[], set[str]]] = {
    "objective": _objectives,
    "online": _online,
    "selector": _selectors,
    "acquisition": _acquisitions,
}


def anchors(text: str) -> tuple[dict[str, set[str]], list[str]]:
    """(KIND -> the NAMEs anchored in `text`, problems): an anchor must be followed, after
    other anchors or blank lines only, by a markdown heading."""
    found: dict[str, set[str]] = {}
    problems = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        match = ANCHOR.match(line)
        if not match:
            continue
        kind, name = match.groups()
        found.setdefault(kind, set()).add(name)
        after = next(
            (rest for rest in lines[number:] if rest.strip() and not ANCHOR.match(rest)), ""
        )
        if not after.startswith("#"):
            problems.append(f"line {number}: {line} stands above no heading")
    return found, problems


def missing_sections(text: str) -> dict[str, list[str]]:
    """KIND -> the registered names `text` has no anchor for."""
    found, _ = anchors(text)
    missing = {kind: sorted(names() - found.get(kind, set())) for kind, names in REGISTRIES.items()}
    return {kind: names for kind, names in missing.items() if names}


def without_section(text: str, kind: str, name: str) -> str:
    """`text` with the section of `name` deleted: its anchor, its heading and its body, up to
    the next anchor or heading."""
    lines = text.splitlines()
    start = lines.index(f"<!-- {kind}: {name} -->")
    end = start + 1
    while end < len(lines) and ANCHOR.match(lines[end]):
        end += 1  # the other anchors of the same heading
    end += 1  # the heading
    while end < len(lines) and not (lines[end].startswith("#") or ANCHOR.match(lines[end])):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


def test_every_registered_name_has_a_section():
    missing = missing_sections(DOC.read_text(encoding="utf-8"))
    assert not missing, (
        f"docs/methods.md has no section for {missing}: add one, its first line "
        "`<!-- KIND: NAME -->` above its heading (see the top of docs/methods.md)"
    )


def test_every_anchor_names_a_registered_name_above_a_heading():
    found, problems = anchors(DOC.read_text(encoding="utf-8"))
    assert not problems
    assert set(found) <= set(REGISTRIES), f"unknown anchor kinds {set(found) - set(REGISTRIES)}"
    stale = {kind: sorted(names - REGISTRIES[kind]()) for kind, names in found.items()}
    assert not any(stale.values()), f"anchors of names nothing registers: {stale}"


def test_the_lazily_registered_selector_is_counted():
    assert "rm-margin" in _selectors()  # registered by alignkit.rewards.selection


@pytest.mark.parametrize(
    "kind, name", [("selector", "reward-gap"), ("online", "ppo"), ("objective", "dpo")]
)
def test_a_deleted_section_is_missing(kind, name):
    text = without_section(DOC.read_text(encoding="utf-8"), kind, name)
    assert missing_sections(text) == {kind: [name]}


def test_a_deleted_anchor_of_a_shared_section_is_missing():
    text = DOC.read_text(encoding="utf-8").replace("<!-- objective: positive-dpo -->\n", "")
    assert missing_sections(text) == {"objective": ["positive-dpo"]}


def test_an_anchor_without_a_heading_is_a_problem():
    _, problems = anchors("<!-- selector: random -->\nsome text\n## random\n")
    assert problems == ["line 1: <!-- selector: random --> stands above no heading"]
    _, problems = anchors("<!-- objective: sft -->\n<!-- objective: dpo -->\n\n## SFT\n")
    assert problems == []
