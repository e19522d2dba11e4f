"""One model load per study process: every cell gets the model as a fresh run loads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pair_rows, write_jsonl

import alignkit.study.kept_model as kept_model
import alignkit.train.trainer as trainer_module
from alignkit.study import run as study_run
from alignkit.study.config import parse_study


def study_raw(pool: str, held: str, out: Path, model: str, **extra) -> dict:
    """4 cells: full fine-tuning then LoRA (dropout 0.1: the seeded stream matters), 2 seeds
    each, 6 random pairs of 12, 3 steps of 2 pairs."""
    return {
        "data": pool,
        "eval_data": held,
        "output": str(out),
        "model": model,
        "selectors": [{"name": "random"}],
        "budgets": [6],
        "seeds": [0, 1],
        "methods": [
            {"name": "full", "method": "dpo"},
            {"name": "lora", "method": "dpo", "options": {"lora": True, "lora_r": 4}},
        ],
        "train": {"lr": 1e-2, "batch_size": 2, "precision": "fp32", "max_length": 64},
        **extra,
    }


def cell_outputs(out: Path, cell_id: str) -> dict:
    """What a cell computed: its row's metrics and steps, the per-pair held-out outcomes, the
    training losses of every step (timings left out)."""
    folder = out / "cells" / cell_id.replace("/", "__")
    row = json.loads((folder / study_run.CELL_FILE).read_text())
    steps = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return {
        "metrics": row["metrics"],
        "steps": row["steps"],
        "count": row["count"],
        "outcomes": (folder / "heldout_outcomes.jsonl").read_text(),
        "losses": [(r["step"], r.get("loss"), r.get("eval/rewards/margins")) for r in steps],
    }


def test_a_study_loads_its_model_once_and_each_cell_equals_the_cell_run_alone(
    tiny_model, tmp_path, monkeypatch
) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", pair_rows(12))
    held = write_jsonl(tmp_path / "held.jsonl", pair_rows(6, seed=5))
    loads: list[str] = []
    # the kept model, and a per-cell load (the trainer's)
    for module, attribute in (
        (kept_model, "load_causal_lm"),
        (trainer_module, "load_training_model"),
    ):
        original = getattr(module, attribute)

        def counting(name, *args, _original=original, **kwargs):
            loads.append(name)
            return _original(name, *args, **kwargs)

        monkeypatch.setattr(module, attribute, counting)
    config = parse_study(study_raw(pool, held, tmp_path / "together", tiny_model))
    report = study_run.run_study(config, progress=lambda line: None)
    ids = [c["id"] for c in report["cells"]]
    assert ids == ["full/random/b6/s0", "full/random/b6/s1", "lora/random/b6/s0",
                   "lora/random/b6/s1"]  # fmt: skip
    assert len(loads) == 1  # the study model, once for the 4 cells
    together = {i: cell_outputs(tmp_path / "together", i) for i in ids}
    # the full fine-tuning cells moved the weights, the LoRA ones trained their own adapter
    assert together["full/random/b6/s0"]["outcomes"] != together["full/random/b6/s1"]["outcomes"]
    assert together["lora/random/b6/s0"]["outcomes"] != together["full/random/b6/s0"]["outcomes"]
    for cell_id in ids:  # each cell alone: a study of that one cell, a model load of its own
        method, _, _, seed = cell_id.split("/")
        raw = study_raw(pool, held, tmp_path / f"alone-{method}-{seed}", tiny_model)
        raw["methods"] = [m for m in raw["methods"] if m["name"] == method]
        raw["seeds"] = [int(seed[1:])]
        loads.clear()
        study_run.run_study(parse_study(raw), progress=lambda line: None)
        assert len(loads) == 1
        alone = cell_outputs(tmp_path / f"alone-{method}-{seed}", cell_id)
        assert alone == together[cell_id], cell_id


@pytest.mark.parametrize("lora", [True, False])
def test_the_kept_model_is_handed_over_as_loaded(tiny_model, lora) -> None:
    """After a cell trained it (an adapter, or every weight), the next cell gets the weights as
    loaded and, with the same seed, the same new adapter."""
    import torch

    from alignkit.models import LoraSettings, load_causal_lm

    settings = LoraSettings(r=4) if lora else None
    torch.manual_seed(3)
    loaded = load_causal_lm(tiny_model, lora=settings)
    kept = kept_model.KeptModel(tiny_model)
    for _ in range(2):
        torch.manual_seed(3)
        model = kept.fresh(settings)
        modes = [m.training for m in loaded.modules()]  # eval, but peft's new modules
        assert [m.training for m in model.modules()] == modes
        expected = loaded.state_dict()
        assert list(model.state_dict()) == list(expected)
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
        grads = {n: p.requires_grad for n, p in loaded.named_parameters()}
        assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
        with torch.no_grad():  # a cell trains it
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(1.0)
        model.train()


@pytest.mark.parametrize("lora", [True, False])
def test_a_kept_adapter_is_handed_over_as_load_training_model_gives_it(sft_adapter, lora) -> None:
    """A study model that is a saved adapter: each cell gets what `load_training_model` gives
    a separate run, a fresh adapter (of the saved shape without `lora`) on the merged model,
    never the merged model's own weights to train."""
    import torch

    from alignkit.models import LoraSettings, load_training_model

    settings = LoraSettings(r=4) if lora else None
    torch.manual_seed(5)
    loaded = load_training_model(sft_adapter, lora=settings)
    kept = kept_model.KeptModel(sft_adapter)
    for _ in range(2):
        torch.manual_seed(5)
        model = kept.fresh(settings)
        expected = loaded.state_dict()
        assert list(model.state_dict()) == list(expected)
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
        grads = {n: p.requires_grad for n, p in loaded.named_parameters()}
        assert {n: p.requires_grad for n, p in model.named_parameters()} == grads


def test_the_kept_model_turns_dropout_off_as_train_does_and_back_on(tiny_model) -> None:
    """Dropout off unless the cell keeps it (`Trainer.build_scorer`); a cell that keeps it
    after one that turned it off gets the rates as loaded."""
    from torch import nn

    from alignkit.models import LoraSettings

    def rates(model) -> list[float]:
        return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]

    kept = kept_model.KeptModel(tiny_model)
    settings = LoraSettings(r=4, dropout=0.1)
    on = rates(kept.fresh(settings, keep_dropout=True))
    assert on and max(on) == 0.1
    assert set(rates(kept.fresh(settings, keep_dropout=False))) == {0.0}
    assert rates(kept.fresh(settings, keep_dropout=True)) == on
