"""`alignkit.labelling.pairs`: pair and prompt ids, and reading pools, pairs and verdicts
(undo, the last verdict per annotator, the bad line named)."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import CHAT, _verdict_row, write_jsonl

from alignkit.errors import DataError
from alignkit.labelling.pairs import (
    LabelPair,
    pair_id,
    prompt_id,
    read_pairs,
    read_pool,
    read_verdicts,
)


def test_pair_id_is_the_sha256_of_the_texts_and_changes_with_any_of_them():
    by_hand = hashlib.sha256(json.dumps(["p", "x", "y"]).encode()).hexdigest()[:16]
    assert pair_id("p", "x", "y") == by_hand
    assert pair_id("p", "x", "y") == pair_id("p", "x", "y")  # stable
    others = {pair_id("q", "x", "y"), pair_id("p", "x!", "y"), pair_id("p", "x", "y ")}
    assert len(others | {by_hand}) == 4
    assert pair_id("p", "y", "x") != by_hand  # a and b are positions
    # a chat prompt as read (tuple of messages) and as written (list) have one id
    assert pair_id(tuple(CHAT), "x", "y") == pair_id(CHAT, "x", "y")
    assert prompt_id("p") == hashlib.sha256(b'"p"').hexdigest()[:16]
    assert pair_id("é", "x", "y") == hashlib.sha256('["é", "x", "y"]'.encode()).hexdigest()[:16]


def test_read_pool_names_the_bad_line(tmp_path):
    good = {"prompt": CHAT, "responses": ["a", "b"], "finished": [True, False], "model": "m"}
    path = write_jsonl(tmp_path / "pool.jsonl", [good, {"prompt": "p", "responses": "ab"}])
    with pytest.raises(DataError, match=r"pool.jsonl:2: field 'responses' must be a list"):
        read_pool(path)
    bad_flags = {"prompt": "p", "responses": ["a", "b"], "finished": [True]}
    path = write_jsonl(tmp_path / "pool2.jsonl", [good, bad_flags])
    with pytest.raises(DataError, match=r"pool2.jsonl:2: field 'finished'"):
        read_pool(path)
    path = write_jsonl(tmp_path / "pool3.jsonl", [good, {"prompt": 3, "responses": ["a"]}])
    with pytest.raises(DataError, match=r"pool3.jsonl:2: field 'prompt'"):
        read_pool(path)
    entry = read_pool(write_jsonl(tmp_path / "ok.jsonl", [good]))[0]
    assert entry.prompt == tuple(CHAT) and entry.finished == (True, False)


def test_read_pairs_refuses_a_pair_whose_texts_changed(tmp_path):
    row = LabelPair.make("p", "x", "y", 0.5, "easy").to_json()
    path = write_jsonl(tmp_path / "pairs.jsonl", [row, {**row, "a": "x (edited)"}])
    with pytest.raises(DataError, match=r"pairs.jsonl:2: pair_id .* does not match"):
        read_pairs(path)


def test_read_verdicts_applies_undo_and_keeps_the_last_verdict_per_annotator(tmp_path):
    rows = [
        _verdict_row("p1", "a"),
        _verdict_row("p1", "b"),  # replaces a
        _verdict_row("p1", "tie", "other"),  # another annotator: kept apart
        _verdict_row("p2", "a"),
        _verdict_row("p2", "b"),
        {"pair_id": "p2", "undo": True, "annotator": "ann"},  # b undone: a holds again
        _verdict_row("p3", "skip"),
        {"pair_id": "p3", "undo": True, "annotator": "ann"},  # nothing left on p3
        {"pair_id": "p3", "undo": True, "annotator": "ann"},  # nothing to undo: no effect
    ]
    path = tmp_path / "v.jsonl"
    write_jsonl(path, rows)
    with open(path, "a") as handle:
        handle.write('{"pair_id": "p4", "verd')  # a writer killed mid-line
    got = {(v.pair_id, v.annotator): v.verdict for v in read_verdicts(path)}
    assert got == {("p1", "ann"): "b", ("p1", "other"): "tie", ("p2", "ann"): "a"}


def test_unknown_verdict_value_is_an_error_with_its_line(tmp_path):
    path = write_jsonl(tmp_path / "v.jsonl", [_verdict_row("p1", "a"), _verdict_row("p", "A>B")])
    with pytest.raises(DataError, match=r"v.jsonl:2: unknown verdict 'A>B'"):
        read_verdicts(path)
