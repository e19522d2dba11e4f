"""`alignkit study`: the grid, shared work done once, resume, intervals and labels saved."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pair_rows, write_jsonl

from alignkit.cli import main
from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.study import run as study_run
from alignkit.study.config import parse_study
from alignkit.study.report import aggregate
from alignkit.train.checkpoint import Prepared
from alignkit.train.trainer import Trainer


def test_aggregate_gives_the_t_interval_over_seeds() -> None:
    """Seeds 0.6, 0.7, 0.8: mean 0.7, sample std 0.1, half-width t(0.975, 2) * 0.1 / sqrt 3
    = 4.303 * 0.0577 = 0.2484."""
    rows = [
        {
            "method": "dpo",
            "selector": "random",
            "budget": 0.5,
            "count": 10,
            "seed": s,
            "metrics": {"accuracy": a},
        }
        for s, a in enumerate([0.6, 0.7, 0.8])
    ]
    (row,) = aggregate(rows, ["accuracy"])
    iv = row["accuracy"]
    assert row["seeds"] == [0, 1, 2] and iv["mean"] == pytest.approx(0.7)
    assert iv["ci95_high"] - iv["mean"] == pytest.approx(4.303 * 0.1 / 3**0.5, abs=1e-4)
    assert iv["n"] == 3 and iv["nonfinite"] == 0


def test_subset_of_reindexes_rows_and_reference() -> None:
    """Pool records 0..3, record 2 dropped by the encoder (too long). Keeping records [3, 2, 0]
    gives encoded rows for 3 and 0, re-indexed 0 and 1, with their reference rows."""
    enc = [Encoded([1], [[2], [3]], [1.0, 0.0], [True, False], True, i) for i in (0, 1, 2)]
    ref = torch.tensor([[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0]])
    full = Prepared(enc, None, 2, records=[0, 1, 3])
    rows = study_run.subset_rows(full, np.array([3, 2, 0]))
    assert rows == [2, 0]
    sub = study_run.subset_of(full, rows, ref[rows])
    assert [e.index for e in sub.encoded] == [0, 1]
    assert [e.prompt for e in sub.encoded] == [[1], [1]]
    assert torch.equal(sub.ref, torch.tensor([[-5.0, -6.0], [-1.0, -2.0]]))


def test_reference_log_probs_are_computed_once_per_row_and_only_when_needed() -> None:
    """Cell 1 needs rows [2, 0], cell 2 rows [0, 1]: the reference scores rows 0 and 2, then
    only row 1; every row gets its own values whichever cell asked first."""
    enc = [Encoded([1], [[2], [3]], [1.0, 0.0], [True, False], True, i) for i in (0, 1, 2)]
    full = Prepared(enc, None, 2)
    truth = torch.tensor([[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0]])
    asked: list[list[int]] = []

    def compute(encoded: list[Encoded]) -> torch.Tensor:  # the reference of the given rows
        asked.append([e.index for e in encoded])
        return torch.stack([truth[int(e.prompt[0])] for e in encoded])

    for r, e in enumerate(enc):  # mark each row by its pool position, to check the lookup
        enc[r] = Encoded([r], e.responses, e.labels, e.high_quality, True, r)
    shared = study_run.SharedData()
    first = shared.with_reference(("k",), full, [2, 0], compute, chunk=1)
    second = shared.with_reference(("k",), full, [0, 1], compute, chunk=1)
    assert torch.equal(first, truth[[2, 0]])
    assert torch.equal(second, truth[[0, 1]])
    assert asked == [[0, 1], [0]]  # rows 0, 2 re-indexed 0..1; then row 1 alone as index 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"selectors": [{"name": "length"}]}, "control"),
        ({"budgets": [1.5]}, "budget"),
        ({"train": {"seed": 3}}, "may not set"),
        ({"methods": [{"name": "d", "method": "dpo", "options": {"data": "x"}}]}, "may not set"),
        ({"colour": "red"}, "unknown key"),
        ({"selectors": [{"name": "random"}, {"name": "nope"}]}, "nope"),
        ({"metrics": ["bleu"]}, "unknown metric"),
        (
            {"selectors": [{"name": "random"}, {"name": "length", "keep": "misranked"}]},
            "keep must be lowest, highest, near-zero, got 'misranked'",
        ),
        (  # the tiny model has no base to be the reference: refused before any pass
            {"selectors": [{"name": "random"}, {"name": "length"}, {"name": "reward-gap"}]},
            "selector reward-gap: reward-gap: .* has no base model",
        ),
    ],
)
def test_bad_study_configs_are_refused(change, message, tiny_model, tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    raw = _raw(data, data, tmp_path / "out", tiny_model)
    raw.update(change)
    with pytest.raises(AlignkitError, match=message):
        parse_study(raw)


def test_a_study_names_the_keep_rules_of_a_margin(tiny_model, tmp_path) -> None:
    """reward-gap's keep names (misranked, ...) are read as the rules they stand for; with no
    keep, a cell keeps by the selector's default (uncertain = near-zero)."""
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    raw = _raw(data, data, tmp_path / "out", tiny_model)
    gap = {"name": "reward-gap", "options": {"ref": "none"}}
    raw["selectors"] = [
        {"name": "random"},
        {**gap, "label": "misranked", "keep": "misranked"},
        {**gap, "label": "uncertain"},
        {"name": "rm-margin", "label": "rm", "keep": "uncertain", "options": {"reward_model": "x"}},
    ]
    selectors = parse_study(raw).selectors
    assert [study_run.keep_rule(s) for s in selectors] == ["lowest", "lowest", "near-zero",
                                                           "near-zero"]  # fmt: skip
    assert selectors[1].keep == "lowest"  # the cell's settings name the rule, not the alias


