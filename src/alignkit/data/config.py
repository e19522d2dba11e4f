"""The option group `DataOptions` (the data a verb reads: --data, --data-format,
--skip-invalid), and the options of `alignkit data inspect` and `alignkit data convert`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.data.formats import FORMATS, KINDS, DataFormat
from alignkit.options import opt


def skip_invalid_option(rejected: str, negatable: bool = True) -> Any:
    """The --skip-invalid field; `rejected`: the file the dropped records are listed in."""
    return opt(
        False,
        "drop invalid records instead of stopping; they are counted by reason and listed "
        f"with their file:line and reason in {rejected}",
        negatable=negatable,
    )


@dataclass(kw_only=True)  # keyword-only: verbs keep their positional order
class DataOptions:
    """The data files a verb reads: --data, --data-format, --skip-invalid. (Prompt files are
    not preference data: `generate` reads --prompts and the online verbs --queries.)"""

    data: list[str] = opt(
        [],
        "data files (jsonl/json/parquet/save_to_disk dirs, hf:NAME); several allowed",
        metavar="PATH",
    )
    data_format: DataFormat = opt("auto", "format of the data files")
    skip_invalid: bool = skip_invalid_option("OUTPUT/rejected.jsonl")


FORMAT_HELP = (
    "format of the records (default: auto, detected per record from its fields): "
    "hh = {chosen, rejected} HH-RLHF transcripts; trl-pair = {prompt, chosen, rejected} "
    "or {chosen, rejected} chat lists; point = {prompt, completion, label}; "
    "demonstration = {prompt, completion} or {messages}; multi = {prompt, responses, scores}. "
    "Only when named: shp = Stanford Human Preferences comparisons {post_id, history, "
    "human_ref_A, human_ref_B, score_A, score_B}, the rows of a post become one multi record "
    "(its comments and their vote scores); ratings = {prompt, response, rating} -> points "
    "with the rating as real-valued label"
)
PATHS_HELP = (
    ".jsonl, .json, .parquet file, a folder written by datasets' save_to_disk, or "
    "hf:NAME[:SUBSET][@SPLIT] (see below); several (of different formats) are read together"
)
MAX_ERRORS_HELP = "list at most N invalid records (all are counted; default: 20)"


@dataclass
class InspectConfig:
    """Options of `alignkit data inspect`."""

    paths: list[str] = opt([], PATHS_HELP, metavar="PATH", positional=True, required=True)
    format: str = opt("auto", FORMAT_HELP, choices=("auto", *FORMATS))
    tokenizer: str | None = opt(
        None,
        "also report lengths in tokens of this tokenizer (a local folder, a Hugging Face "
        "model id, or 'default' for the embedded model); off by default",
        metavar="MODEL_OR_PATH",
    )
    json: str | None = opt(None, "also write the statistics to this JSON file", metavar="OUT.json")
    max_errors: int = opt(20, MAX_ERRORS_HELP, metavar="N")
    skip_invalid: bool = opt(
        False,
        "drop invalid records instead of failing: the statistics describe the valid "
        "ones, the dropped records are counted by reason (and, with --json OUT.json, listed "
        "with their file:line in OUT.rejected.jsonl); exit code 2 only when none is valid",
        negatable=False,
    )


def _column_help(field: str) -> str:
    return f"with --format ratings: the column that holds the {field} (default: {field})"


@dataclass
class ConvertConfig:
    """Options of `alignkit data convert`."""

    paths: list[str] = opt([], PATHS_HELP, metavar="PATH", positional=True, required=True)
    output: str | None = opt(
        None,
        "the jsonl file to write",
        metavar="OUT.jsonl",
        flags=("-o", "--output"),
        aliases=("--out",),
        required=True,
    )
    to: str | None = opt(
        None,
        "the kind of records to write (default: the kind of the data, when it has one)",
        choices=KINDS,
    )
    format: str = opt("auto", FORMAT_HELP, choices=("auto", *FORMATS))
    prompt_column: str = opt("prompt", _column_help("prompt"), metavar="NAME")
    response_column: str = opt("response", _column_help("response"), metavar="NAME")
    rating_column: str = opt("rating", _column_help("rating"), metavar="NAME")
    max_errors: int = opt(20, MAX_ERRORS_HELP, metavar="N")
    skip_invalid: bool = opt(
        False,
        "drop invalid records instead of failing; they are listed with their location "
        "and reason in OUT.rejected.jsonl",
        negatable=False,
    )
