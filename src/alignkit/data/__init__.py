"""Data: read jsonl/json/parquet/`save_to_disk` files and `hf:` datasets, validate them and
build records."""

from alignkit.data.formats import (
    FORMATS,
    KINDS,
    as_kind,
    detect_format,
    kind_of,
    parse_row,
    record_row,
)
from alignkit.data.hub import is_hub_spec, parse_hub_spec
from alignkit.data.inspect import format_report, inspect_records
from alignkit.data.labels import (
    apply_label_options,
    as_scores,
    parse_high_quality_rule,
    parse_label_transform,
    point_label_variant,
)
from alignkit.data.loading import (
    REJECTED_FILE,
    InvalidDataError,
    iter_rows,
    load_records,
    source_exists,
    source_identity,
    write_rejected,
)
from alignkit.data.records import (
    LoadSummary,
    Message,
    Multi,
    Pair,
    Point,
    Prompt,
    Record,
    Rejected,
    pair_to_points,
)

__all__ = [
    "REJECTED_FILE",
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
    "Rejected",
    "apply_label_options",
    "as_kind",
    "as_scores",
    "detect_format",
    "format_report",
    "inspect_records",
    "is_hub_spec",
    "iter_rows",
    "kind_of",
    "load_records",
    "pair_to_points",
    "parse_high_quality_rule",
    "parse_hub_spec",
    "parse_label_transform",
    "parse_row",
    "point_label_variant",
    "record_row",
    "source_exists",
    "source_identity",
    "write_rejected",
]
