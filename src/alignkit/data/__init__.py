"""Data: read jsonl/json/parquet/`save_to_disk` files, validate them and build records."""

from alignkit.data.formats import (
    FORMATS,
    KINDS,
    as_kind,
    detect_format,
    kind_of,
    parse_row,
)
from alignkit.data.inspect import format_report, inspect_records
from alignkit.data.loading import InvalidDataError, iter_rows, load_records
from alignkit.data.records import (
    LoadSummary,
    Message,
    Multi,
    Pair,
    Point,
    Prompt,
    Record,
    pair_to_points,
)

__all__ = [
    "FORMATS",
    "KINDS",
    "InvalidDataError",
    "LoadSummary",
    "Message",
    "Multi",
    "Pair",
    "Point",
    "Prompt",
    "Record",
    "as_kind",
    "detect_format",
    "format_report",
    "inspect_records",
    "iter_rows",
    "kind_of",
    "load_records",
    "pair_to_points",
    "parse_row",
]
