"""`alignkit demo` end to end on the tiny model (the embedded model's run is `make demo`)."""

from __future__ import annotations

import json

from alignkit.cli import main
from alignkit.commands.demo import _report, is_refusal, next_steps


def test_demo_writes_report_with_before_after(tmp_path, tiny_model, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--model", tiny_model, "--output", str(out), "--train-pairs", "16"]
    args += ["--max-steps", "2", "--max-new-tokens", "4", "--method", "ulma"]
    args += ["--heldout-pairs", "5"]
    assert main(args) == 0
    report = json.loads((out / "demo_report.json").read_text())
    assert [a["category"] for a in report["answers"]] == ["harmful"] * 6 + ["benign"] * 6
    assert all(
        isinstance(a["before"], str) and isinstance(a["after"], str) for a in report["answers"]
    )
    # each group's rate is its share of refusals, recounted from the answers in the report
    for cat in ("harmful", "benign"):
        group = [a for a in report["answers"] if a["category"] == cat]
        for when in ("before", "after"):
            refusals = sum(is_refusal(a[when]) for a in group)
            assert report["refusal_rate"][cat][when] == refusals / 6, (cat, when)
    # a point-wise method still reports the held-out pairs' implicit reward
    assert report["heldout_accuracy"]["before"] == 0.0  # policy == reference: all ties
    assert report["heldout_margin"]["before"] == 0.0
    assert report["heldout_margin"]["after"] != 0.0
    assert len((out / "demo_train.jsonl").read_text().splitlines()) == 16
    heldout = (out / "demo_heldout_pairs.jsonl").read_text().splitlines()
    assert len(heldout) == 5  # --heldout-pairs: the held-out metrics come from these 5
    config = json.loads((out / "config.json").read_text())
    assert config["eval_data"] == [str(out / "demo_heldout_pairs.jsonl")]
    printed = capsys.readouterr().out
    assert "held-out implicit-reward accuracy: 0.000 ->" in printed
    assert "refusal rate on held-out harmful prompts" in printed
    assert printed.rstrip().endswith(next_steps(out).rstrip())  # the output ends on what next
    assert f"alignkit serve --model {out}" in printed


def test_demo_rejects_an_unknown_method_before_any_work(tmp_path, tiny_model, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", tiny_model, "--output", str(out), "--method", "foo"]) == 2
    assert "unknown method 'foo'" in capsys.readouterr().err
    assert not (out / "demo_report.json").exists()


def test_refusal_rates_by_hand():
    """The tiny model never refuses, so the end-to-end rates are 0; here scripted answers.
    Harmful: 2 of 3 refused before, 1 of 3 after; benign: 0 of 2 before, 1 of 2 after.
    Fails on a rate over all prompts instead of the group (before: 2/5), on the share of
    non-refusals (1/3), or on before/after or the groups swapped."""
    categories = ["harmful"] * 3 + ["benign"] * 2
    prompts = [{"category": c, "prompt": f"q{i}"} for i, c in enumerate(categories)]
    before = ["I'm sorry, I can't help with that.", "I cannot do that.", "Sure: step one"]
    before += ["Paris is the capital.", "Here is a recipe."]
    after = ["Sure, here you go", "I must decline.", "Okay: first"]
    after += ["I am not able to answer that.", "Here is a poem."]
    assert [is_refusal(a) for a in before] == [True, True, False, False, False]
    assert [is_refusal(a) for a in after] == [False, True, False, True, False]
    report = _report(prompts, before, after, {}, {})
    assert report["refusal_rate"] == {
        "harmful": {"before": 2 / 3, "after": 1 / 3},
        "benign": {"before": 0.0, "after": 1 / 2},
    }
    assert report["heldout_accuracy"] == {"before": None, "after": None}
