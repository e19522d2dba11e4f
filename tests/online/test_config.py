"""The online verbs' options (`alignkit.online.config`): what reaches the core trainer, the
sampling and LoRA settings, presets, invalid options, the strategies."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import keyword_reward

from alignkit.errors import AlignkitError
from alignkit.objectives import ObjectiveConfig
from alignkit.online.config import PLEConfig, RAFTConfig, RRHFOnlineConfig
from alignkit.online.loop import OnlineTrainer, make_strategy
from alignkit.online.ple import PLEStrategy
from alignkit.online.ranked import RAFTStrategy, RRHFStrategy
from alignkit.train.config import TrainConfig

# ---------------------------------------------------------- config mapping


def test_train_options_reach_the_core_trainer() -> None:
    shared = {f.name for f in dataclasses.fields(TrainConfig)} & {
        f.name for f in dataclasses.fields(RRHFOnlineConfig)
    }
    assert {"lr", "lora_r", "batch_size", "rrhf_sft_weight", "precision", "resume"} <= shared
    assert "gradient_checkpointing" in shared
    values = {}
    for f in dataclasses.fields(RRHFOnlineConfig):
        if f.name in shared:
            default = getattr(RRHFOnlineConfig(), f.name)
            values[f.name] = _changed(default)
    config = RRHFOnlineConfig(sft_data=["d.jsonl"], **values)
    train = config.train_config()
    assert train.method == "sft" and train.data == ["d.jsonl"]
    for name, value in values.items():
        assert getattr(train, name) == value, name


def _changed(value):
    if value is None or isinstance(value, bool):  # None: a tri-state flag (--chat/--no-chat)
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list):
        return [*value, "x"]
    return value + "-x" if value not in ("sum", "auto", "constant", "ple") else {
        "sum": "mean", "auto": "fp32", "constant": "linear", "ple": "ulma"
    }[value]  # fmt: skip


def test_sampling_and_lora_settings() -> None:
    config = PLEConfig(
        max_new_tokens=9, temperature=0.5, top_p=0.8, top_k=7, generation_batch_size=3
    )
    s = config.sampling(seed=11)
    assert (s.max_new_tokens, s.temperature, s.top_p, s.top_k, s.batch_size, s.seed) == (
        9, 0.5, 0.8, 7, 3, 11,
    )  # fmt: skip
    assert s.do_sample and config.lora_settings() is None
    lora = PLEConfig(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0).lora_settings()
    assert lora is not None and lora.peft_targets() == "all-linear"
    assert (lora.r, lora.alpha, lora.dropout) == (4, 8, 0.0)
    assert PLEConfig(lora=True, lora_targets=["q_proj"]).lora_settings().target_modules == [
        "q_proj"
    ]


def parsed(verb: str, cls: type, *flags: str, config_file: str | None = None):
    """The config `alignkit VERB FLAGS` builds (flags < YAML < defaults as the CLI does)."""
    from alignkit.cli import build_parser
    from alignkit.options import build_config

    args = build_parser().parse_args([verb, *flags])
    return build_config(cls, args, config_file)


def test_lora_presets_fill_only_what_is_not_given(tiny_model, tmp_path) -> None:
    base = ("--data", "d.jsonl", "--output", str(tmp_path / "o"), "--model", tiny_model)
    default = parsed("train", TrainConfig, *base).lora_settings()
    assert default is None  # --lora is off by default
    default = parsed("train", TrainConfig, *base, "--lora").lora_settings()
    assert (default.r, default.alpha, default.dropout) == (16, 32, 0.05)
    assert default.peft_targets() == "all-linear"  # every linear layer
    ulma = parsed("train", TrainConfig, *base, "--lora", "--lora-preset", "ulma").lora_settings()
    assert (ulma.r, ulma.alpha, ulma.dropout, ulma.target_modules) == (
        8, 32, 0.1, ["q_proj", "v_proj"],
    )  # fmt: skip
    # an explicit flag wins over the preset, even when it equals the default preset's value
    mixed = parsed("train", TrainConfig, *base, "--lora-preset", "ulma", "--lora-r", "16")
    assert (mixed.lora_r, mixed.lora_alpha, mixed.lora_targets) == (16, 32, ["q_proj", "v_proj"])
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lora_preset: ulma\nlora_alpha: 8\n")
    from_file = parsed(
        "train", TrainConfig, *base, "--lora-dropout", "0", config_file=str(yaml_file)
    )
    assert (from_file.lora_r, from_file.lora_alpha, from_file.lora_dropout) == (8, 8, 0.0)
    # the online verbs default to the PLE paper's recipe; config.json shows the values used
    ple_config = PLEConfig()
    assert ple_config.lora_preset == "ple"
    assert (ple_config.lora_r, ple_config.lora_alpha, ple_config.lora_targets) == (
        8, 16, ["all-linear"],
    )  # fmt: skip
    assert dataclasses.asdict(ple_config.train_config())["lora_alpha"] == 16
    with pytest.raises(AlignkitError, match="--lora-preset"):
        TrainConfig(**{"lora_preset": "qlora"})


@pytest.mark.parametrize(
    "cls, bad, message",
    [
        (PLEConfig, {"alpha": 1.5}, "--alpha"),
        (PLEConfig, {"iterations": 0}, "--iterations"),
        (PLEConfig, {"top_p": 0.0}, "--top-p"),
        (PLEConfig, {"save_every": -1}, "--save-every"),
        (RAFTConfig, {"top_fraction": 0.0}, "--top-fraction"),
        (RAFTConfig, {"num_samples": 0}, "--num-samples"),
        (RRHFOnlineConfig, {"num_samples": 1}, "--num-samples"),
        (PLEConfig, {"queries": ""}, "--queries"),
    ],
)
def test_invalid_options(cls, bad, message) -> None:
    values = {"queries": "q.jsonl", "output": "out", **bad}
    with pytest.raises(AlignkitError, match=message):
        cls(**values).validate()


def test_method_options_reach_the_strategies(tmp_path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("Be kind.")
    config = PLEConfig(
        principle=str(path), principle_mode="prefix", tau0=0.5, alpha=0.5,
        rank_form="hinge", reduction="mean",
    )  # fmt: skip
    s = make_strategy(config, ObjectiveConfig())
    assert isinstance(s, PLEStrategy)
    assert (s.principle, s.mode, s.tau, s.alpha, s.form, s.reduction) == (
        "Be kind.", "prefix", 0.5, 0.5, "hinge", "mean",
    )  # fmt: skip
    assert s.guided("Q") == "Be kind.\n\nQ"
    r = make_strategy(
        RAFTConfig(num_samples=3, selection="global", top_fraction=0.5), ObjectiveConfig()
    )
    assert isinstance(r, RAFTStrategy) and (r.k, r.selection, r.fraction) == (3, "global", 0.5)
    rr = make_strategy(RRHFOnlineConfig(num_samples=5), ObjectiveConfig(rrhf_sft_weight=0.3))
    assert isinstance(rr, RRHFStrategy) and rr.k == 5 and rr.objective.rrhf_sft_weight == 0.3
    trainer_objective = OnlineTrainer(
        RRHFOnlineConfig(queries="q", output=str(tmp_path), rrhf_sft_weight=0.3),
        reward=keyword_reward,
    ).strategy.objective
    assert trainer_objective.rrhf_sft_weight == 0.3


def test_skip_invalid_reaches_the_initial_sft() -> None:
    """--skip-invalid of an online verb applies to its --sft-data (the core trainer's load)."""
    config = PLEConfig(queries="q.jsonl", output="out", sft_data=["d.jsonl"], skip_invalid=True)
    assert config.train_config().skip_invalid and not PLEConfig().train_config().skip_invalid


@pytest.mark.parametrize("start", ["sft-data", "adapter"])
def test_sync_url_refuses_a_start_that_is_an_adapter(queries_file, sft_adapter, start):
    """The adapter trained from an adapter start belongs to the merged start, which a server
    that serves the base cannot apply (the old code synced an adapter of the base)."""
    extra = {"sft_data": ["d.jsonl"]} if start == "sft-data" else {"model": sft_adapter}
    config = RAFTConfig(
        queries=queries_file, output="o", lora=True, endpoint="http://h:1/v1",
        generator_sync_url="http://h:1/v1/load_lora_adapter", **extra,
    )  # fmt: skip
    with pytest.raises(AlignkitError, match="belongs to the starting model"):
        config.validate()
