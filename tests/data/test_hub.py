"""Tests of `hf:` data (alignkit.data.hub through load_records) and of the SHP and ratings
formats and `alignkit data convert`. No network: the datasets are built here, saved with
`save_to_disk` or written as folders of jsonl files, and `datasets.load_dataset` is replaced
where a Hub id is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from conftest import pair_rows
from datasets.data_files import EmptyDatasetError
from datasets.exceptions import DatasetNotFoundError

from alignkit.cli import main
from alignkit.data import (
    InvalidDataError,
    Multi,
    Point,
    load_records,
    parse_hub_spec,
    parse_row,
    record_row,
    source_identity,
)
from alignkit.data.formats import FORMATS, DataFormat
from alignkit.errors import DataError
from alignkit.io import read_jsonl

H, A = "\n\nHuman:", "\n\nAssistant:"


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch) -> Path:
    """load_dataset caches what it reads of a local folder: keep that under tmp_path."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def hh(question: str, good: str, bad: str) -> dict[str, str]:
    prompt = f"{H} {question}{A}"
    return {"chosen": f"{prompt} {good}", "rejected": f"{prompt} {bad}"}


# ---------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    ("spec", "name", "subset", "kind", "split", "label"),
    [
        ("hf:Anthropic/hh-rlhf", "Anthropic/hh-rlhf", None, "auto", None, "hf:Anthropic/hh-rlhf"),
        (
            "hf:Anthropic/hh-rlhf:harmless-base",
            "Anthropic/hh-rlhf",
            "harmless-base",
            "auto",
            None,
            "hf:Anthropic/hh-rlhf:harmless-base",
        ),
        ("hf:org/ds:cfg@test[:10%]", "org/ds", "cfg", "auto", "test[:10%]", "hf:org/ds:cfg"),
        ("hf:org/ds:config=en:split=test", "org/ds", "en", "config", "test", "hf:org/ds:config=en"),
        (
            "hf:org/ds:data_dir=a/b@dev",
            "org/ds",
            "a/b",
            "data_dir",
            "dev",
            "hf:org/ds:data_dir=a/b",
        ),
        ("hf:/data/u@x/folder", "/data/u@x/folder", None, "auto", None, "hf:/data/u@x/folder"),
    ],
)
def test_parse_hub_spec(spec, name, subset, kind, split, label) -> None:
    source = parse_hub_spec(spec)
    assert (source.name, source.subset, source.subset_kind, source.split) == (
        name,
        subset,
        kind,
        split,
    )
    assert source.label == label
    assert source.split_name == (split or "train")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("hf:", "no dataset name"),
        ("hf:org/ds@", "nothing after '@'"),
        ("hf:org/ds:", "empty part ''"),
        ("hf:org/ds:a:b", "two subsets"),
        ("hf:org/ds:split=a@b", "two splits"),
        ("hf:org/ds:revision=x", "unknown option 'revision'"),
    ],
)
def test_bad_hub_specs_name_the_problem(spec, problem) -> None:
    with pytest.raises(DataError) as info:
        parse_hub_spec(spec)
    assert str(info.value).startswith(f"{spec}: cannot read this Hugging Face dataset spec")
    assert problem in str(info.value) and "hf:NAME[:SUBSET][@SPLIT]" in str(info.value)


# ---------------------------------------------------------------- local datasets


