"""`alignkit.labelling.exchange`: export and import through `label export` / `label import`
(jsonl and Label Studio), ties and skips counted, tampered texts refused, votes of several
annotators."""

from __future__ import annotations

import json

from conftest import CHAT, _pairs_file, _verdict_row, run_label, write_jsonl

from alignkit.io import read_jsonl as read_rows
from alignkit.labelling.exchange import LABEL_CONFIG, label_config_path
from alignkit.labelling.pairs import shown_left


def test_jsonl_export_import_round_trip_counts_ties_and_skips(tmp_path, capsys):
    pairs_path, pairs = _pairs_file(tmp_path)
    exported = tmp_path / "to_label.jsonl"
    assert run_label("export", "--pairs", pairs_path, "--format", "jsonl",
                     "--output", str(exported)) == 0  # fmt: skip
    rows = read_rows(exported)
    assert [r["verdict"] for r in rows] == [""] * 4
    assert rows[1]["prompt"] == CHAT and rows[0]["pair_id"] == pairs[0].pair_id
    for row, value in zip(rows, ["a", "b", "tie", "skip"], strict=True):
        row["verdict"] = value
    filled = write_jsonl(tmp_path / "filled.jsonl", rows)
    out = tmp_path / "prefs.jsonl"
    assert run_label("import", filled, "--output", str(out)) == 0
    assert read_rows(out) == [
        {"prompt": "p1", "chosen": "kind answer", "rejected": "rude answer"},
        {"prompt": CHAT, "chosen": "buy one", "rejected": "mix flour"},
    ]
    printed = capsys.readouterr().out
    assert "2 pairs written" in printed and "ties 1, skips 1" in printed
    assert "refused 0" in printed
    # the output is trainable preference data
    from alignkit.data import load_records

    records, _ = load_records([str(out)], "auto")
    assert [r.chosen for r in records] == ["kind answer", "buy one"]


def test_a_tampered_text_is_refused_with_its_line(tmp_path, capsys):
    pairs_path, pairs = _pairs_file(tmp_path)
    rows = [{**p.to_json(), "verdict": "a"} for p in pairs]
    rows[2]["b"] = "y, edited after selection"
    filled = write_jsonl(tmp_path / "filled.jsonl", rows)
    out = tmp_path / "prefs.jsonl"
    assert run_label("import", filled, "--output", str(out)) == 0
    assert len(read_rows(out)) == 3
    printed = capsys.readouterr().out
    assert "refused 1" in printed
    assert f"refused: {filled}:3: pair_id {pairs[2].pair_id} does not match" in printed
    # --strict: the import stops and writes nothing
    strict = tmp_path / "strict.jsonl"
    assert run_label("import", filled, "--output", str(strict), "--strict") == 2
    assert f"{filled}:3" in capsys.readouterr().out and not strict.exists()


def test_unknown_verdict_stops_the_import(tmp_path, capsys):
    _, pairs = _pairs_file(tmp_path)
    rows = [{**pairs[0].to_json(), "verdict": "a"}, {**pairs[1].to_json(), "verdict": "left"}]
    filled = write_jsonl(tmp_path / "filled.jsonl", rows)
    assert run_label("import", filled, "--output", str(tmp_path / "o.jsonl")) == 2
    assert f"{filled}:2: unknown verdict 'left'" in capsys.readouterr().out


def test_verdicts_without_texts_are_looked_up_in_pairs(tmp_path, capsys):
    pairs_path, pairs = _pairs_file(tmp_path)
    verdicts = write_jsonl(
        tmp_path / "v.jsonl",
        [
            _verdict_row(pairs[0].pair_id, "b", "ann"),
            _verdict_row("0123456789abcdef", "a", "ann"),  # no such pair
            # two annotators against one on pair 4: b wins 2-1; on pair 3 1-1: split
            _verdict_row(pairs[3].pair_id, "b", "x"),
            _verdict_row(pairs[3].pair_id, "b", "y"),
            _verdict_row(pairs[3].pair_id, "a", "z"),
            _verdict_row(pairs[2].pair_id, "a", "x"),
            _verdict_row(pairs[2].pair_id, "b", "y"),
        ],
    )
    out = tmp_path / "prefs.jsonl"
    assert run_label("import", verdicts, "--output", str(out)) == 2  # no texts, no --pairs
    assert "give the pairs file with --pairs" in capsys.readouterr().out
    assert run_label("import", verdicts, "--pairs", pairs_path, "--output", str(out)) == 0
    assert read_rows(out) == [
        {"prompt": "p1", "chosen": "rude answer", "rejected": "kind answer"},
        {"prompt": "p4", "chosen": "v", "rejected": "u"},
    ]
    printed = capsys.readouterr().out
    assert (
        "split votes 1" in printed and f"{verdicts}:2: pair_id 0123456789abcdef is not" in printed
    )


