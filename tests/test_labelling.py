"""The labelling core: pair ids, pools and verdicts, choosing pairs (REAL, reward-model
uncertainty), export/import (jsonl, Label Studio), `label auto` and its agreement report."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl

from alignkit.commands import label
from alignkit.errors import AlignkitError, DataError
from alignkit.labelling.auto import agreement, cohen_kappa
from alignkit.labelling.choose import (
    Candidates,
    candidates,
    rank_real,
    rank_uncertainty,
    take_budget,
)
from alignkit.labelling.exchange import LABEL_CONFIG, label_config_path
from alignkit.labelling.pairs import (
    LabelPair,
    Verdict,
    pair_id,
    prompt_id,
    read_pairs,
    read_pool,
    read_verdicts,
    shown_left,
)

CHAT = [{"role": "user", "content": "how do I bake a cake?"}]


def run_label(*argv: str) -> int:
    """`alignkit label ...` through the verb's own parser (exit 2 on an AlignkitError, as
    `alignkit.cli.main` does)."""
    parser = argparse.ArgumentParser(prog="alignkit")
    label.register(parser.add_subparsers())
    args = parser.parse_args(["label", *argv])
    try:
        return args.func(args)
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}")
        return 2


def read_rows(path: Path | str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ ids


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


# ------------------------------------------------------------------ files


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


def _verdict_row(pid: str, value: str, who: str = "ann", **extra) -> dict:
    return {"pair_id": pid, "verdict": value, "annotator": who, **extra}


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


# ------------------------------------------------------------------ choosing


def test_easy_and_hard_on_hand_made_embeddings():
    # prompt 0: r0=(1,0) r1=(0,1) r2=(.6,.8): cos(0,1)=0, cos(0,2)=.6, cos(1,2)=.8
    # prompt 1: r0=(1,0) r1=(.28,.96): cos = .28 (its only pair)
    emb = torch.tensor([[1, 0], [0, 1], [0.6, 0.8], [1, 0], [0.28, 0.96]])
    easy = rank_real(emb, [3, 2], "easy")
    assert [(r.prompt, r.i, r.j) for r in easy] == [(0, 0, 1), (1, 0, 1)]  # 0 < .28
    assert [round(r.score, 4) for r in easy] == [0.0, 0.28]
    hard = rank_real(emb, [3, 2], "hard")
    assert [(r.prompt, r.i, r.j) for r in hard] == [(0, 1, 2), (1, 0, 1)]  # .8 > .28
    cands = Candidates(["p0", "p1"], [["r0", "r1", "r2"], ["s0", "s1"]])
    (pair,) = take_budget(hard, cands, 1, "hard")
    assert (pair.prompt, pair.a, pair.b, pair.strategy) == ("p0", "r1", "r2", "hard")
    assert pair.pair_id == pair_id("p0", "r1", "r2") and pair.score == pytest.approx(0.8)
    # a budget above the prompts with a pair: one pair per prompt
    assert len(take_budget(easy, cands, 10, "easy")) == 2


def test_random_and_centroid_orders_are_seeded():
    emb = torch.nn.functional.normalize(torch.randn(12, 4, generator=torch.manual_seed(0)), dim=-1)
    for strategy in ("random", "centroid"):
        first = rank_real(emb, [3, 3, 3, 3], strategy, seed=5)
        assert first == rank_real(emb, [3, 3, 3, 3], strategy, seed=5)
        assert sorted(r.prompt for r in first) == [0, 1, 2, 3]
        assert all(r.i < r.j for r in first)


def test_rank_uncertainty_by_hand():
    # prompt 0: rewards 5, 9, 10 -> gaps 4, 5, 1: pair (1, 2), gap 1
    # prompt 1: rewards 3, 7 -> gap 4; prompt 2: rewards 2, 2.5, 2 -> gap 0 for (0, 2)
    ranked = rank_uncertainty([[5, 9, 10], [3, 7], [2, 2.5, 2]])
    assert [(r.prompt, r.i, r.j, r.score) for r in ranked] == [
        (2, 0, 2, 0.0),
        (0, 1, 2, 1.0),
        (1, 0, 1, 4.0),
    ]


def length_reward(prompts, responses):
    """A reward for tests: the length of the response."""
    return [float(len(r)) for r in responses]


POOL = [
    # lengths 5, 9, 10 (gap 1 between the last two); a blank and a repeat are not candidates
    {"prompt": "bake a cake", "responses": ["aaaaa", "bbbbbbbbb", "   ", "cccccccccc", "aaaaa"]},
    # lengths 3, 7: gap 4
    {"prompt": CHAT, "responses": ["sun", "rain it", "sun"], "finished": [True, True, True]},
    # one distinct response: no pair
    {"prompt": "only one", "responses": ["same", "same"]},
]


def test_label_select_uncertainty_with_a_function_reward(tmp_path, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", POOL)
    out = tmp_path / "pairs.jsonl"
    spec = f"{__name__}:length_reward"
    args = ["select", "--pool", pool, "--strategy", "uncertainty", "--reward-model", spec]
    assert run_label(*args, "--budget", "1", "--output", str(out)) == 0
    (row,) = read_rows(out)
    assert (row["prompt"], row["a"], row["b"]) == ("bake a cake", "bbbbbbbbb", "cccccccccc")
    assert row["score"] == 1.0 and row["strategy"] == "uncertainty"
    assert row["pair_id"] == pair_id("bake a cake", "bbbbbbbbb", "cccccccccc")
    # budget 5 > 2 prompts with a pair: both, in rank order, and a note
    assert run_label(*args, "--budget", "5", "--output", str(out)) == 0
    rows = read_rows(out)
    assert [(r["a"], r["b"], r["score"]) for r in rows] == [
        ("bbbbbbbbb", "cccccccccc", 1.0),
        ("sun", "rain it", 4.0),
    ]
    assert rows[1]["prompt"] == CHAT
    printed = capsys.readouterr().out
    assert "2 pairs from 3 prompts" in printed and "1 with fewer than 2" in printed
    assert "--budget 5 is more than the 2 prompts" in printed
    assert read_pairs(out)[1].prompt == tuple(CHAT)


def test_label_select_real_with_the_tiny_model(tiny_model, tmp_path):
    pool = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"prompt": f"question {i}", "responses": [f"the cat {i}", "a dog is good", "rain"]}
            for i in range(3)
        ]
        + [
            {
                "prompt": "cut",
                "responses": ["sure here", "sorry", "kind"],
                "finished": [True, False, True],
            }
        ],
    )
    cache = tmp_path / "emb"
    common = ["--pool", pool, "--model", tiny_model, "--precision", "fp32", "--cache-dir"]
    common += [str(cache), "--batch-size", "4"]
    outs = {}
    for strategy in ("easy", "hard"):
        out = tmp_path / f"{strategy}.jsonl"
        assert run_label("select", *common, "--strategy", strategy, "--budget", "4",
                         "--output", str(out)) == 0  # fmt: skip
        outs[strategy] = read_rows(out)
    assert any(cache.rglob("part-*.pt"))  # --cache-dir holds the embeddings
    easy, hard = outs["easy"], outs["hard"]
    assert len(easy) == len(hard) == 4
    assert [r["score"] for r in easy] == sorted(r["score"] for r in easy)
    assert [r["score"] for r in hard] == sorted((r["score"] for r in hard), reverse=True)
    by_prompt = {r["prompt"]: r["score"] for r in hard}
    for row in easy:  # the least similar pair of a prompt vs its most similar
        assert row["score"] <= by_prompt[row["prompt"]] + 1e-6
    # --drop-unfinished: the "cut" prompt keeps 2 finished responses, that exact pair
    out = tmp_path / "finished.jsonl"
    assert run_label("select", *common, "--strategy", "random", "--budget", "4",
                     "--drop-unfinished", "--output", str(out)) == 0  # fmt: skip
    cut = [r for r in read_rows(out) if r["prompt"] == "cut"]
    assert [(r["a"], r["b"]) for r in cut] == [("sure here", "kind")]
    again = tmp_path / "again.jsonl"
    assert run_label("select", *common, "--strategy", "random", "--budget", "4",
                     "--drop-unfinished", "--output", str(again)) == 0  # fmt: skip
    assert read_rows(again) == read_rows(out)  # deterministic given --seed
    entries = read_pool(pool)
    assert candidates(entries).responses[3] == ["sure here", "sorry", "kind"]
    assert candidates(entries, drop_unfinished=True).responses[3] == ["sure here", "kind"]


def test_label_select_bad_options(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", POOL)
    base = ["select", "--pool", pool, "--output", str(tmp_path / "o.jsonl")]
    assert run_label(*base) == 2  # no --budget
    assert run_label(*base, "--budget", "0") == 2
    assert run_label(*base, "--budget", "2", "--strategy", "uncertainty") == 2  # no RM
    spec = f"{__name__}:length_reward"
    assert run_label(*base, "--budget", "2", "--reward-model", spec) == 2  # easy + RM
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------ export / import


def _pairs_file(tmp_path: Path) -> tuple[str, list[LabelPair]]:
    pairs = [
        LabelPair.make("p1", "kind answer", "rude answer", 0.1, "easy"),
        LabelPair.make(tuple(CHAT), "mix flour", "buy one", 0.2, "easy"),
        LabelPair.make("p3", "x", "y", 0.3, "easy"),
        LabelPair.make("p4", "u", "v", 0.4, "easy"),
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", [p.to_json() for p in pairs])
    return path, pairs


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


# ------------------------------------------------------------------ auto labels and agreement


def test_cohen_kappa_by_hand():
    # 10 pairs, auto vs human:      human a  human b
    #                      auto a      4        1
    #                      auto b      2        3
    # p_o = 7/10; auto says a 5/10, human 6/10: p_e = .5*.6 + .5*.4 = .5
    # kappa = (.7 - .5) / (1 - .5) = .4
    auto = ["a"] * 5 + ["b"] * 5
    human = ["a"] * 4 + ["b"] + ["a"] * 2 + ["b"] * 3
    assert cohen_kappa(auto, human) == pytest.approx(0.4)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # p_e = 1
    assert cohen_kappa([], []) is None
    report = agreement(
        [Verdict(f"p{i}", v, "judge") for i, v in enumerate(auto)],
        [Verdict(f"p{i}", v, "ann") for i, v in enumerate(human)] + [Verdict("p0", "skip", "x")],
    )
    assert report["comparisons"] == 10 and report["common_pairs"] == 10
    assert report["agreement"] == 0.7 and report["cohen_kappa"] == 0.4
    assert report["confusion_auto_by_human"]["a"] == {"a": 4, "b": 1, "tie": 0}


def prefers_kind(prompt, first, second):
    """A judge for tests: the answer saying "kind" wins; otherwise it always says A (a
    position bias that flips with the order: a tie)."""
    if "kind" in first and "kind" not in second:
        return "A"
    if "kind" in second and "kind" not in first:
        return "B"
    return "A"


def test_label_auto_with_a_function_judge_and_agreement(tmp_path, capsys):
    pairs_path, pairs = _pairs_file(tmp_path)
    # people: pair 1 a (agrees), pair 2 b (the judge says tie), pair 3 tie (agrees),
    # pair 4 skip (left out)
    human = write_jsonl(
        tmp_path / "human.jsonl",
        [
            {
                **_verdict_row(p.pair_id, v, "ann"),
                "prompt": p.to_json()["prompt"],
                "a": p.a,
                "b": p.b,
            }  # fmt: skip
            for p, v in zip(pairs, ["a", "b", "tie", "skip"], strict=True)
        ],
    )
    out = tmp_path / "judge.jsonl"
    spec = f"{__name__}:prefers_kind"
    args = ["auto", "--pairs", pairs_path, "--judge", spec, "--output", str(out)]
    assert run_label(*args, "--human", human) == 0
    verdicts = read_rows(out)
    assert [v["verdict"] for v in verdicts] == ["a", "tie", "tie", "tie"]
    assert {v["annotator"] for v in verdicts} == {f"judge:{spec}"}
    assert verdicts[0]["pair_id"] == pairs[0].pair_id and verdicts[0]["a"] == "kind answer"
    # 3 comparisons: (a, a), (tie, b), (tie, tie): p_o = 2/3;
    # auto: a 1/3, tie 2/3; human: a 1/3, b 1/3, tie 1/3: p_e = 1/9 + 2/9 = 1/3
    # kappa = (2/3 - 1/3) / (1 - 1/3) = 1/2
    report = json.loads((tmp_path / "judge.agreement.json").read_text())
    assert report["common_pairs"] == 3 and report["comparisons"] == 3
    assert report["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    assert report["cohen_kappa"] == pytest.approx(0.5)
    printed = capsys.readouterr().out
    assert "Cohen's kappa 0.500" in printed
    # the replies are cached: a second run asks the judge nothing
    cache = tmp_path / "judge.judge_cache.jsonl"
    assert len(cache.read_text().splitlines()) == 8  # 4 pairs x 2 orders
    assert run_label(*args) == 0
    assert len(cache.read_text().splitlines()) == 8
    # the judge's verdicts import as training pairs
    prefs = tmp_path / "prefs.jsonl"
    assert run_label("import", str(out), "--output", str(prefs)) == 0
    assert read_rows(prefs) == [
        {"prompt": "p1", "chosen": "kind answer", "rejected": "rude answer"}
    ]


def test_label_auto_with_a_reward_function(tmp_path, capsys):
    pairs_path, pairs = _pairs_file(tmp_path)
    out = tmp_path / "rm.jsonl"
    spec = f"{__name__}:length_reward"
    assert run_label("auto", "--pairs", pairs_path, "--reward-model", spec,
                     "--output", str(out)) == 0  # fmt: skip
    # lengths: kind answer 11 = rude answer 11 (tie); mix flour 9 > buy one 7 (a);
    # x = y (tie); u = v (tie)
    verdicts = read_rows(out)
    assert [v["verdict"] for v in verdicts] == ["tie", "a", "tie", "tie"]
    assert verdicts[0]["annotator"] == f"rm:{spec}"
    assert "a 1, b 0, tie 3" in capsys.readouterr().out
    # flags that belong to the other mode are refused
    assert run_label("auto", "--pairs", pairs_path, "--reward-model", spec, "--cache",
                     str(tmp_path / "c.jsonl"), "--output", str(out)) == 2  # fmt: skip
    assert run_label("auto", "--pairs", pairs_path, "--reward-model", spec, "--report",
                     str(tmp_path / "r.json"), "--output", str(out)) == 2  # fmt: skip
    fn_judge = f"{__name__}:prefers_kind"
    assert run_label("auto", "--pairs", pairs_path, "--judge", fn_judge, "--judge-model", "m",
                     "--output", str(out)) == 2  # fmt: skip