def test_hf_reads_a_folder_of_jsonl_files_with_subsets_and_splits(tmp_path) -> None:
    root = tmp_path / "hh"
    write_jsonl(root / "harmless-base" / "train.jsonl", [hh("q1", "no", "yes"), hh("q2", "a", "b")])
    write_jsonl(root / "harmless-base" / "test.jsonl", [hh("q3", "c", "d")])
    write_jsonl(root / "helpful-base" / "train.jsonl", [hh("q4", "e", "f")])
    spec = f"hf:{root}"

    records, summary = load_records([spec])  # every folder's train files
    assert len(records) == 3 and summary.counts == {"hh": 3} and summary.files == [spec]
    assert [r.source for r in records] == [f"{spec}[train][record {i}]" for i in range(3)]

    records, _ = load_records([f"{spec}:harmless-base"])  # not a config: a data_dir
    assert [r.prompt for r in records] == [f"{H} q1{A}", f"{H} q2{A}"]
    assert records[0].source == f"{spec}:harmless-base[train][record 0]"

    records, _ = load_records([f"{spec}:data_dir=harmless-base@test"])
    assert [(r.prompt, r.source) for r in records] == [
        (f"{H} q3{A}", f"{spec}:data_dir=harmless-base[test][record 0]")
    ]
    records, _ = load_records([f"{spec}:helpful-base@train[:1]"])
    assert [r.chosen for r in records] == [" e"]


def test_hf_rows_leave_out_null_fields(tmp_path) -> None:
    """One dataset has one set of columns: a point row gets chosen = rejected = null, which
    must not make it look like a pair."""
    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "completion": "a", "label": 0.5},
    ]
    write_jsonl(tmp_path / "mixed" / "train.jsonl", rows)
    records, summary = load_records([f"hf:{tmp_path / 'mixed'}"])
    assert summary.counts == {"trl-pair": 1, "point": 1}
    assert records[1] == Point("q", "a", 0.5, False, False, records[1].source)


def test_hf_errors_of_local_folders(tmp_path) -> None:
    root = tmp_path / "hh"
    write_jsonl(root / "harmless-base" / "train.jsonl", [hh("q1", "no", "yes")])
    spec = f"hf:{root}"
    cases = {
        f"{spec}@test": "no split 'test' in " + spec + " (splits: train) "
        f"(choose the split with @SPLIT, e.g. {spec}@train)",
        f"{spec}:nope": "'nope' is neither a config of",
        f"{spec}:data_dir=nope": "has no folder 'nope' with data files",
        f"hf:{tmp_path / 'missing'}": f"no such folder: {tmp_path / 'missing'}",
    }
    for bad, expected in cases.items():
        with pytest.raises(InvalidDataError) as info:
            load_records([bad])
        text = str(info.value)
        assert text.startswith("1 unusable file found:") and f"  {bad}: " in text
        assert expected in text


def test_hf_reads_save_to_disk_folders(tmp_path) -> None:
    one = tmp_path / "one"
    datasets.Dataset.from_list(pair_rows(3)).save_to_disk(str(one))
    records, _ = load_records([f"hf:{one}"])
    assert [r.source for r in records] == [f"hf:{one}[record {i}]" for i in range(3)]
    assert [r.source for r in load_records([str(one)])[0]] == [
        f"{one}[record {i}]" for i in range(3)
    ]
    with pytest.raises(InvalidDataError, match="without splits"):
        load_records([f"hf:{one}@train"])

    both = tmp_path / "both"
    splits = {"train": pair_rows(2), "test": pair_rows(1, seed=3)}
    datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}
    ).save_to_disk(str(both))
    assert len(load_records([f"hf:{both}"])[0]) == 2  # train unless told
    (record,), _ = load_records([f"hf:{both}@test"])
    assert record.source == f"hf:{both}[test][record 0]"
    with pytest.raises(InvalidDataError, match=r"no split 'dev' in this saved dataset"):
        load_records([f"hf:{both}@dev"])
    with pytest.raises(InvalidDataError, match="this dataset has 2 splits"):
        load_records([str(both)])  # a plain folder path still needs the split's folder


