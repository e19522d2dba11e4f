"""The command line itself: verbs are parsed lazily (no torch to build the parser or print
`--help` of a verb whose options are torch-free), the verb table matches the verbs, and the
option machinery of `alignkit.options` (positional, required, one-of, switches, --config)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from typing import Literal

import pytest

from alignkit.errors import AlignkitError
from alignkit.options import add_config_verb, build_config, opt


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_building_the_parser_imports_no_torch():
    loaded = _modules_after("import alignkit.cli; alignkit.cli.build_parser()")
    assert not {"torch", "transformers"} & loaded


@pytest.mark.parametrize(
    "verb",
    [
        ["data", "inspect"],
        ["data", "convert"],
        ["demo"],
        ["judge"],
        ["serve"],
        ["compare"],
        ["study"],
        ["eval"],
        ["train-rm"],
        ["generate"],
        ["label", "select"],
        ["label", "export"],
        ["label", "import"],
        ["label", "auto"],
        ["label", "serve"],
        ["train"],
        ["select"],
        ["select", "random"],
        ["select", "deft"],
        ["select", "real"],
        ["select", "reward-gap"],
        ["select", "rm-margin"],
        ["select", "perplexity"],
        ["select", "length"],
        ["ple"],
        ["raft"],
        ["rrhf-online"],
        ["rloo"],
        ["ppo"],
        ["env"],
    ],
)
def test_help_of_these_verbs_imports_no_torch(verb):
    code = (
        "import contextlib, io, alignkit.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    alignkit.cli.main({[*verb, '--help']!r})"
    )
    loaded = _modules_after(code)
    assert not {"torch", "transformers", "matplotlib", "peft", "accelerate"} & loaded


def test_the_verb_table_is_what_the_modules_register():
    """`cli.VERBS` (the one-line helps of `alignkit --help`) against each module's parser."""
    import importlib

    from alignkit.cli import VERBS

    sub = argparse.ArgumentParser().add_subparsers()
    for module in dict.fromkeys(m for m, _ in VERBS.values()):
        importlib.import_module(f"alignkit.commands.{module}").register(sub)
    registered = {a.dest: a.help for a in sub._choices_actions}
    assert registered == {verb: help for verb, (_, help) in VERBS.items()}


def test_only_the_verb_given_is_built(capsys):
    from alignkit.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert "serve" in sub.choices and dict.__len__(sub.choices) == 0
    args = parser.parse_args(["compare", "r1", "--output", "o"])
    assert set(dict.keys(sub.choices)) == {"compare"}
    assert args.runs == ["r1"] and args.output == "o"
    with pytest.raises(SystemExit):
        parser.parse_args(["nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@dataclasses.dataclass
class Example:
    paths: list[str] = opt([], "inputs", metavar="PATH", positional=True, required=True)
    out: str | None = opt(None, "output", flags=("-o", "--out"), required=True)
    a: str | None = opt(None, "first mode", one_of="mode")
    b: str | None = opt(None, "second mode", one_of="mode")
    strict: bool = opt(False, "a switch", negatable=False)
    kind: Literal["x", "y"] = opt("x", "a choice", group="more")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_config_verb(parser.add_subparsers(), "v", Example, lambda c: 0, help="h", description="d")
    return parser


def test_config_verb_flags(tmp_path):
    parser = _parser()
    args = parser.parse_args(["v", "f1", "f2", "-o", "out", "--a", "1", "--strict"])
    config = build_config(Example, args, args.config)
    assert (config.paths, config.out, config.a, config.strict, config.kind) == (
        ["f1", "f2"], "out", "1", True, "x",
    )  # fmt: skip
    for missing in (["v", "f1", "--a", "1"], ["v", "-o", "o", "--a", "1"], ["v", "f", "-o", "o"]):
        with pytest.raises(SystemExit):  # argparse insists without --config
            parser.parse_args(missing)
    with pytest.raises(SystemExit):
        parser.parse_args(["v", "--no-strict"])  # a plain switch has no --no- form
    help_text = parser._subparsers._group_actions[0].choices["v"].format_help()
    assert "more:\n  --kind {x,y}" in help_text and "--config YAML" in help_text


def test_required_options_may_come_from_the_config_file(tmp_path):
    parser = _parser()
    yaml = tmp_path / "c.yaml"
    yaml.write_text("paths: [f1]\nout: o\nb: 'two'\n")
    args = parser.parse_args(["v", "--config", str(yaml), "--strict"])
    config = build_config(Example, args, args.config)
    assert (config.paths, config.out, config.b, config.strict) == (["f1"], "o", "two", True)
    yaml.write_text("paths: [f1]\nb: 2\n")
    args = parser.parse_args(["v", "--config", str(yaml), "--a", "1"])
    with pytest.raises(AlignkitError, match="--out is required"):
        build_config(Example, args, args.config)
    yaml.write_text("paths: [f1]\nout: o\nb: 'two'\n")
    with pytest.raises(AlignkitError, match="exactly one of --a, --b"):
        build_config(Example, args, args.config)
    # the parser insists again once --config is gone
    with pytest.raises(SystemExit):
        parser.parse_args(["v", "--a", "1"])
