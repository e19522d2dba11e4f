"""docs/security.md: every probe of the security review keeps a row, and every test a row
names exists (a module-level `def test_...` in that file), so the table cannot go stale."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
# the review's failures and notes (shared/reviews/security.md), and the item 5
PROBES = {
    *("A4", "A6", "A9", "A10", "A13", "A14", "A15", "A16"),
    *("B4", "B5", "B7", "B8", "B9", "B10", "B11"),
    *("C1", "C3", "C6", "C7", "C8"),
    *("D1", "D2", "issue 19.5"),
}
ROW = re.compile(r"^\| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|$")
TEST = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def table(text: str) -> dict[str, list[tuple[str, str]]]:
    """probe id -> the (file, test name) pairs its row names (rows of the table only)."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match and match.group(1) not in ("probe", "---"):
            assert match.group(1) not in rows, f"two rows for {match.group(1)}"
            rows[match.group(1)] = TEST.findall(match.group(2))
    return rows


def defined_tests(path: Path) -> set[str]:
    """Names of the module-level functions of a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def stale(rows: dict[str, list[tuple[str, str]]]) -> list[str]:
    """`probe: file::name` of every named test that does not exist, and of rows naming none."""
    found = []
    for probe, tests in rows.items():
        if not tests:
            found.append(f"{probe}: no test named as `tests/PATH.py::test_NAME`")
        for file, name in tests:
            path = ROOT / file
            if not path.is_file() or name not in defined_tests(path):
                found.append(f"{probe}: {file}::{name}")
    return found


def test_every_probe_has_a_row_naming_tests_that_exist() -> None:
    rows = table(DOC.read_text(encoding="utf-8"))
    assert set(rows) == PROBES
    assert stale(rows) == []


def test_the_checker_finds_a_stale_row() -> None:
    this = "tests/test_security_review.py"
    text = (
        "| probe | test | fix |\n|---|---|---|\n"
        f"| A4 | `{this}::test_the_checker_finds_a_stale_row`, `tests/nowhere.py::test_gone`"
        f", `{this}::test_renamed` | a fix |\n"
        "| A9 | none yet | a fix |\n"
    )
    rows = table(text)
    assert list(rows) == ["A4", "A9"] and len(rows["A4"]) == 3
    assert stale(rows) == [
        "A4: tests/nowhere.py::test_gone",
        f"A4: {this}::test_renamed",
        "A9: no test named as `tests/PATH.py::test_NAME`",
    ]