def test_skip_invalid_lists_hf_locations(tmp_path) -> None:
    rows = [hh("q1", "no", "yes"), hh("q2", "same", "same"), hh("q3", "a", "b")]
    root = tmp_path / "data"
    write_jsonl(root / "train.jsonl", rows)
    spec = f"hf:{root}"
    with pytest.raises(InvalidDataError) as info:
        load_records([spec])
    assert f"{spec}[train][record 1]: chosen and rejected responses are identical" in str(
        info.value
    )
    rejected = tmp_path / "rejected.jsonl"
    records, summary = load_records([spec], skip_invalid=True, rejected_path=rejected)
    assert [r.source for r in records] == [f"{spec}[train][record 0]", f"{spec}[train][record 2]"]
    (listed,) = read_jsonl(rejected)
    assert listed["where"] == f"{spec}[train][record 1]"
    assert listed["reason"] == "chosen and rejected responses are identical"
    assert listed["record"] == rows[1]
    assert [r.where for r in summary.rejected] == [listed["where"]]


def test_source_identity_of_files_and_hf_data(tmp_path) -> None:
    path = write_jsonl(tmp_path / "d" / "train.jsonl", pair_rows(2))
    name, size, _ = source_identity(path)
    assert (name, size) == (path, Path(path).stat().st_size)
    spec = f"hf:{tmp_path / 'd'}"
    first = source_identity(spec)
    assert first[0] == spec and isinstance(first[1], str)
    write_jsonl(tmp_path / "d" / "train.jsonl", pair_rows(3))
    load_records([spec])  # the data changed: so does its fingerprint
    assert source_identity(spec)[1] != first[1]


# ---------------------------------------------------------------- Hub ids (load_dataset replaced)


class FakeHub:
    """Stands in for `datasets.load_dataset`: records its calls; a config name the dataset
    lacks fails as datasets does, and only `data_dir` finds the rows."""

    def __init__(self, rows: list[dict], folders: tuple[str, ...] = ("harmless-base",)) -> None:
        self.rows = rows
        self.folders = folders
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> datasets.Dataset:
        self.calls.append((args, kwargs))
        if "name" in kwargs:
            raise ValueError(f"BuilderConfig '{kwargs['name']}' not found. Available: ['default']")
        if kwargs.get("data_dir", self.folders[0]) not in self.folders:
            raise EmptyDatasetError("The directory doesn't contain any data")
        return datasets.Dataset.from_list(self.rows)


def test_hh_rlhf_subset_is_tried_as_config_then_as_data_dir(monkeypatch) -> None:
    hub = FakeHub([hh("q1", "no", "yes"), hh("q2", "a", "b")])
    monkeypatch.setattr(datasets, "load_dataset", hub)
    records, summary = load_records(["hf:Anthropic/hh-rlhf:harmless-base"])
    assert hub.calls == [
        (("Anthropic/hh-rlhf",), {"split": "train", "name": "harmless-base"}),
        (("Anthropic/hh-rlhf",), {"split": "train", "data_dir": "harmless-base"}),
    ]
    assert summary.counts == {"hh": 2}
    assert records[1].source == "hf:Anthropic/hh-rlhf:harmless-base[train][record 1]"

    hub.calls.clear()
    load_records(["hf:Anthropic/hh-rlhf:data_dir=harmless-base@test[:2]"])
    load_records(["hf:Anthropic/hh-rlhf"])
    assert hub.calls == [
        (("Anthropic/hh-rlhf",), {"split": "test[:2]", "data_dir": "harmless-base"}),
        (("Anthropic/hh-rlhf",), {"split": "train"}),
    ]
    with pytest.raises(InvalidDataError) as info:
        load_records(["hf:Anthropic/hh-rlhf:harmles-base"])
    assert "'harmles-base' is neither a config of Anthropic/hh-rlhf" in str(info.value)
    assert "Available: ['default']" in str(info.value)


