"""The README and the docs cannot rot: every `alignkit ...` command in their shell blocks
parses with the CLI's own parser, every `make` target exists, every relative link and anchor
resolves, and the quick start reads only files that are shipped. (The quick start itself runs
in test_readme_quickstart.py.)"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

from alignkit.cli import VERBS, build_parser

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "quickstart.py"
PAGES = [
    ROOT / "README.md",
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]


def _quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qs = _quickstart()


def commands(page: Path) -> list[tuple[str, list[str]]]:
    """(shell line, arguments after `alignkit`) of every alignkit command in `page`."""
    found = []
    for block in qs.code_blocks(page.read_text(encoding="utf-8")):
        for line in qs.logical_lines(block):
            argv = qs.alignkit_argv(line)
            if argv is not None:
                found.append((line, argv))
    return found


ALL_COMMANDS = [
    pytest.param(argv, id=f"{page.relative_to(ROOT)}: {line[:70]}")
    for page in PAGES
    for line, argv in commands(page)
]


def verb_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the (sub-)verb `argv` names, and the arguments after it."""
    parser = build_parser()
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not argv or argv[0] not in subs[0].choices:
            return parser, argv
        parser, argv = subs[0].choices[argv[0]], argv[1:]


def parse_error(argv: list[str]) -> str | None:
    """None if `alignkit ARGV` parses, else argparse's message. A command shortened with
    `...` is checked flag by flag: each `--flag` must be one of its verb's options."""
    if "..." in argv:
        parser, rest = verb_parser([a for a in argv if a != "..."])
        known = parser._option_string_actions
        unknown = [
            a.split("=")[0] for a in rest if a.startswith("-") and a.split("=")[0] not in known
        ]
        return f"unknown flags {unknown}" if unknown else None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return err.getvalue() or f"exit {exc.code}"
    return None


def test_the_pages_hold_commands():
    """The extraction finds the README's commands (a broken extractor would pass vacuously)."""
    readme = [argv[:2] for _, argv in commands(ROOT / "README.md")]
    assert ["data", "inspect"] in readme and ["train", "--method"] in readme
    assert len(ALL_COMMANDS) >= 25


@pytest.mark.parametrize("argv", ALL_COMMANDS)
def test_every_documented_command_parses(argv):
    if argv[0] in qs.PLANNED_VERBS and argv[0] not in VERBS:
        pytest.skip(f"alignkit {argv[0]} is planned, not yet in the CLI")
    assert parse_error(argv) is None, parse_error(argv)


def test_a_wrong_flag_or_choice_is_caught():
    assert parse_error(["train", "--method", "dpo", "--data", "x.jsonl"]) is None
    assert "--lerning-rate" in parse_error(["train", "--lerning-rate", "1e-4"])
    assert "invalid choice" in parse_error(["select", "real", "--strategy", "easiest"])
    assert "--nope" in parse_error(["train", "...", "--nope", "1"])
    assert parse_error(["train", "...", "--lr", "1"]) is None


def test_every_make_target_named_exists():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    for page in PAGES:
        named = set(re.findall(r"`make ([\w-]+)`", page.read_text(encoding="utf-8")))
        for block in qs.code_blocks(page.read_text(encoding="utf-8")):
            named |= set(re.findall(r"^make ([\w-]+)", block, re.MULTILINE))
        assert named <= targets, (page.name, named - targets)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_slug_matches_github():
    assert slug("The demo (`alignkit demo`)") == "the-demo-alignkit-demo"
    assert slug("Training methods (`train --method`)") == "training-methods-train---method"
    assert (
        slug("DEFT: the token-distribution reward R_Q") == "deft-the-token-distribution-reward-r_q"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    text = page.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]: (\S+)$", text, re.M)
    for link in links:
        if re.match(r"^[a-z]+:", link):
            continue  # http(s):, mailto:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{page.name}: no heading #{anchor} in {target.name}"


def test_quickstart_reads_shipped_files_only():
    block = qs.quickstart_block((ROOT / "README.md").read_text(encoding="utf-8"))
    lines = qs.logical_lines(block)
    assert any(qs.DATA_LINE.match(line) for line in lines)
    names = re.findall(r"\$D/([\w.-]+)", block)
    assert names and all((ROOT / "src" / "alignkit" / "demo_data" / n).is_file() for n in names)
    verbs = [argv[0] for line in lines if (argv := qs.alignkit_argv(line))]
    assert verbs[:5] == ["demo", "data", "select", "train", "eval"]
    assert "serve" in verbs and "export" in verbs


def test_tiny_mode_appends_flags_before_the_comment_and_the_ampersand(tmp_path):
    line = "alignkit serve --model runs/dpo --port 8000 &   # the server"
    assert qs.with_flags(line, ["--max-new-tokens", "8"]) == (
        "alignkit serve --model runs/dpo --port 8000 --max-new-tokens 8 &  # the server"
    )
    assert qs.tiny_flags(["select", "real", "--count", "128"]) == qs.TINY_FLAGS["select"]
    assert qs.tiny_flags(["env"]) == []
    block = "source .venv/bin/activate\nD=src/alignkit/demo_data\nalignkit train --data $D/a.jsonl \\\n  --max-steps 50\nalignkit serve --port 8000 &\ncurl http://127.0.0.1:8000/v1/models\n"
    out = qs.rewrite(block, tmp_path, 4321, tiny=True).splitlines()
    assert out[0].startswith("# left out")
    assert out[1] == f"D={tmp_path}"
    assert out[2] == "alignkit train --data $D/a.jsonl --max-steps 50 --max-steps 2"
    assert out[3] == "alignkit serve --port 4321 --max-new-tokens 8 &"
    assert out[4] == "curl http://127.0.0.1:4321/v1/models"


def test_planned_verbs_are_skipped_until_the_cli_has_them(tmp_path, monkeypatch):
    monkeypatch.setattr(qs, "PLANNED_VERBS", {"frobnicate"})
    out = qs.rewrite("alignkit frobnicate runs/x\n", tmp_path, 1, tiny=False)
    assert out.startswith("echo ") and "skipped" in out


def test_readme_is_short_and_free_of_changelog_asides():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    for aside in (
        r"\bissue \d+",
        r"the issue'?s?\b",
        r"since then",
        r"\b20\d\d-\d\d-\d\d\b",
        r"then defaults",
    ):
        assert not re.search(aside, text, re.IGNORECASE), aside
