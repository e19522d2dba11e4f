"""`alignkit data inspect PATH...`: validate data files and print their statistics;
`alignkit data convert PATH... --to pair|point|multi -o OUT.jsonl`: write them in one shape."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from typing import Any

from alignkit.data.formats import FORMATS, KINDS, as_kind, kind_of, record_row
from alignkit.data.inspect import format_report, inspect_records
from alignkit.data.loading import load_records
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_jsonl, atomic_write_text
from alignkit.models import load_tokenizer

_FORMAT_HELP = (
    "format of the records (default: auto, detected per record from its fields): "
    "hh = {chosen, rejected} HH-RLHF transcripts; trl-pair = {prompt, chosen, rejected} "
    "or {chosen, rejected} chat lists; point = {prompt, completion, label}; "
    "demonstration = {prompt, completion} or {messages}; multi = {prompt, responses, scores}. "
    "Only when named: shp = Stanford Human Preferences comparisons {post_id, history, "
    "human_ref_A, human_ref_B, score_A, score_B}, the rows of a post become one multi record "
    "(its comments and their vote scores); ratings = {prompt, response, rating} -> points "
    "with the rating as real-valued label"
)
_PATHS_HELP = (
    ".jsonl, .json, .parquet file, a folder written by datasets' save_to_disk, or "
    "hf:NAME[:SUBSET][@SPLIT] (see below); several (of different formats) are read together"
)
_WIDTH = 88  # of the descriptions of verbs whose epilog is preformatted
_HF_EPILOG = """\
Hugging Face datasets: hf:NAME[:SUBSET][@SPLIT], read with datasets.load_dataset
  NAME    a Hub dataset id, or a local folder of data files (hf:/data/shp, hf:./ratings)
  SUBSET  a config name, else a folder of the dataset (data_dir); force one with
          config=X or data_dir=X
  SPLIT   train unless given (also :split=X); slices work: @train[:1000]
  e.g. hf:Anthropic/hh-rlhf:harmless-base@test, hf:stanfordnlp/SHP@validation
Without network the datasets cache is used (HF_HUB_OFFLINE=1 skips the retries).
Records are located as hf:NAME[:SUBSET][SPLIT][record N].
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check, describe and convert data files",
        description="Check data files, describe them and convert them.",
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    verbs = parser.add_subparsers(dest="data_command", metavar="SUBVERB")
    inspect = verbs.add_parser(
        "inspect",
        help="validate data files and print statistics",
        description=textwrap.fill(
            "Validate every record of the given files (all problems are listed with "
            "their file:line) and print counts, lengths, labels and duplicates. Exit code 0 "
            "when the data is valid, 2 when it is not.",
            _WIDTH,
        ),
        epilog=_HF_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("paths", nargs="+", metavar="PATH", help=_PATHS_HELP)
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
    _register_convert(verbs)


def _register_convert(verbs: Any) -> None:
    convert = verbs.add_parser(
        "convert",
        help="convert data to pair, point or multi records in a jsonl file",
        description=textwrap.fill(
            "Read data (any format, e.g. SHP comparisons with --format shp or a "
            "ratings file with --format ratings) and write it as jsonl of one kind: pair "
            "{prompt, chosen, rejected}, point {prompt, completion, label} or multi {prompt, "
            "responses, scores}; each row keeps its source (file:line) in 'source'. Pairs "
            "become points (chosen 1, rejected 0) or multi records (scores 1, 0).",
            _WIDTH,
        ),
        epilog="examples:\n"
        "  alignkit data convert hf:stanfordnlp/SHP --format shp --to multi -o shp.jsonl\n"
        "  alignkit data convert ratings.jsonl --format ratings --rating-column stars \\\n"
        "      -o points.jsonl\n\n" + _HF_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("paths", nargs="+", metavar="PATH", help=_PATHS_HELP)
    convert.add_argument(
        "-o", "--out", required=True, metavar="OUT.jsonl", help="the jsonl file to write"
    )
    convert.add_argument(
        "--to",
        choices=KINDS,
        help="the kind of records to write (default: the kind of the data, when it has one)",
    )
    convert.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), dest="fmt", help=_FORMAT_HELP
    )
    for field, default in (("prompt", "prompt"), ("response", "response"), ("rating", "rating")):
        convert.add_argument(
            f"--{field}-column",
            default=default,
            metavar="NAME",
            help=f"with --format ratings: the column that holds the {field} (default: {default})",
        )
    convert.add_argument(
        "--max-errors",
        type=int,
        default=20,
        metavar="N",
        help="list at most N invalid records (all are counted; default: 20)",
    )
    convert.add_argument(
        "--skip-invalid",
        action="store_true",
        help="drop invalid records instead of failing; they are listed with their location "
        "and reason in OUT.rejected.jsonl",
    )
    convert.set_defaults(func=run_convert)


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


def run_convert(args: argparse.Namespace) -> int:
    _check_folder(args.out)
    columns = {
        field: name
        for field, name in (
            ("prompt", args.prompt_column),
            ("response", args.response_column),
            ("rating", args.rating_column),
        )
        if name != field
    }
    if columns and args.fmt != "ratings":
        raise AlignkitError(
            "--prompt-column, --response-column and --rating-column need --format ratings"
        )
    stem = args.out[: -len(".jsonl")] if args.out.endswith(".jsonl") else args.out
    rejected = stem + ".rejected.jsonl" if args.skip_invalid else None
    records, summary = load_records(
        args.paths,
        args.fmt,
        args.max_errors,
        args.skip_invalid,
        rejected_path=rejected,
        columns=columns,
    )
    kinds = sorted({kind_of(record) for record in records})
    kind = args.to
    if kind is None:
        if len(kinds) != 1:
            raise AlignkitError(
                f"the data holds {' and '.join(kinds)} records; choose what to write with --to"
            )
        kind = kinds[0]
    shaped = as_kind(records, kind)
    atomic_write_jsonl(args.out, (record_row(record) for record in shaped))
    read = ", ".join(f"{name}: {n}" for name, n in summary.counts.items())
    print(f"wrote {len(shaped)} {kind} record(s) to {args.out} (read {read})")
    if rejected is not None and summary.rejected:
        print(f"dropped {len(summary.rejected)} invalid record(s), listed in {rejected}")
    return 0