def test_hub_load_failures_say_what_to_do(monkeypatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError(
            "Couldn't reach 'Anthropic/hh-rlhf' on the Hub (OfflineModeIsEnabled)"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InvalidDataError) as info:
        load_records(["hf:Anthropic/hh-rlhf:harmless-base"])
    text = str(info.value)
    assert (
        "hf:Anthropic/hh-rlhf:harmless-base: the hub is not reachable and Anthropic/hh-rlhf "
        "is not in the datasets cache"
    ) in text
    assert "download it once on a machine with network" in text
    assert "save it with `save_to_disk` and pass the folder" in text

    def not_cached(*args: Any, **kwargs: Any) -> None:  # offline, another config cached
        raise ValueError("Couldn't find cache for org/ds for config 'default-1a'")

    monkeypatch.setattr(datasets, "load_dataset", not_cached)
    with pytest.raises(InvalidDataError, match="the hub is not reachable and org/ds is not"):
        load_records(["hf:org/ds"])

    def other_config_cached(*args: Any, **kwargs: Any) -> None:
        raise ValueError(
            "Couldn't find cache for Anthropic/hh-rlhf for config 'default-data_dir=harmless-base'"
            "\nAvailable configs in the cache: ['default-4e1c1d4bd3ad2d9c']"
        )

    monkeypatch.setattr(datasets, "load_dataset", other_config_cached)
    with pytest.raises(InvalidDataError) as info:
        load_records(["hf:Anthropic/hh-rlhf:data_dir=harmless-base@test"])
    text = str(info.value)
    assert "Anthropic/hh-rlhf is in the datasets cache" in text
    assert "Available configs in the cache: ['default-4e1c1d4bd3ad2d9c']" in text
    assert (
        "datasets.load_dataset('Anthropic/hh-rlhf', data_dir='harmless-base', split='test')"
        ".save_to_disk('FOLDER')"
    ) in text

    def missing(*args: Any, **kwargs: Any) -> None:
        raise DatasetNotFoundError(
            "Dataset 'org/nope' doesn't exist on the Hub or cannot be accessed."
        )

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(InvalidDataError) as info:
        load_records(["hf:org/nope"])
    assert "org/nope cannot be loaded from the hub" in str(info.value)
    assert "hf auth login" in str(info.value)


# ---------------------------------------------------------------- SHP


def shp(post: str, a: tuple[str, int], b: tuple[str, int], label: int, **extra: Any) -> dict:
    """An SHP row: comments (text, score) A and B of `post`, whose history is its name."""
    return {
        "post_id": post,
        "domain": "askscience_train",
        "history": f"{post}: why is the sky blue?",
        "c_root_id_A": f"{post}-{a[0]}",
        "c_root_id_B": f"{post}-{b[0]}",
        "human_ref_A": a[0],
        "human_ref_B": b[0],
        "score_A": a[1],
        "score_B": b[1],
        "labels": label,
        **extra,
    }


SHP_ROWS = [
    shp("p1", ("rayleigh", 52), ("dunno", 3), 1),
    shp("p2", ("short", 4), ("long answer", 10), 0),
    shp("p1", ("magic", 1), ("rayleigh", 52), 0),
    shp("p1", ("dunno", 3), ("magic", 1), 1),
]


def test_shp_rows_of_a_post_become_one_multi_record(tmp_path) -> None:
    path = write_jsonl(tmp_path / "shp.jsonl", SHP_ROWS)
    records, summary = load_records([path], "shp")
    assert records == [
        Multi(
            "p1: why is the sky blue?",
            ("rayleigh", "dunno", "magic"),
            (52.0, 3.0, 1.0),
            f"{path}:1",
        ),
        Multi("p2: why is the sky blue?", ("short", "long answer"), (4.0, 10.0), f"{path}:2"),
    ]
    assert summary.counts == {"shp": 2} and summary.kinds == {"multi": 2}
    # one row alone is a record of its two comments
    assert parse_row(SHP_ROWS[1], f"{path}:2", "shp") == records[1]


def test_shp_without_comment_ids_keys_comments_by_text(tmp_path) -> None:
    rows = [{k: v for k, v in row.items() if not k.startswith("c_root")} for row in SHP_ROWS[:3]]
    path = write_jsonl(tmp_path / "shp.jsonl", rows)
    records, _ = load_records([path], "shp")
    assert records[0].responses == ("rayleigh", "dunno", "magic")


def test_shp_errors_name_the_record(tmp_path) -> None:
    bad = [
        shp("p1", ("rayleigh", 50), ("dunno", 3), 1),  # line 5: rayleigh had 52 at line 1
        shp("p1", ("x", 1), ("y", 9), 1),  # line 6: labels prefer the lower score
        shp("p3", ("same", 1), ("same", 1), 1),  # line 7
        {**shp("p1", ("z", 2), ("w", 1), 1), "history": "another post"},  # line 8
        {k: v for k, v in shp("p4", ("a", 2), ("b", 1), 1).items() if k != "score_B"},  # line 9
        shp("p5", ("a", 2), ("b", "ten"), 1),  # line 10
    ]
    path = write_jsonl(tmp_path / "shp.jsonl", [*SHP_ROWS, *bad])
    with pytest.raises(InvalidDataError) as info:
        load_records([path], "shp")
    text = str(info.value)
    assert text.startswith("6 invalid records found:")
    expected = [
        f"{path}:5: comment 'p1-rayleigh' of post 'p1' has score_A 50 here but 52 at {path}:1",
        f"{path}:6: 'labels' prefers comment A, which has fewer votes (score_A 1, score_B 9)",
        f"{path}:7: human_ref_A and human_ref_B are the same comment",
        f"{path}:8: post 'p1' has another 'history' than at {path}:1",
        f"{path}:9: missing field 'score_B' (the record looks like format 'shp')",
        f"{path}:10: field 'score_B' must be a number, got string 'ten'",
    ]
    for line in expected:
        assert line in text
    # --skip-invalid drops those rows; the posts keep their other comparisons
    records, summary = load_records([path], "shp", skip_invalid=True)
    assert [len(r.responses) for r in records] == [3, 2]
    assert [r.where for r in summary.rejected] == [f"{path}:{n}" for n in range(5, 11)]


def test_shp_rows_are_not_guessed_but_the_error_says_which_format(tmp_path) -> None:
    path = write_jsonl(tmp_path / "shp.jsonl", SHP_ROWS[:1])
    with pytest.raises(InvalidDataError) as info:
        load_records([path])
    assert "are those of format 'shp', which is read only when named" in str(info.value)
    assert "--data-format shp" in str(info.value)


def test_shp_from_a_saved_dataset(tmp_path) -> None:
    folder = tmp_path / "shp"
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(SHP_ROWS)}).save_to_disk(
        str(folder)
    )
    records, _ = load_records([f"hf:{folder}@validation"], "shp")
    assert [r.scores for r in records] == [(52.0, 3.0, 1.0), (4.0, 10.0)]
    assert records[1].source == f"hf:{folder}[validation][record 1]"