def test_label_studio_export_and_import(tmp_path, capsys):
    pairs_path, pairs = _pairs_file(tmp_path)
    exported = tmp_path / "tasks.json"
    assert run_label("export", "--pairs", pairs_path, "--format", "label-studio",
                     "--output", str(exported)) == 0  # fmt: skip
    tasks = json.loads(exported.read_text())
    # the left answer (answer1) is a seeded coin per pair, the one `label serve` draws
    sides = [shown_left(0, p.pair_id) for p in pairs]
    assert [t["data"]["answer1_is"] for t in tasks] == sides
    left, right = ("kind answer", "rude answer")[:: 1 if sides[0] == "a" else -1]
    assert tasks[0] == {
        "data": {
            "prompt": "p1",
            "answer1": left,
            "answer2": right,
            "answer1_is": sides[0],
            "pair_id": pairs[0].pair_id,
        }
    }
    assert tasks[1]["data"]["prompt"] == "user: how do I bake a cake?"
    assert tasks[1]["data"]["prompt_messages"] == CHAT
    config = label_config_path(exported)
    assert config.name == "tasks.label_config.xml" and config.read_text() == LABEL_CONFIG
    assert '<Pairwise name="comparison" toName="answer1,answer2"' in LABEL_CONFIG

    # what Label Studio's JSON export gives back after labelling
    def side_of(task: dict, text: str) -> str:  # the person clicks the side showing `text`
        return "left" if task["data"]["answer1"] == text else "right"

    results = [
        [
            {
                "annotations": [
                    {"completed_by": 1, "result": [_pairwise(side_of(tasks[0], "kind answer"))]}
                ]
            }
        ],
        [
            {
                "annotations": [
                    {"completed_by": 1, "result": [_pairwise(side_of(tasks[1], "buy one"))]}
                ]
            }
        ],
        [{"annotations": [{"completed_by": 1, "was_cancelled": True, "result": []}]}],
        [{"annotations": []}],
    ]
    for task, extra in zip(tasks, results, strict=True):
        task.update(extra[0], id=1)
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "prefs.jsonl"
    assert run_label("import", str(tmp_path / "export.json"), "--output", str(out)) == 0
    assert read_rows(out) == [
        {"prompt": "p1", "chosen": "kind answer", "rejected": "rude answer"},
        {"prompt": CHAT, "chosen": "buy one", "rejected": "mix flour"},
    ]
    printed = capsys.readouterr().out
    assert "skips 1" in printed and "without a verdict 1" in printed
    # an export of an older alignkit (no answer1_is) has a on the left
    legacy = json.loads(json.dumps(tasks))
    for task in legacy:
        data = task["data"]
        if data.pop("answer1_is") == "b":
            data["answer1"], data["answer2"] = data["answer2"], data["answer1"]
    legacy[0]["annotations"] = [
        {"completed_by": 1, "result": [_pairwise(side_of(legacy[0], "kind answer"))]}
    ]
    legacy[1]["annotations"] = [
        {"completed_by": 1, "result": [_pairwise(side_of(legacy[1], "buy one"))]}
    ]
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    assert run_label("import", str(tmp_path / "legacy.json"), "--output", str(out)) == 0
    assert read_rows(out)[:2] == [
        {"prompt": "p1", "chosen": "kind answer", "rejected": "rude answer"},
        {"prompt": CHAT, "chosen": "buy one", "rejected": "mix flour"},
    ]
    capsys.readouterr()
    # an answer edited in Label Studio no longer matches the pair id
    tasks[0]["data"]["answer1"] = "kind answer (edited)"
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    assert run_label("import", str(tmp_path / "export.json"), "--output", str(out)) == 0
    assert f"refused: {tmp_path / 'export.json'}[task 1]: pair_id" in capsys.readouterr().out


def _pairwise(side: str) -> dict:
    return {
        "from_name": "comparison",
        "to_name": "answer1,answer2",
        "type": "pairwise",
        "value": {"selected": side},
    }
