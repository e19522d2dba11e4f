"""`alignkit data inspect PATH...`: validate data files and print their statistics."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from alignkit.data.formats import FORMATS
from alignkit.data.inspect import format_report, inspect_records
from alignkit.data.loading import load_records
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text
from alignkit.models import load_tokenizer

_FORMAT_HELP = (
    "format of the records (default: auto, detected per record from its fields): "
    "hh = {chosen, rejected} HH-RLHF transcripts; trl-pair = {prompt, chosen, rejected} "
    "or {chosen, rejected} chat lists; point = {prompt, completion, label}; "
    "demonstration = {prompt, completion} or {messages}; multi = {prompt, responses, scores}"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check and describe data files",
        description="Check data files and describe them.",
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    verbs = parser.add_subparsers(dest="data_command", metavar="SUBVERB")
    inspect = verbs.add_parser(
        "inspect",
        help="validate data files and print statistics",
        description="Validate every record of the given files (all problems are listed with "
        "their file:line) and print counts, lengths, labels and duplicates. Exit code 0 "
        "when the data is valid, 2 when it is not.",
    )
    inspect.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help=".jsonl, .json, .parquet file or a folder written by datasets' save_to_disk; "
        "several files (of different formats) are inspected together",
    )
    inspect.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), dest="fmt", help=_FORMAT_HELP
    )
    inspect.add_argument(
        "--tokenizer",
        metavar="MODEL_OR_PATH",
        help="also report lengths in tokens of this tokenizer (a local folder, a Hugging Face "
        "model id, or 'default' for the embedded model); off by default",
    )
    inspect.add_argument(
        "--json", metavar="OUT.json", help="also write the statistics to this JSON file"
    )
    inspect.add_argument(
        "--max-errors",
        type=int,
        default=20,
        metavar="N",
        help="list at most N invalid records (all are counted; default: 20)",
    )
    inspect.add_argument(
        "--skip-invalid",
        action="store_true",
        help="drop invalid records instead of failing: the statistics describe the valid "
        "ones, the dropped records are counted by reason (and, with --json OUT.json, listed "
        "with their file:line in OUT.rejected.jsonl); exit code 2 only when none is valid",
    )
    inspect.set_defaults(func=run_inspect)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_inspect(args: argparse.Namespace) -> int:
    if args.json:
        _check_folder(args.json)  # before reading: a typo in the path fails fast
    rejected = rejected_path(args.json) if args.json and args.skip_invalid else None
    records, summary = load_records(
        args.paths, args.fmt, args.max_errors, args.skip_invalid, rejected_path=rejected
    )
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    stats = inspect_records(records, summary, tokenizer)
    if rejected is not None:
        stats["rejected"]["file"] = str(rejected)
    print(format_report(stats))
    if args.json:
        write_json_atomic(args.json, stats)
        print(f"statistics written to {args.json}")
        if rejected is not None and summary.rejected:
            print(f"invalid records listed in {rejected}")
    return 0


def rejected_path(json_path: str) -> str:
    """OUT.json -> OUT.rejected.jsonl (next to the statistics)."""
    stem = json_path[: -len(".json")] if json_path.endswith(".json") else json_path
    return stem + ".rejected.jsonl"


def _check_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise AlignkitError(f"cannot write {path}: folder {folder} does not exist")


def write_json_atomic(path: str, data: Any) -> None:
    """Write `data` as JSON so that `path` is either the old file or the complete new one."""
    _check_folder(path)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