# ---------------------------------------------------------------- ratings


RATINGS = [
    {"prompt": "q1", "response": "great answer", "rating": 5},
    {"prompt": "q1", "response": "bad answer", "rating": 1},
    {"prompt": [{"role": "user", "content": "q2"}], "response": "ok", "rating": 0.5},
    {"prompt": "q3", "response": "fine", "rating": 1, "high_quality": True},
]


def test_ratings_become_points_with_real_valued_labels(tmp_path) -> None:
    path = write_jsonl(tmp_path / "ratings.jsonl", RATINGS)
    records, summary = load_records([path], "ratings")
    assert records[:2] == [
        Point("q1", "great answer", 5.0, False, False, f"{path}:1"),
        Point("q1", "bad answer", 1.0, False, False, f"{path}:2"),
    ]
    assert records[2].prompt == ({"role": "user", "content": "q2"},)
    assert (records[3].label, records[3].binary, records[3].high_quality) == (1.0, False, True)
    assert summary.counts == {"ratings": 4} and summary.kinds == {"point": 4}


def test_ratings_columns_can_be_renamed(tmp_path) -> None:
    rows = [
        {"question": r["prompt"], "answer": r["response"], "stars": r["rating"]} for r in RATINGS
    ]
    path = write_jsonl(tmp_path / "ratings.jsonl", [*rows, {"question": "q", "answer": "a"}])
    columns = {"prompt": "question", "response": "answer", "rating": "stars"}
    with pytest.raises(InvalidDataError) as info:
        load_records([path], "ratings", columns=columns)
    assert f"{path}:5: missing column 'stars' (read as 'rating')" in str(info.value)
    records, _ = load_records([path], "ratings", columns=columns, skip_invalid=True)
    assert [(r.completion, r.label) for r in records[:2]] == [
        ("great answer", 5.0),
        ("bad answer", 1.0),
    ]


