"""`alignkit VERB ...`: the command-line interface.

Each verb lives in `alignkit.commands.<module>` and exposes `register(subparsers)`, which adds
its parser and sets `func=run` where `run(args) -> int` returns the exit code.
Exit codes: 0 ok, 2 bad input or usage (an `AlignkitError`), 1 internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from alignkit import __version__
from alignkit.commands import (
    compare,
    data,
    demo,
    env,
    generate,
    judge,
    label,
    online,
    select,
    serve,
    study,
    train,
    train_rm,
)
from alignkit.commands import eval as evaluate
from alignkit.errors import AlignkitError

# in the order of `alignkit --help`
COMMANDS = [
    train,
    data,
    demo,
    select,
    study,
    generate,
    label,
    evaluate,
    train_rm,
    judge,
    serve,
    compare,
    online,
    env,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignkit",
        description="Data-efficient preference alignment of language models "
        "(DEFT, ULMA, PLE, REAL and their baselines).",
    )
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="VERB")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignkit: interrupted", file=sys.stderr)
        return 130
