"""`alignkit.labelling.auto`: Cohen's kappa and the agreement report by hand, and `label auto`
with a function judge (cached replies, agreement with people) and a reward function."""

from __future__ import annotations

import json

import pytest
from conftest import (
    _pairs_file,
    _verdict_row,
    length_reward,  # noqa: F401 (named by a --reward-model spec)
    prefers_kind,  # noqa: F401 (named by a --judge spec)
    run_label,
    write_jsonl,
)

from alignkit.io import read_jsonl as read_rows
from alignkit.labelling.auto import agreement, cohen_kappa
from alignkit.labelling.pairs import Verdict


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