def test_ratings_errors_name_the_record(tmp_path) -> None:
    rows = [
        {"prompt": "q", "response": "a", "rating": "4"},
        {"prompt": "q", "response": " ", "rating": 4},
        {"prompt": "q", "response": "a", "rating": float("nan")},
        {"prompt": "q", "response": "a"},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InvalidDataError) as info:
        load_records([str(path)], "ratings")
    text = str(info.value)
    assert f"{path}:1: field 'rating' must be a number, got string '4'" in text
    assert f"{path}:2: field 'response' is empty" in text
    assert f"{path}:3: field 'rating' is nan" in text
    assert f"{path}:4: missing field 'rating' (the record looks like format 'ratings')" in text
    with pytest.raises(InvalidDataError, match="are those of format 'ratings'"):
        load_records([write_jsonl(tmp_path / "r.jsonl", RATINGS[:1])])


def test_format_names_and_their_literal_agree() -> None:
    assert DataFormat.__args__ == ("auto", *FORMATS)  # type: ignore[attr-defined]
    assert {"shp", "ratings"} <= set(FORMATS)


# ---------------------------------------------------------------- rows written back


def test_record_row_reads_back_as_the_same_record(tmp_path) -> None:
    ratings = write_jsonl(tmp_path / "ratings.jsonl", RATINGS)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [hh("q", "yes", "no")])
    records = [
        *load_records([ratings], "ratings")[0],
        *load_records([write_jsonl(tmp_path / "shp.jsonl", SHP_ROWS)], "shp")[0],
        *load_records([pairs])[0],
        Point("q", "a", 1.0, True, True, "x:1"),
        Point("q", "b", 0.0, True, False, "x:2"),
    ]
    out = write_jsonl(tmp_path / "out.jsonl", [record_row(r) for r in records])
    again, _ = load_records([out])
    strip = [{k: v for k, v in vars(r).items() if k != "source"} for r in records]
    assert [{k: v for k, v in vars(r).items() if k != "source"} for r in again] == strip
    assert [r["source"] for r in read_jsonl(out)] == [r.source for r in records]


# ---------------------------------------------------------------- CLI


def test_data_inspect_reads_hf_data(tmp_path, capsys) -> None:
    write_jsonl(tmp_path / "d" / "train.jsonl", [*pair_rows(4), {"chosen": "x"}])
    spec = f"hf:{tmp_path / 'd'}"
    assert main(["data", "inspect", spec]) == 2
    assert f"{spec}[train][record 4]: missing field 'rejected'" in capsys.readouterr().err
    out = tmp_path / "stats.json"
    assert main(["data", "inspect", spec, "--skip-invalid", "--json", str(out)]) == 0
    (listed,) = read_jsonl(tmp_path / "stats.rejected.jsonl")
    assert listed["where"] == f"{spec}[train][record 4]"
    with pytest.raises(SystemExit):
        main(["data", "inspect", "--help"])
    assert "hf:NAME[:SUBSET][@SPLIT]" in capsys.readouterr().out


