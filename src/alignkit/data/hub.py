"""Data named `hf:NAME[:SUBSET][@SPLIT]`, read with `datasets.load_dataset`.

- NAME: a Hugging Face Hub dataset id (`Anthropic/hh-rlhf`), or a local folder (`hf:/data/shp`,
  `hf:./ratings`): a folder of data files `load_dataset` reads (jsonl, json, parquet, csv, ...)
  or one written by `save_to_disk`.
- SUBSET: a config name of the dataset, or else a folder inside it (`data_dir`): Anthropic/hh-rlhf
  keeps its subsets as folders, so `hf:Anthropic/hh-rlhf:harmless-base` is
  `load_dataset("Anthropic/hh-rlhf", data_dir="harmless-base", split="train")`. A bare SUBSET
  is tried as a config first, then as a folder; `config=X` or `data_dir=X` says which it is.
- SPLIT: `train` unless given, as `@SPLIT` or `:split=SPLIT`; datasets' slices work
  (`@train[:1000]`, `@test[:10%]`).

Without network `load_dataset` reads what an earlier run downloaded into the datasets cache
(`HF_HUB_OFFLINE=1` skips the network attempts and their retries). Rows come with
where = "hf:NAME[:SUBSET][SPLIT][record N]" (N counts from 0 within the split or slice).
A dataset has one set of columns for all its rows (a row without a field gets null): null
fields are left out of the rows, so that format detection and "missing field" errors are
those of the same records in a jsonl file.

Every failure is a `DataError` naming the spec, with what to do about it. `datasets` is
imported only when such data is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from alignkit.errors import DataError

PREFIX = "hf:"
DEFAULT_SPLIT = "train"
SYNTAX = "hf:NAME[:SUBSET][@SPLIT]"
_BATCH_ROWS = 1024
_SAVED_MARKERS = ("state.json", "dataset_dict.json")  # what save_to_disk writes
# dataset fingerprints of the specs read in this process (`identity`)
_FINGERPRINTS: dict[str, str | None] = {}


def is_hub_spec(path: str) -> bool:
    """Whether a `--data` value names data read with `datasets.load_dataset` (`hf:...`)."""
    return isinstance(path, str) and path.startswith(PREFIX)


@dataclass(frozen=True)
class HubSource:
    """A parsed `hf:` spec. `subset_kind`: "auto" (config, else data_dir), "config" or
    "data_dir"; `split` is None when the spec gives none (then `DEFAULT_SPLIT`)."""

    spec: str
    name: str
    subset: str | None = None
    subset_kind: str = "auto"
    split: str | None = None

    @property
    def local(self) -> bool:
        """NAME is a local folder (as for `load_dataset`: an existing path, or one written
        as a path)."""
        return self.name.startswith(("/", "./", "../", "~")) or os.path.exists(self.name)

    @property
    def path(self) -> str:
        """NAME as `load_dataset` gets it (a local folder with `~` expanded)."""
        return os.path.expanduser(self.name) if self.local else self.name

    @property
    def split_name(self) -> str:
        return self.split or DEFAULT_SPLIT

    @property
    def label(self) -> str:
        """ "hf:NAME[:SUBSET]", as written (without the split)."""
        if self.subset is None:
            return PREFIX + self.name
        prefix = "" if self.subset_kind == "auto" else self.subset_kind + "="
        return f"{PREFIX}{self.name}:{prefix}{self.subset}"

    def where(self, index: int, split: str | None) -> str:
        """The location of record `index`: "hf:NAME[:SUBSET][SPLIT][record N]"."""
        part = f"[{split}]" if split else ""
        return f"{self.label}{part}[record {index}]"


def parse_hub_spec(spec: str) -> HubSource:
    """Parse `hf:NAME[:SUBSET][@SPLIT]` (also `:config=X`, `:data_dir=X`, `:split=X`).

    Raises `DataError` (where = the spec) for an empty name, an empty part, an unknown
    `key=` or two subsets or splits.
    """
    if not is_hub_spec(spec):
        raise DataError(spec, f"not a Hugging Face dataset spec: expected {SYNTAX}")
    body = spec[len(PREFIX) :]
    split = None
    head, at, tail = body.rpartition("@")
    if at and "/" not in tail:  # an "@" inside a folder name is part of NAME
        if not tail:
            raise _bad_spec(spec, "nothing after '@'")
        body, split = head, tail
    name, *parts = body.split(":")
    if not name:
        raise _bad_spec(spec, "no dataset name")
    subset, kind = None, "auto"
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "auto", part
        if not value:
            raise _bad_spec(spec, f"empty part {part!r}")
        if key == "split":
            if split is not None:
                raise _bad_spec(spec, "two splits")
            split = value
        elif key in ("auto", "config", "data_dir"):
            if subset is not None:
                raise _bad_spec(spec, "two subsets")
            subset, kind = value, key
        else:
            raise _bad_spec(spec, f"unknown option {key!r} (config=, data_dir= or split=)")
    return HubSource(spec, name, subset, kind, split)


def _bad_spec(spec: str, problem: str) -> DataError:
    return DataError(
        spec,
        f"cannot read this Hugging Face dataset spec: {problem}",
        f"write {SYNTAX}, e.g. hf:Anthropic/hh-rlhf:harmless-base@test",
    )


def iter_hub_rows(spec: str) -> Iterator[tuple[str, Any]]:
    """Yield `(where, row)` for every row of the split `spec` names (see the module doc)."""
    source = parse_hub_spec(spec)
    dataset, split = load_hub_dataset(source)
    index = 0
    for batch in dataset.iter(batch_size=_BATCH_ROWS):
        columns = list(batch)
        size = len(batch[columns[0]]) if columns else 0
        for row_index in range(size):
            row = {key: batch[key][row_index] for key in columns}
            yield source.where(index, split), {k: v for k, v in row.items() if v is not None}
            index += 1


def identity(spec: str) -> list[Any]:
    """What identifies the data of `spec` for a cache key: the spec and the fingerprint of
    the dataset `datasets` loaded (it changes with the data; loaded here when this process
    has not read it yet)."""
    if spec not in _FINGERPRINTS:
        load_hub_dataset(parse_hub_spec(spec))
    return [spec, _FINGERPRINTS.get(spec)]


# ---------------------------------------------------------------- loading


def load_hub_dataset(source: HubSource) -> tuple[Any, str | None]:
    """The `datasets.Dataset` of `source` and the split name its rows are located by
    (None for a saved single dataset, which has no split)."""
    import datasets

    if source.local:
        if not os.path.isdir(source.path):
            raise DataError(
                source.spec,
                f"no such folder: {source.path}",
                "after hf: give a Hub dataset id (owner/name) or an existing local folder",
            )
        if any(os.path.exists(os.path.join(source.path, m)) for m in _SAVED_MARKERS):
            loaded, split = _from_disk(source)
            _FINGERPRINTS[source.spec] = getattr(loaded, "_fingerprint", None)
            return loaded, split
    attempts: list[dict[str, str]] = [{}]
    if source.subset is not None:
        if source.subset_kind == "auto":
            attempts = [{"name": source.subset}, {"data_dir": source.subset}]
        else:
            key = "name" if source.subset_kind == "config" else "data_dir"
            attempts = [{key: source.subset}]
    not_config: Exception | None = None
    for number, extra in enumerate(attempts, start=1):
        try:
            loaded = datasets.load_dataset(source.path, split=source.split_name, **extra)
        except Exception as exc:  # datasets raises many types; each becomes a DataError
            if number < len(attempts) and _no_such_config(exc):
                not_config = exc
                continue
            raise _load_error(source, exc, not_config, extra) from exc
        _FINGERPRINTS[source.spec] = getattr(loaded, "_fingerprint", None)
        return loaded, source.split_name
    raise AssertionError("unreachable")  # pragma: no cover


def _from_disk(source: HubSource) -> tuple[Any, str | None]:
    import datasets

    if source.subset is not None:
        raise DataError(
            source.spec,
            "a folder written by save_to_disk has no configs or data folders",
            f"drop ':{source.subset}'",
        )
    loaded = datasets.load_from_disk(source.path)
    if not isinstance(loaded, datasets.DatasetDict):
        if source.split is not None:
            raise DataError(
                source.spec,
                "this folder holds one dataset saved with save_to_disk, without splits",
                f"drop '@{source.split}' (or pass the folder without hf:)",
            )
        return loaded, None
    if source.split_name not in loaded:
        raise DataError(
            source.spec,
            f"no split {source.split_name!r} in this saved dataset (splits: {', '.join(loaded)})",
            f"choose one with @SPLIT, e.g. {source.label}@{next(iter(loaded))}",
        )
    return loaded[source.split_name], source.split_name


def _no_such_config(exc: Exception) -> bool:
    """The error `load_dataset` raises for a config name the dataset does not have (online:
    "BuilderConfig 'x' not found"; offline: "Couldn't find cache for NAME for config 'x'")."""
    text = str(exc)
    return isinstance(exc, ValueError) and (
        ("BuilderConfig" in text and "not found" in text) or "Couldn't find cache for" in text
    )


def _load_error(
    source: HubSource, exc: Exception, not_config: Exception | None, extra: dict[str, str]
) -> DataError:
    """The `DataError` for a failed `load_dataset`: what went wrong and how to fix it."""
    from datasets.exceptions import DatasetNotFoundError

    spec, name, text = source.spec, source.name, _one_line(exc)
    if _offline(exc) and not source.local and "Available configs in the cache" in str(exc):
        # offline, datasets looks a subset up by a config id it computes without the hub;
        # for a data_dir subset it differs from the one the online run stored (a hash of
        # the resolved file list), so the cached copy is not found
        return DataError(
            spec,
            f"{name} is in the datasets cache ({_cache_dir()}), but datasets cannot find "
            f"this subset there without the hub [datasets: {text}]",
            'on a machine with network save it once: python -c "import datasets; '
            f"datasets.load_dataset({source.path!r}{_call_args(extra, source)})"
            ".save_to_disk('FOLDER')\" and pass FOLDER",
        )
    if _offline(exc) and not source.local:
        retries = "" if _offline_mode() else "; without network, HF_HUB_OFFLINE=1 skips the retries"
        return DataError(
            spec,
            f"the hub is not reachable and {name} is not in the datasets cache "
            f"({_cache_dir()}) [datasets: {text}]",
            "download it once on a machine with network (the same command does it), "
            f"or save it with `save_to_disk` and pass the folder{retries}",
        )
    if isinstance(exc, DatasetNotFoundError):
        return DataError(
            spec,
            f"{name} cannot be loaded from the hub: {text}",
            f"check the name on https://huggingface.co/datasets/{name}; for a gated dataset "
            "accept its terms there and log in (`hf auth login`)",
        )
    if isinstance(exc, ValueError) and str(exc).startswith("Unknown split"):
        found = re.search(r"one of \[(.*)\]", text)
        splits = [part.strip().strip("'\"") for part in found.group(1).split(",")] if found else []
        example = f", e.g. {source.label}@{splits[0]}" if splits else ""
        return DataError(
            spec,
            f"no split {source.split_name!r} in {source.label}"
            + (f" (splits: {', '.join(splits)})" if splits else f" [datasets: {text}]"),
            f"choose the split with @SPLIT{example}",
        )
    if "data_dir" in extra and isinstance(exc, FileNotFoundError):
        if not_config is not None:
            problem = (
                f"{source.subset!r} is neither a config of {name} "
                f"[{_one_line(not_config)}] nor a folder of it with data files"
            )
        else:
            problem = f"{name} has no folder {source.subset!r} with data files"
        return DataError(
            spec, problem, "check the subset name on the dataset's page (configs and files)"
        )
    if "name" in extra and _no_such_config(exc):
        return DataError(spec, f"{name} has no config {source.subset!r}: {text}")
    if source.local and isinstance(exc, FileNotFoundError):
        return DataError(
            spec,
            f"no data files found in {source.path} [datasets: {text}]",
            "the folder needs data files load_dataset can read (.jsonl, .json, .parquet, "
            ".csv, ...) or a dataset written by save_to_disk",
        )
    return DataError(spec, f"cannot load the dataset: {type(exc).__name__}: {text}")


def _call_args(extra: dict[str, str], source: HubSource) -> str:
    """The keyword arguments of a `load_dataset` call, as Python source."""
    items = {**extra, "split": source.split_name}
    return "".join(f", {key}={value!r}" for key, value in items.items())


def _offline(exc: Exception) -> bool:
    """Whether `exc` says the hub could not be reached and the cache could not stand in."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError"}:
        return True
    return isinstance(exc, ValueError) and "Couldn't find cache for" in str(exc)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _offline_mode() -> bool:
    try:
        from datasets import config

        return bool(config.HF_HUB_OFFLINE)
    except Exception:  # only for the message
        return False


def _cache_dir() -> str:
    try:
        from datasets import config

        return str(config.HF_DATASETS_CACHE)
    except Exception:  # only for the message
        return "~/.cache/huggingface/datasets"
