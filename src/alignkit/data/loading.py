"""Read the raw rows of a data file: jsonl, json, parquet or a `datasets.save_to_disk` folder.

Every row comes with a `where` string that error messages use to point at it:
"path:LINE" (1-based) for jsonl, "path[record N]" (0-based) for everything else.
Rows are passed on as they are (even when they are not JSON objects): judging them is the
job of `alignkit.data.formats`, which collects every problem before reporting.

A folder saved from a `DatasetDict` (several splits) is refused unless it holds exactly one
split: silently training on "train" while a "test" split sits next to it is a surprise, and
`PATH/<split>` is itself a loadable folder, so the error names those paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from alignkit.errors import DataError

SUPPORTED = (".jsonl", ".json", ".parquet", "a folder written by datasets' save_to_disk")
_PARQUET_BATCH_ROWS = 1024


def iter_rows(path: str, errors: list[DataError] | None = None) -> Iterator[tuple[str, Any]]:
    """Yield `(where, row)` for every record of `path`.

    Raises `DataError` for a missing or unreadable file or an unknown extension. A jsonl line
    that is not valid JSON raises too, unless `errors` is given: then the error is appended
    to it and reading goes on with the next line (so a caller can report all bad lines).
    """
    if not os.path.exists(path):
        raise DataError(
            path, "no such file or directory", "check the path and the working directory"
        )
    if os.path.isdir(path):
        yield from _iter_saved_dataset(path)
    elif path.endswith(".jsonl"):
        yield from _iter_jsonl(path, errors)
    elif path.endswith(".json"):
        yield from _iter_json(path)
    elif path.endswith(".parquet"):
        yield from _iter_parquet(path)
    else:
        raise DataError(path, "unknown file type", "supported: " + ", ".join(SUPPORTED))


def _iter_jsonl(path: str, errors: list[DataError] | None) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                error = DataError(
                    where, f"invalid JSON: {exc}", "each line must be one complete JSON object"
                )
                if errors is None:
                    raise error from exc
                errors.append(error)
                continue
            yield where, row


def _iter_json(path: str) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}", f"invalid JSON: {exc}") from exc
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