def test_data_convert_shp_and_ratings(tmp_path, capsys) -> None:
    shp_file = write_jsonl(tmp_path / "shp.jsonl", SHP_ROWS)
    out = tmp_path / "multi.jsonl"
    assert (
        main(["data", "convert", shp_file, "--format", "shp", "--to", "multi", "-o", str(out)]) == 0
    )
    assert "wrote 2 multi record(s)" in capsys.readouterr().out
    rows = read_jsonl(out)
    assert rows[0] == {
        "prompt": "p1: why is the sky blue?",
        "responses": ["rayleigh", "dunno", "magic"],
        "scores": [52.0, 3.0, 1.0],
        "source": f"{shp_file}:1",
    }
    records, summary = load_records([str(out)])
    assert summary.counts == {"multi": 2}

    rows = [{"q": r.pop("prompt"), "stars": r.pop("rating"), **r} for r in map(dict, RATINGS)]
    ratings = write_jsonl(tmp_path / "ratings.jsonl", [*rows, {"q": "x", "response": "y"}])
    out = tmp_path / "points.jsonl"
    args = ["data", "convert", ratings, "--format", "ratings", "-o", str(out)]
    args += ["--prompt-column", "q", "--rating-column", "stars"]
    assert main(args) == 2
    assert f"{ratings}:5: missing column 'stars' (read as 'rating')" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    points = read_jsonl(out)
    assert [(p["label"], p["high_quality"]) for p in points] == [
        (5.0, False),
        (1.0, False),
        (0.5, False),
        (1.0, True),
    ]
    (dropped,) = read_jsonl(tmp_path / "points.rejected.jsonl")
    assert dropped["where"] == f"{ratings}:5"
    records, _ = load_records([str(out)])
    assert all(isinstance(r, Point) and not r.binary for r in records)

    # pairs -> points; mixed kinds need --to; column options need --format ratings
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(2))
    assert main(["data", "convert", pairs, "--to", "point", "-o", str(tmp_path / "p.jsonl")]) == 0
    assert [r["label"] for r in read_jsonl(tmp_path / "p.jsonl")] == [True, False, True, False]
    assert main(["data", "convert", pairs, str(out), "-o", str(tmp_path / "m.jsonl")]) == 2
    assert "holds pair and point records; choose what to write with --to" in capsys.readouterr().err
    assert main(["data", "convert", pairs, "--rating-column", "x", "-o", str(tmp_path / "m")]) == 2
    assert "need --format ratings" in capsys.readouterr().err


def test_train_on_hf_data(tmp_path, tiny_model) -> None:
    folder = tmp_path / "pairs"
    datasets.Dataset.from_list(pair_rows(8)).save_to_disk(str(folder))
    out = tmp_path / "run"
    args = ["train", "--method", "dpo", "--model", tiny_model, "--output", str(out)]
    args += ["--data", f"hf:{folder}", "--max-steps", "1", "--precision", "fp32"]
    assert main(args) == 0
    assert (out / "model").is_dir()
    rm = ["train-rm", "--model", tiny_model, "--output", str(tmp_path / "rm")]
    assert main([*rm, "--data", f"hf:{folder}", "--max-steps", "1", "--precision", "fp32"]) == 0


def test_selecting_shp_posts_keeps_every_comment(tmp_path) -> None:
    """An SHP post is one multi record built from several rows: a selected post is written
    whole (all its comments and scores), not as its first comparison row only."""
    rows = [
        shp("p1", ("rayleigh", 52), ("dunno", 3), 1),
        shp("p1", ("rayleigh", 52), ("magic", 1), 1),
    ]
    data = write_jsonl(tmp_path / "shp.jsonl", rows)
    out = tmp_path / "sel"
    args = ["select", "random", "--data", data, "--data-format", "shp", "--count", "1"]
    assert main([*args, "--output", str(out)]) == 0
    (kept,) = read_jsonl(out / "subset.jsonl")
    assert sorted(kept["responses"]) == ["dunno", "magic", "rayleigh"]
    assert sorted(kept["scores"]) == [1, 3, 52]