def _raw(data: str, eval_data: str, out: Path, model: str) -> dict:
    return {
        "data": data,
        "eval_data": eval_data,
        "output": str(out),
        "model": model,
        "selectors": [{"name": "random"}, {"name": "length", "keep": "lowest"}],
        "budgets": [0.5, 1.0],
        "seeds": [0, 1],
        "methods": [{"name": "dpo", "method": "dpo"}],
        "train": {"lr": 1e-3, "batch_size": 4, "epochs": 1, "precision": "fp32", "max_length": 64},
        "selection": {"batch_size": 8},
    }


def test_a_study_runs_shares_work_resumes_and_reports(tiny_model, tmp_path, monkeypatch, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", pair_rows(12))
    held = write_jsonl(tmp_path / "held.jsonl", pair_rows(6, seed=5))
    out = tmp_path / "study"
    cfg = tmp_path / "study.yaml"
    cfg.write_text(json.dumps(_raw(pool, held, out, tiny_model)))  # JSON is YAML
    prepared: list[int] = []
    original = Trainer.prepare

    def counting(self, records, tokenizer, scorer, with_ref=None):
        prepared.append(len(records))
        return original(self, records, tokenizer, scorer, with_ref)

    monkeypatch.setattr(Trainer, "prepare", counting)
    passes: list[int] = []
    original_map = Trainer._eval_map

    def counting_map(self, data, pad_id, work):
        passes.append(len(data.encoded))
        return original_map(self, data, pad_id, work)

    monkeypatch.setattr(Trainer, "_eval_map", counting_map)
    assert main(["study", "--config", str(cfg)]) == 0
    # 2 selectors x 2 budgets x 2 seeds = 8 cells, but the pool (12 pairs) and the held-out
    # pairs (6) are tokenized and scored by the reference once each
    assert sorted(prepared) == [6, 12]
    # one pass over the 6 held-out pairs per cell gives both its metrics and its outcomes
    assert passes == [6] * 8
    report = json.loads((out / "study.json").read_text())
    assert len(report["cells"]) == 8 and report["pool_size"] == 12
    counts = {(c["selector"], c["budget"]): c["count"] for c in report["cells"]}
    assert counts[("random", 0.5)] == 6 and counts[("length", 1.0)] == 12
    random_half = [c for c in report["cells"] if c["selector"] == "random" and c["budget"] == 0.5]
    subsets = {
        c["seed"]: (out / "cells" / c["id"].replace("/", "__") / "subset.jsonl").read_text()
        for c in random_half
    }
    assert subsets[0] != subsets[1]  # the control draws another subset per seed
    for cell in report["cells"]:
        assert 0.0 <= cell["metrics"]["accuracy"] <= 1.0 and cell["metrics"]["dpo_loss"] > 0
    assert {r["selector"] for r in report["labels_saved"]} == {"random", "length"}
    # length of the chosen answer reads the pool's labels: training saved, not labels
    saved = {r["selector"]: r for r in report["labels_saved"] if r["metric"] == "accuracy"}
    assert saved["length"]["labels_saved"] is None and saved["length"]["reads_labels"]
    # random is label-free: its own row (where its curve flattens) counts as labels saved
    assert saved["random"]["labels_saved"] == saved["random"]["training_saved"] is not None
    md = (out / "study.md").read_text()
    assert "Labels saved" in md and "| dpo | length | 0.5 | 6 |" in md
    assert "n/a (uses the pool's labels)" in md and "Paired differences to `random`" in md
    assert "no per-item outcomes" not in md  # every cell wrote its per-pair outcomes
    # every cell's per-pair held-out outcomes: the same 6 pairs, and the mean of `correct`
    # is the cell's accuracy
    ids = None
    for cell in report["cells"]:
        path = out / "cells" / cell["id"].replace("/", "__") / "heldout_outcomes.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        assert [r["index"] for r in rows] == list(range(6))
        ids = ids or [r["id"] for r in rows]
        assert [r["id"] for r in rows] == ids
        correct = sum(r["correct"] for r in rows) / 6
        assert correct == pytest.approx(cell["metrics"]["accuracy"])
        margin = sum(r["margin"] for r in rows) / 6
        assert margin == pytest.approx(cell["metrics"]["margin"], abs=1e-4)
        assert all(r["correct"] == (r["margin"] > 0) for r in rows)
        row = json.loads((path.parent / "cell.json").read_text())
        assert row["eval_s"] > 0  # the held-out pass, timed apart from the cell's set-up
    assert (out / "dpo_accuracy.png").stat().st_size > 1000
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert len(lines) == 8 and "ETA" in lines[-1]

    # a killed study resumes: finished cells are skipped, a missing one is run again
    victim = out / "cells" / report["cells"][3]["id"].replace("/", "__") / "cell.json"
    victim.unlink()
    ran: list[str] = []
    original_cell = study_run.run_cell

    def recording(config, cell, *args):
        ran.append(cell.id)
        return original_cell(config, cell, *args)

    monkeypatch.setattr(study_run, "run_cell", recording)
    first = json.loads((out / "timings.json").read_text())
    assert len(first["cells_s"]) == 8 and [r["cells"] for r in first["runs"]] == [8]
    assert main(["study", "--config", str(cfg)]) == 0
    assert ran == [report["cells"][3]["id"]]
    # the timings keep the first run's cells and add the resumed one's; a run with nothing
    # left to do leaves them as they are
    timings = json.loads((out / "timings.json").read_text())
    assert [r["cells"] for r in timings["runs"]] == [8, 1] and len(timings["cells_s"]) == 8
    assert timings["cells_s"][ran[0]] <= timings["runs"][1]["cells_wall_s"]
    assert all(
        timings["cells_s"][c] == first["cells_s"][c] for c in first["cells_s"] if c not in ran
    )
    assert timings["wall_s"] >= timings["cells_wall_s"] and timings["shared_s"] >= 0
    assert main(["study", "--config", str(cfg)]) == 0
    assert json.loads((out / "timings.json").read_text()) == timings
    # a finished cell whose settings changed (another lr in the YAML) is not reported as is
    config = parse_study(_raw(pool, held, out, tiny_model))
    changed = parse_study({**_raw(pool, held, out, tiny_model), "train": {"lr": 1e-4}})
    cell = study_run.plan_cells(config, 12)[0]
    assert study_run._finished(cell, config, out) is not None
    assert study_run._finished(cell, changed, out) is None
    assert not (out / "cells" / cell.id.replace("/", "__") / "model").exists()  # not saved


def short_reward(prompts, responses) -> list[float]:
    """A reward for the test: shorter answers are better (-characters)."""
    return [-float(len(r)) for r in responses]


def test_online_methods_and_the_reward_metric_in_a_study(tiny_model, tmp_path, monkeypatch):
    """A DPO cell and a RAFT cell (online): both get the reward-model score of greedy answers
    to the first 2 held-out prompts; RAFT samples from its subset's prompts; the DPO cell is
    evaluated on the first 3 held-out pairs only (eval_limit)."""
    pool = write_jsonl(tmp_path / "pool.jsonl", pair_rows(8))
    held = write_jsonl(tmp_path / "held.jsonl", pair_rows(6, seed=5))
    out = tmp_path / "study"
    raw = {
        **_raw(pool, held, out, tiny_model),
        "selectors": [{"name": "random"}],
        "budgets": [4],
        "seeds": [0],
        "methods": [{"name": "dpo", "method": "dpo"}, {"name": "raft", "method": "raft"}],
        "reward_model": f"{__name__}:short_reward",
        "reward_prompts": 2,
        "reward_max_new_tokens": 4,
        "eval_limit": 3,
        "online": {
            "iterations": 1,
            "queries_per_iteration": 2,
            "num_samples": 2,
            "max_new_tokens": 4,
            "batch_size": 2,
            "max_length": 64,
            "precision": "fp32",
        },
    }
    config = parse_study(raw)
    assert config.metrics == ["accuracy", "margin", "dpo_loss", "reward"]
    evaluated: list[int] = []
    original = Trainer.evaluate

    def counting(self, scorer, held_out, *args):
        evaluated.append(len(held_out.encoded))
        return original(self, scorer, held_out, *args)

    monkeypatch.setattr(Trainer, "evaluate", counting)
    report = study_run.run_study(config, progress=lambda line: None)
    cells = {c["method"]: c for c in report["cells"]}
    assert evaluated == [3]  # the DPO cell, after training, on eval_limit pairs
    dpo_dir = out / "cells" / cells["dpo"]["id"].replace("/", "__")
    raft_dir = out / "cells" / cells["raft"]["id"].replace("/", "__")
    rows = [
        json.loads(x) for x in (dpo_dir / "eval" / "generations.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 2 and all(r["reward"] == -len(r["response"]) for r in rows)
    assert cells["dpo"]["metrics"]["reward"] == pytest.approx(sum(r["reward"] for r in rows) / 2)
    assert cells["raft"]["metrics"]["reward"] is not None
    assert cells["raft"]["metrics"]["accuracy"] is None  # no implicit reward for online cells
    queries = (raft_dir / "queries.jsonl").read_text().splitlines()
    subset = (raft_dir / "subset.jsonl").read_text().splitlines()
    assert len(queries) == len({json.dumps(json.loads(x)["prompt"]) for x in subset}) <= 4
    assert (raft_dir / "generations").is_dir() and not (raft_dir / "model").exists()
    md = (out / "study.md").read_text()
    assert "| raft | random | 4 | 4 |" in md and "reward" in md
    logged = [json.loads(x) for x in (raft_dir / "metrics.jsonl").read_text().splitlines()]
    sample_reward = next(r["reward/mean"] for r in logged if "reward/mean" in r)
    curve = report["online_curves"]["raft"]["reward"]  # one iteration, one seed
    assert list(curve) == ["1"] and curve["1"]["mean"] == pytest.approx(sample_reward)
    assert "dpo" not in report["online_curves"] and (out / "online_curves.png").is_file()
    # the untrained model's reward on the same prompts: the line the cells are read against
    before = json.loads((out / "before.json").read_text())["metrics"]["eval/reward"]
    assert report["before_training"] == {"reward": before} and f"reward {before:.3f}" in md


def test_online_methods_need_a_reward_model(tiny_model, tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", pair_rows(4))
    raw = {
        **_raw(data, data, tmp_path / "o", tiny_model),
        "methods": [{"name": "p", "method": "ple"}],
    }
    with pytest.raises(AlignkitError, match="reward_model"):
        parse_study(raw)


def longer_judge(prompt, first, second) -> str:
    """A judge for the test: the longer answer is better; equal lengths tie."""
    return "[[A]]" if len(first) > len(second) else "[[B]]" if len(second) > len(first) else "[[C]]"


def test_judge_win_rate_against_the_baseline_cell_of_the_same_seed(tiny_model, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", pair_rows(8))
    held = write_jsonl(tmp_path / "held.jsonl", pair_rows(6, seed=5))
    out = tmp_path / "study"
    raw = {
        **_raw(pool, held, out, tiny_model),
        "selectors": [{"name": "random"}],
        "budgets": [4],
        "methods": [{"name": "dpo", "method": "dpo"}, {"name": "sft", "method": "sft"}],
        "judge": f"{__name__}:longer_judge",
        "reward_prompts": 3,
        "reward_max_new_tokens": 6,
        "train": {"lr": 0.05, "batch_size": 2, "precision": "fp32", "max_length": 64},
    }
    config = parse_study(raw)
    assert config.metrics[-1] == "win_rate" and config.baseline_key() == ("dpo", "random", 4.0)
    report = study_run.run_study(config, progress=lambda line: None)
    for cell in report["cells"]:
        if cell["method"] == "dpo":  # the baseline: no win rate against itself
            assert cell["metrics"]["win_rate"] is None
            continue
        base = f"dpo/random/b4/s{cell['seed']}"
        assert cell["win_rate_against"] == base

        def answers(cell_id: str) -> list[str]:
            path = out / "cells" / cell_id.replace("/", "__") / "eval" / "generations.jsonl"
            return [json.loads(x)["response"] for x in path.read_text().splitlines()]

        points = [  # both orders agree for this judge: 1 win, 1/2 tie, 0 loss
            1.0 if len(a) > len(b) else 0.5 if len(a) == len(b) else 0.0
            for a, b in zip(answers(cell["id"]), answers(base), strict=True)
        ]
        assert len(points) == 3
        assert cell["metrics"]["win_rate"] == pytest.approx(sum(points) / 3)
    assert (out / "methods_win_rate.png").is_file()
    bad = {**raw, "baseline": {"method": "ppo"}}
    with pytest.raises(AlignkitError, match="baseline method"):
        parse_study(bad)


def test_a_changed_default_runs_the_cell_again(tmp_path, monkeypatch) -> None:
    """A finished cell is reused only if it applied the keep rule its selector has now: a
    default that changes (here `length`'s, highest -> lowest) runs it again (as does a keep
    written into the grid: other settings)."""
    data = write_jsonl(tmp_path / "pool.jsonl", pair_rows(8))
    raw = {
        "data": data,
        "eval_data": data,
        "output": str(tmp_path / "out"),
        "model": "m",
        "selectors": [{"name": "random"}, {"name": "length"}],
        "budgets": [4],
        "seeds": [0],
        "methods": [{"name": "dpo", "method": "dpo"}],
    }
    config = parse_study(raw)
    (cell,) = [c for c in study_run.plan_cells(config, 8) if c.selector.name == "length"]
    folder = cell.directory(Path(config.output))
    folder.mkdir(parents=True)
    row = {"id": cell.id, "keep": "highest", "settings": study_run.cell_settings(config, cell)}
    (folder / study_run.CELL_FILE).write_text(json.dumps(row))
    assert study_run._finished(cell, config, Path(config.output)) == row
    selectors = [{"name": "random"}, {"name": "length", "keep": "highest"}]
    spelled = parse_study({**raw, "selectors": selectors})
    (same,) = [c for c in study_run.plan_cells(spelled, 8) if c.selector.name == "length"]
    assert study_run._finished(same, spelled, Path(config.output)) is None  # other settings
    changed = dataclasses.replace(study_run.get_selector("length"), default_keep="lowest")
    monkeypatch.setattr(study_run, "get_selector", lambda name: changed)
    assert study_run._finished(cell, config, Path(config.output)) is None
