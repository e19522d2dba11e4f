"""Read data files into validated records: `iter_rows` (one file) and `load_records` (many).

`iter_rows` reads jsonl, json (a list, or {"data": [...]}), parquet, a
`datasets.save_to_disk` folder, or `hf:NAME[:SUBSET][@SPLIT]`: a Hugging Face Hub dataset or
a local folder of data files read with `datasets.load_dataset` (`alignkit.data.hub`). Every
row comes with a `where` string that error messages use: "path:LINE" (1-based) for jsonl,
"path[record N]" (0-based) for files and folders, "hf:NAME[SPLIT][record N]" for `hf:` data.
Rows are passed on as they are (even when not objects): `alignkit.data.formats` judges them.

A folder saved from a `DatasetDict` is refused unless it holds exactly one split: silently
training on "train" while a "test" split sits next to it would be a surprise, and
`PATH/<split>` is itself a loadable folder, so the error names those paths.

`load_records` reads every file to the end and reports all problems at once. Format `shp`
is read per file: the comparisons of one post (rows with the same post_id) become one
`multi` record (`formats.ShpPosts`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from alignkit.data import hub
from alignkit.data.formats import (
    ShpPosts,
    check_binary_label,
    check_format_name,
    kind_of,
    parse_named,
    shp_comparison,
)
from alignkit.data.records import LoadSummary, Point, Record, Rejected
from alignkit.errors import AlignkitError, DataError
from alignkit.io import atomic_write_text, iter_lines, load_json, long_line_error, open_regular

log = logging.getLogger(__name__)

# where the verbs that write a run or output directory list the records --skip-invalid dropped
REJECTED_FILE = "rejected.jsonl"
SUPPORTED = (
    ".jsonl",
    ".json",
    ".parquet",
    "a folder written by datasets' save_to_disk",
    f"{hub.SYNTAX} (a Hugging Face dataset, or hf:FOLDER of data files)",
)
_PARQUET_BATCH_ROWS = 1024


def iter_rows(path: str, errors: list[DataError] | None = None) -> Iterator[tuple[str, Any]]:
    """Yield `(where, row)` for every record of `path`.

    Raises `DataError` for a missing or unreadable file or an unknown extension. A jsonl line
    that is not valid JSON raises too, unless `errors` is given: then the error is appended
    to it and reading goes on with the next line (so a caller can report all bad lines).
    `hf:` data is read with `datasets.load_dataset` (`alignkit.data.hub`); a failure to load
    it (no network and not cached, no such dataset or split) is a `DataError` too.
    """
    if hub.is_hub_spec(path):
        yield from hub.iter_hub_rows(path)
        return
    if not os.path.exists(path):
        raise DataError(
            path, "no such file or directory", "check the path and the working directory"
        )
    if os.path.isdir(path):
        yield from _iter_saved_dataset(path)
        return
    open_regular(path).close()  # a FIFO or a device (`--data /dev/zero`) is refused
    if path.endswith(".jsonl"):
        yield from _iter_jsonl(path, errors)
    elif path.endswith(".json"):
        yield from _iter_json(path)
    elif path.endswith(".parquet"):
        yield from _iter_parquet(path)
    else:
        raise DataError(path, "unknown file type", "supported: " + ", ".join(SUPPORTED))


def _iter_jsonl(path: str, errors: list[DataError] | None) -> Iterator[tuple[str, Any]]:
    # Lines are split on b"\n" only and decoded one by one (`io.iter_lines`): a U+2028 inside
    # a string is not a line break, a leading UTF-8 byte-order mark is ignored, and a line
    # that is not UTF-8, or longer than `io.MAX_LINE_BYTES`, is one bad record, not a crash
    # (nor gigabytes of memory) of the whole file.
    for number, raw, _ in iter_lines(path):
        where = f"{path}:{number}"
        try:
            if raw is None:
                raise long_line_error(path, number)
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            row = load_json(line)
        except DataError as exc:
            error = exc
        except UnicodeDecodeError as exc:
            error = DataError(
                where,
                f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                "save the file as UTF-8",
            )
        except json.JSONDecodeError as exc:
            error = DataError(
                where, f"invalid JSON: {exc}", "each line must be one complete JSON object"
            )
        else:
            yield where, row
            continue
        if errors is None:
            raise error
        errors.append(error)


def _iter_json(path: str) -> Iterator[tuple[str, Any]]:
    with open_regular(path) as handle:
        try:
            data = load_json(handle.read().decode("utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}", f"invalid JSON: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise DataError(
                path, f"not valid UTF-8 ({exc.reason})", "save the file as UTF-8"
            ) from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(
            path,
            f"expected a list of records, got a JSON {type(data).__name__}",
            'write a list [{...}, ...] or an object {"data": [{...}, ...]}',
        )
    for index, row in enumerate(data):
        yield f"{path}[record {index}]", row


def _iter_parquet(path: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(path, f"cannot read parquet file: {exc}") from exc
    index = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            yield f"{path}[record {index}]", row
            index += 1


def _iter_saved_dataset(path: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(path)
    except FileNotFoundError as exc:
        raise DataError(
            path,
            "this folder is not a dataset saved with datasets' save_to_disk",
            "point at a .jsonl/.json/.parquet file or a save_to_disk folder",
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _single_split(path, loaded)
    for index, row in enumerate(loaded):
        yield f"{path}[record {index}]", row


def source_identity(path: str) -> list[Any]:
    """What identifies the data of a `--data` value for a cache key: a file's absolute path,
    size and modification time, or an `hf:` spec and the fingerprint of its dataset."""
    if hub.is_hub_spec(path):
        return hub.identity(path)
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, int(st.st_mtime_ns)]


def source_exists(path: str) -> bool:
    """Whether a `--data` value can be looked for: an `hf:` spec (checked when it is read)
    or an existing path."""
    return hub.is_hub_spec(path) or os.path.exists(path)


def _single_split(path: str, splits: Any) -> Any:
    names = list(splits.keys())
    if len(names) == 1:
        return splits[names[0]]
    choices = ", ".join(os.path.join(path, name) for name in names)
    raise DataError(
        path,
        f"this dataset has {len(names)} splits ({', '.join(names)})",
        f"pass the folder of the split to use: {choices}",
    )


# ---------------------------------------------------------------- records

SKIP_HINT = "or pass --skip-invalid to drop such records"


class InvalidDataError(AlignkitError):
    """Several data problems reported at once (the first `max_errors` of them are listed).

    `all_invalid`: raised under `skip_invalid` because no valid record is left.
    """

    def __init__(
        self,
        errors: list[DataError],
        invalid_records: int,
        bad_files: int,
        all_invalid: bool = False,
    ) -> None:
        self.errors = errors
        self.invalid_records = invalid_records
        self.bad_files = bad_files
        found = []
        if invalid_records:
            found.append(_plural(invalid_records, "invalid record"))
        if bad_files:
            found.append(_plural(bad_files, "unusable file"))
        if all_invalid:
            head = f"all {_plural(invalid_records, 'record')} are invalid, none is left to use"
        else:
            head = " and ".join(found) + " found"
        if len(errors) < invalid_records + bad_files:
            head += f" (showing the first {len(errors)})"
        lines = [head + ":"] + [f"  {error}" for error in errors]
        advice = "Fix or remove them and run again (`alignkit data inspect PATH...` checks data)"
        if invalid_records and not all_invalid:
            advice += f", {SKIP_HINT}"
        lines.append(advice + ".")
        super().__init__("\n".join(lines))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def reason_of(error: DataError) -> str:
    """The kind of a record's problem, for counting: its message cut before the details
    that differ from record to record ("invalid JSON: Expecting ..." -> "invalid JSON")."""
    text = error.message
    for separator in (": ", " (", "; ", ", got "):
        cut = text.find(separator)
        if cut > 0:
            text = text[:cut]
    return text


class _Problems:
    """Collects errors across files; keeps the first `limit` and counts the rest.

    Under `skip_invalid` a record's error is not a problem: the record is dropped and listed
    in `summary.rejected`. Errors of whole files (missing, unreadable, empty) always are.
    """

    def __init__(self, limit: int, skip_invalid: bool, summary: LoadSummary) -> None:
        self.limit = limit
        self.skip_invalid = skip_invalid
        self.summary = summary
        self.shown: list[DataError] = []
        self.records = 0
        self.files = 0

    @property
    def total(self) -> int:
        return self.records + self.files

    def add(self, error: DataError, file_level: bool = False, row: Any = None) -> None:
        if self.skip_invalid and not file_level:
            reason = reason_of(error)
            self.summary.rejected.append(
                Rejected(error.where, reason, error.message, error.hint, row)
            )
            return
        if file_level:
            self.files += 1
        else:
            self.records += 1
        if len(self.shown) < self.limit:
            self.shown.append(error)

    def add_all(self, errors: list[DataError]) -> None:
        for error in errors:
            self.add(error)
        errors.clear()

    def raise_if_any(self) -> None:
        if self.shown:
            raise InvalidDataError(self.shown, self.records, self.files)


def load_records(
    paths: Sequence[str],
    fmt: str = "auto",
    max_errors: int = 20,
    skip_invalid: bool = False,
    rejected_path: str | os.PathLike[str] | None = None,
    columns: Mapping[str, str] | None = None,
) -> tuple[list[Record], LoadSummary]:
    """Load and validate every record of `paths` (files of different kinds may be mixed;
    `hf:NAME[:SUBSET][@SPLIT]` names a Hugging Face dataset, see `alignkit.data.hub`).

    All files are read to the end; if anything is invalid, one `InvalidDataError` lists the
    first `max_errors` problems and says how many there are. An empty file is an error.
    Within one file, points with integer labels 0/1 are read as scores (not binary) when
    another point of the file has a non-0/1 score, so that a 0..4 rating column is not
    split into binary and continuous points; a point whose label stays binary must not
    contradict it with `high_quality` (`formats.check_binary_label`).

    `skip_invalid`: an invalid record (bad JSON line, missing or empty field, ...) is
    dropped instead, and listed in `summary.rejected` with its "path:line" and reason;
    problems of whole files still raise, and so does data in which every record is invalid.
    `rejected_path` (with `skip_invalid`): also write the dropped records there as jsonl
    (`write_rejected`; an empty file when nothing was dropped).
    `columns`: field -> column of the rows that holds it (e.g. {"rating": "score"}), for
    data whose columns have other names; a row without the column is an invalid record.
    """
    check_format_name(fmt)
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise AlignkitError("no data files given")
    if max_errors < 1:
        raise AlignkitError(f"max_errors must be >= 1, got {max_errors}")
    records: list[Record] = []
    summary = LoadSummary(skip_invalid=skip_invalid)
    problems = _Problems(max_errors, skip_invalid, summary)
    for path in paths:
        summary.files.append(path)
        records.extend(_load_file(path, fmt, summary, problems, columns or {}))
    problems.raise_if_any()
    if skip_invalid:
        if not records:
            errors = [_as_error(r) for r in summary.rejected[:max_errors]]
            raise InvalidDataError(errors, len(summary.rejected), 0, all_invalid=True)
        if summary.rejected:
            _log_rejected(summary, rejected_path)
        if rejected_path is not None:
            write_rejected(rejected_path, summary.rejected)
    return records, summary


def _as_error(rejected: Rejected) -> DataError:
    return DataError(rejected.where, rejected.message, rejected.hint)


def _log_rejected(summary: LoadSummary, rejected_path: Any) -> None:
    reasons = ", ".join(f"{reason}: {n}" for reason, n in summary.rejected_by_reason().items())
    where = f"; listed in {rejected_path}" if rejected_path is not None else ""
    log.warning(
        "--skip-invalid: dropped %s (%s)%s",
        _plural(len(summary.rejected), "invalid record"),
        reasons,
        where,
    )


def write_rejected(path: str | os.PathLike[str], rejected: Sequence[Rejected]) -> None:
    """Write the dropped records as jsonl (atomically): one row per record with its `where`
    ("path:line"), `reason`, full `error` and, when it was readable, the `record` itself.
    Non-ASCII characters are escaped, so even a record with a broken surrogate is written."""
    atomic_write_text(path, "".join(json.dumps(r.to_json(), default=str) + "\n" for r in rejected))


class _FileRows:
    """The rows of one file for `load_records`: bad jsonl lines and errors of the whole file
    go to `problems`, `columns` renames are applied, and a file without rows is reported."""

    def __init__(self, path: str, problems: _Problems, columns: Mapping[str, str]) -> None:
        self.path = path
        self.problems = problems
        self.columns = columns
        self.unusable = False

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        bad_lines: list[DataError] = []  # jsonl lines that are not JSON, filled by iter_rows
        seen = 0  # rows read, valid or not
        try:
            for where, row in iter_rows(self.path, bad_lines):
                seen += len(bad_lines) + 1
                self.problems.add_all(bad_lines)
                try:
                    renamed = _renamed(row, self.columns, where)
                except DataError as error:
                    self.problems.add(error, row=row)
                    continue
                yield where, renamed
        except DataError as error:
            self.problems.add(error, file_level=True)
            self.unusable = True
        seen += len(bad_lines)
        self.problems.add_all(bad_lines)
        if not seen and not self.unusable:
            self.problems.add(
                DataError(self.path, "no records found", "the file is empty"), file_level=True
            )


def _renamed(row: Any, columns: Mapping[str, str], where: str) -> Any:
    """`row` with each `columns` item field <- column applied (rows that are not objects
    are left to the format check)."""
    if not columns or not isinstance(row, dict):
        return row
    out = dict(row)
    for field, column in columns.items():
        if field == column:
            continue
        if column not in row:
            raise DataError(
                where,
                f"missing column '{column}' (read as '{field}')",
                f"check the column name; columns: {', '.join(map(str, row)) or 'none'}",
            )
        out.pop(column)
        out[field] = row[column]
    return out


def _load_file(
    path: str, fmt: str, summary: LoadSummary, problems: _Problems, columns: Mapping[str, str]
) -> list[Record]:
    if fmt == "shp":
        return _load_shp(path, summary, problems, columns)
    records: list[Record] = []
    int_labels: list[tuple[int, bool | None]] = []  # points labelled with an integer 0/1
    flagged: dict[int, Any] = {}  # points with an explicit high_quality: index -> row
    names: list[str] = []
    for where, row in _FileRows(path, problems, columns):
        try:
            name, record = parse_named(row, where, fmt)
        except DataError as error:
            problems.add(error, row=row)
            continue
        if isinstance(record, Point) and name == "point":
            if record.binary and not isinstance(row["label"], bool):
                int_labels.append((len(records), row.get("high_quality")))
            if row.get("high_quality") is not None:
                flagged[len(records)] = row
        names.append(name)
        records.append(record)
    records = _scores_if_mixed(records, int_labels)
    kept: list[Record] = []
    for index, (name, record) in enumerate(zip(names, records, strict=True)):
        if index in flagged and isinstance(record, Point):
            try:
                check_binary_label(record)
            except DataError as error:
                problems.add(error, row=flagged[index])
                continue
        _count(summary, name, record)
        kept.append(record)
    return kept


def _load_shp(
    path: str, summary: LoadSummary, problems: _Problems, columns: Mapping[str, str]
) -> list[Record]:
    """SHP comparisons -> one `multi` record per post; an invalid row, or one that
    contradicts earlier rows of its post, is one invalid record (its post keeps the others)."""
    posts = ShpPosts()
    for where, row in _FileRows(path, problems, columns):
        try:
            posts.add(shp_comparison(row, where))
        except DataError as error:
            problems.add(error, row=row)
    records: list[Record] = list(posts.records())
    for record in records:
        _count(summary, "shp", record)
    return records


def _count(summary: LoadSummary, name: str, record: Record) -> None:
    summary.counts[name] = summary.counts.get(name, 0) + 1
    kind = kind_of(record)
    summary.kinds[kind] = summary.kinds.get(kind, 0) + 1


def _scores_if_mixed(
    records: list[Record], int_labels: list[tuple[int, bool | None]]
) -> list[Record]:
    has_scores = any(isinstance(r, Point) and not r.binary for r in records)
    if not (has_scores and int_labels):
        return records
    for index, high_quality in int_labels:
        records[index] = replace(records[index], binary=False, high_quality=bool(high_quality))
    return records
