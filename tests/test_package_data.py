"""The files shipped inside the package: the recipes run from any directory
(`alignkit study --config recipe:NAME`), paths in a study file are read relative to it, and
the accelerate configs are where `configs/accelerate/` points."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import pair_rows, write_jsonl

from alignkit.cli import main
from alignkit.errors import AlignkitError
from alignkit.package_data import (
    ACCELERATE_CONFIGS_DIR,
    RECIPES_DIR,
    recipe_file,
    recipe_names,
    relative_to_file,
)
from alignkit.study.config import load_study_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_recipes_and_accelerate_configs_ship_in_the_package():
    assert recipe_names() == ["active", "deft", "ple", "real", "ulma"]
    assert {p.name for p in ACCELERATE_CONFIGS_DIR.iterdir()} >= {"ddp.yaml", "fsdp2.yaml"}
    # one home: the repository's recipes/ and configs/ are links into the package
    assert (ROOT / "recipes").resolve() == RECIPES_DIR
    assert (ROOT / "configs" / "accelerate").resolve() == ACCELERATE_CONFIGS_DIR
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"recipes/*.yaml"' in pyproject and '"configs/accelerate/*"' in pyproject


@pytest.mark.parametrize("name", ["active", "deft", "ple", "real", "ulma"])
def test_every_recipe_runs_from_any_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: the old repo-relative paths fail here
    config = load_study_config(f"recipe:{name}", {})
    for path in [*config.data, *config.eval_data]:
        assert Path(path).is_absolute() and Path(path).is_file(), path
    assert config.output == f"runs/study-{name}"  # outputs stay where the user is
    if isinstance(config.reward_model, dict):
        assert Path(config.reward_model["data"]).is_file()


def test_an_unknown_recipe_lists_the_recipes():
    with pytest.raises(AlignkitError, match="recipes: active, deft, ple, real, ulma"):
        recipe_file("recipe:dpo")
    assert recipe_file("my/study.yaml") == "my/study.yaml"


def test_paths_in_a_study_file_are_read_relative_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "pool.jsonl", pair_rows(8))
    write_jsonl(folder / "data" / "held.jsonl", pair_rows(4, seed=1))
    study = folder / "study.yaml"
    study.write_text(
        "data: data/pool.jsonl\neval_data: [data/held.jsonl]\noutput: out\n"
        "selectors: [random]\nbudgets: [4]\nmethods: [dpo]\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_study_config(str(study), {})
    assert config.data == [str(folder / "data" / "pool.jsonl")]
    assert config.eval_data == [str(folder / "data" / "held.jsonl")]
    assert config.output == "out"
    # a path that exists only from the working directory (and anything not a path) stays
    assert relative_to_file("hf:Anthropic/hh-rlhf", study) == "hf:Anthropic/hh-rlhf"
    assert relative_to_file("elsewhere.jsonl", study) == "elsewhere.jsonl"
    # command-line overrides are the user's paths, from the working directory
    assert load_study_config(str(study), {"data": ["x.jsonl"]}).data == ["x.jsonl"]


def test_study_print_config_copies_a_recipe_to_edit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--config", "recipe:real", "--output", "mine", "--print-config"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "mine.yaml").write_text(text)
    assert yaml.safe_load(text)["output"] == "mine"
    copied = load_study_config(str(tmp_path / "mine.yaml"), {})
    assert copied == load_study_config("recipe:real", {"output": "mine"})


def test_study_help_lists_the_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = capsys.readouterr().out
    assert "recipe:real" in text and "recipe:ulma" in text and "--print-config" in text
