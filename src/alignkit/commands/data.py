"""`alignkit data inspect PATH...`: validate data files and print their statistics;
`alignkit data convert PATH... --to pair|point|multi -o OUT.jsonl`: write them in one shape."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any

from alignkit.data.config import ConvertConfig, InspectConfig
from alignkit.data.formats import as_kind, kind_of, record_row
from alignkit.data.inspect import format_report, inspect_records
from alignkit.data.loading import load_records
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_jsonl, atomic_write_text
from alignkit.options import add_config_verb, add_verb_group

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
    verbs = add_verb_group(
        subparsers,
        "data",
        help="check, describe and convert data files",
        description="Check data files, describe them and convert them.",
        metavar="SUBVERB",
    )
    add_config_verb(
        verbs,
        "inspect",
        InspectConfig,
        run_inspect,
        help="validate data files and print statistics",
        description=textwrap.fill(
            "Validate every record of the given files (all problems are listed with "
            "their file:line) and print counts, lengths, labels and duplicates. Exit code 0 "
            "when the data is valid, 2 when it is not.",
            _WIDTH,
        ),
        epilog=_HF_EPILOG,
        show_defaults=False,
    )
    add_config_verb(
        verbs,
        "convert",
        ConvertConfig,
        run_convert,
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
        show_defaults=False,
    )


def run_inspect(args: InspectConfig) -> int:
    if args.json:
        _check_folder(args.json)  # before reading: a typo in the path fails fast
    rejected = rejected_path(args.json) if args.json and args.skip_invalid else None
    records, summary = load_records(
        args.paths, args.format, args.max_errors, args.skip_invalid, rejected_path=rejected
    )
    tokenizer = None
    if args.tokenizer:
        from alignkit.models import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
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


def run_convert(args: ConvertConfig) -> int:
    _check_folder(args.output)
    columns = {
        field: name
        for field, name in (
            ("prompt", args.prompt_column),
            ("response", args.response_column),
            ("rating", args.rating_column),
        )
        if name != field
    }
    if columns and args.format != "ratings":
        raise AlignkitError(
            "--prompt-column, --response-column and --rating-column need --format ratings"
        )
    stem = args.output[: -len(".jsonl")] if args.output.endswith(".jsonl") else args.output
    rejected = stem + ".rejected.jsonl" if args.skip_invalid else None
    records, summary = load_records(
        args.paths,
        args.format,
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
    atomic_write_jsonl(args.output, (record_row(record) for record in shaped))
    read = ", ".join(f"{name}: {n}" for name, n in summary.counts.items())
    print(f"wrote {len(shaped)} {kind} record(s) to {args.output} (read {read})")
    if rejected is not None and summary.rejected:
        print(f"dropped {len(summary.rejected)} invalid record(s), listed in {rejected}")
    return 0
