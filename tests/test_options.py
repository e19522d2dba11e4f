"""Option groups, deprecated aliases (flags and YAML keys) and --trust-remote-code reaching
the loaders."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from alignkit.data.config import DataOptions
from alignkit.errors import AlignkitError
from alignkit.evaluation.config import EvalConfig
from alignkit.inference.config import EndpointOptions, SamplingOptions
from alignkit.labelling.config import GenerateConfig
from alignkit.model_options import ModelOptions
from alignkit.online.config import ONLINE_METHODS, RAFTConfig
from alignkit.options import add_config_verb, build_config, opt
from alignkit.rewards.options import RewardOptions
from alignkit.select.configs import DeftSelectConfig, ModelSelectConfig
from alignkit.train.config import TrainConfig

WARNING = "alignkit: warning: --old is deprecated, use --new"


@dataclass
class Small:
    new: int = opt(1, "the option", aliases=("--old",))
    switch: bool = opt(False, "a switch", aliases=("--old-switch",))
    ALIASES = {"new": ("--older",)}


def parse(argv: list[str], cls: type = Small) -> object:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    add_config_verb(subparsers, "v", cls, lambda c: c, help="", description="")
    args = parser.parse_args(["v", *argv])
    return args.func(args)


def test_an_alias_sets_the_field_and_warns(capsys):
    assert parse(["--old", "3"]).new == 3
    assert WARNING in capsys.readouterr().err
    assert parse(["--older", "4"]).new == 4  # a verb's own old name (ALIASES)
    assert "--older is deprecated, use --new" in capsys.readouterr().err
    config = parse(["--old-switch"])
    assert config.switch is True and "use --switch" in capsys.readouterr().err
    assert parse(["--no-old-switch"]).switch is False
    assert "use --no-switch" in capsys.readouterr().err
    assert parse(["--new", "5"]).new == 5 and capsys.readouterr().err == ""


def test_an_alias_is_hidden_from_help():
    parser = argparse.ArgumentParser()
    add_config_verb(parser.add_subparsers(), "v", Small, lambda c: c, help="", description="")
    text = parser._subparsers._group_actions[0].choices["v"].format_help()  # type: ignore[union-attr]
    assert "--new" in text and "--old" not in text


def test_a_yaml_alias_sets_the_field_and_warns(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("old: 7\n")
    assert build_config(Small, argparse.Namespace(), str(path)).new == 7
    assert "old (in " in capsys.readouterr().err
    path.write_text("old: 7\nnew: 8\n")
    with pytest.raises(AlignkitError, match="one option"):
        build_config(Small, argparse.Namespace(), str(path))


def test_deft_keep_fraction_is_an_alias_of_fraction(capsys):
    config = parse(["--data", "x", "--output", "o", "--keep-fraction", "0.25"], DeftSelectConfig)
    assert config.fraction == 0.25 and config.keep_fraction == 0.25
    assert "--keep-fraction is deprecated, use --fraction" in capsys.readouterr().err


def test_online_generator_spellings_still_work(tmp_path, capsys):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"prompt": "hi"}\n')
    argv = ["--queries", str(queries), "--output", "o", "--generator", "http://h:1/v1"]
    config = parse([*argv, "--generator-timeout", "7", "--generator-api-key", "k"], RAFTConfig)
    assert (config.endpoint, config.generator, config.timeout) == ("http://h:1/v1", "auto", 7.0)
    assert config.api_key == "k" and config.public_dict()["api_key"] == "(set, not written)"
    err = capsys.readouterr().err
    assert "--generator-timeout is deprecated, use --timeout" in err
    assert "--generator URL is deprecated, use --endpoint URL" in err


def test_the_option_groups_are_declared_once_and_composed():
    def names(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    composed = {
        ModelOptions: [
            TrainConfig,
            EvalConfig,
            GenerateConfig,
            ModelSelectConfig,
            DeftSelectConfig,
        ],
        DataOptions: [TrainConfig, EvalConfig, DeftSelectConfig],
        RewardOptions: [EvalConfig, *ONLINE_METHODS.values()],
        SamplingOptions: [GenerateConfig, *ONLINE_METHODS.values()],
        EndpointOptions: [GenerateConfig, *ONLINE_METHODS.values()],
    }
    for group, verbs in composed.items():
        for verb in verbs:
            assert issubclass(verb, group) and names(group) <= names(verb), (group, verb)


def test_the_api_key_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert EndpointOptions(endpoint="http://h/v1").resolved_api_key() == "sk-env"
    assert EndpointOptions(endpoint="http://h/v1", api_key="k").resolved_api_key() == "k"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert EndpointOptions(endpoint="http://h/v1").resolved_api_key() is None


def test_trust_remote_code_reaches_the_loaders(monkeypatch):
    import alignkit.models as models
    import alignkit.select.scorers as scorers
    from alignkit.select.configs import LengthConfig

    seen: list[tuple[str, bool]] = []

    def fake_causal_lm(name, *, lora=None, trust_remote_code=False, adapter=None):
        seen.append(("model", trust_remote_code))
        raise RuntimeError("stop")

    monkeypatch.setattr(models, "load_causal_lm", fake_causal_lm)
    with pytest.raises(RuntimeError, match="stop"):
        models.load_inference_model("default", trust_remote_code=True)
    assert seen == [("model", True)]

    def fake_tokenizer(name, trust_remote_code=False):
        seen.append(("tokenizer", trust_remote_code))
        raise RuntimeError("stop")

    monkeypatch.setattr(scorers, "load_tokenizer", fake_tokenizer)
    config = LengthConfig(data=["x"], output="o", count=1, trust_remote_code=True)
    with pytest.raises(RuntimeError, match="stop"):
        scorers.length_scores(config.request([SimpleNamespace()]))
    assert seen[-1] == ("tokenizer", True)


def test_trust_remote_code_reaches_a_local_judge(monkeypatch):
    import alignkit.models as models
    from alignkit.evaluation.judges import build_judge

    seen: list[bool] = []

    def fake(name, trust_remote_code=False):
        seen.append(trust_remote_code)
        raise RuntimeError("stop")

    monkeypatch.setattr(models, "load_inference_model", fake)
    with pytest.raises(RuntimeError, match="stop"):
        build_judge("local:default", trust_remote_code=True)
    assert seen == [True]


def test_every_verb_that_loads_a_model_takes_trust_remote_code():
    from alignkit.evaluation.config import JudgeConfig
    from alignkit.inference.config import ServeConfig
    from alignkit.labelling.choose import ChooseConfig
    from alignkit.labelling.config import AutoLabelConfig
    from alignkit.rewards.selection import RmMarginConfig
    from alignkit.select.configs import LengthConfig, RealSelectConfig

    verbs = [EvalConfig, GenerateConfig, ServeConfig, JudgeConfig, ChooseConfig, TrainConfig]
    verbs.append(AutoLabelConfig)
    verbs += [ModelSelectConfig, LengthConfig, RmMarginConfig, DeftSelectConfig, RealSelectConfig]
    verbs += list(ONLINE_METHODS.values())
    for verb in verbs:
        assert "trust_remote_code" in {f.name for f in dataclasses.fields(verb)}, verb


# ------------------------------------------------------------ --print-config, config.json


def _verb_parsers() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """(argv prefix, parser) of every verb and sub-verb of `alignkit`."""
    from alignkit.cli import VERBS, build_parser

    sub = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    found = []
    for verb in VERBS:
        parser = sub.choices[verb]
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if groups:
            found += [([verb, name], p) for name, p in groups[0].choices.items()]
        else:
            found.append(([verb], parser))
    return found


def test_print_config_of_every_verb_reads_back_as_the_defaults(tmp_path, capsys):
    """`VERB --print-config` > FILE, then `VERB --config FILE`: the same config object as a
    verb given no option at all (every default written, and written as the file reads it)."""
    from alignkit.options import config_fields, merged_values

    checked = 0
    for argv, parser in _verb_parsers():
        args = parser.parse_args(["--print-config"])
        if "config" in {f.name for f in dataclasses.fields(args.config_class)}:
            continue  # the study: its --config is the grid (tests/cli/test_study.py)
        assert args.func(args) == 0
        text = capsys.readouterr().out
        cls = args.config_class
        for f in config_fields(cls):
            assert f"\n{f.name}: " in text, (argv, f.name)
        path = tmp_path / f"{'-'.join(argv)}.yaml"
        path.write_text(text)
        read = parser.parse_args(["--config", str(path)])
        assert cls(**merged_values(cls, read, str(path))) == cls(), argv
        checked += 1
    assert checked >= 25


def test_print_config_with_flags_builds_the_same_config(tiny_model, tmp_path, capsys):
    flags = ["--model", tiny_model, "--data", "a.jsonl", "b.jsonl", "--output", "runs/x"]
    flags += ["--lora", "--lr", "5e-4", "--lora-preset", "ulma", "--method", "ulma"]
    parser = dict((" ".join(a), p) for a, p in _verb_parsers())["train"]
    args = parser.parse_args([*flags, "--print-config"])
    args.func(args)
    text = capsys.readouterr().out
    assert "lr: 0.0005\n" in text and "lora_r: null\n" in text  # the preset fills it later
    assert "# peak learning rate (AdamW). Default: 5e-06 for full fine-tuning" in text
    assert "# objective to train with" in text and "(one of: cosine, linear, constant)" in text
    (tmp_path / "run.yaml").write_text(text)
    from_file = build_config(
        TrainConfig,
        parser.parse_args(["--config", str(tmp_path / "run.yaml")]),
        str(tmp_path / "run.yaml"),
    )
    assert from_file == build_config(TrainConfig, parser.parse_args(flags))
    assert from_file.lora_r == 8 and from_file.lora_targets == ["q_proj", "v_proj"]


def test_a_required_positional_may_come_from_the_printed_file(tmp_path, capsys):
    parser = dict((" ".join(a), p) for a, p in _verb_parsers())["data inspect"]
    args = parser.parse_args(["x.jsonl", "--print-config"])
    args.func(args)
    (tmp_path / "c.yaml").write_text(capsys.readouterr().out)
    args = parser.parse_args(["--config", str(tmp_path / "c.yaml")])
    config = build_config(args.config_class, args, str(tmp_path / "c.yaml"))
    assert config.paths == ["x.jsonl"]


def test_a_run_config_json_is_a_config_file(tiny_model, tmp_path, capsys):
    """config.json as a run writes it (the options, the precision used, another verb's
    options, a key it keeps secret) is read as --config: the extra keys are skipped with a
    note, never an error; a YAML file with an unknown key still is one."""
    import json

    from alignkit.options import merged_values

    run = TrainConfig(model=tiny_model, data=["d.jsonl"], output="runs/a", lr=1e-4)
    recorded = dataclasses.asdict(run)
    recorded |= {
        "precision_used": "fp32",
        "precision_reason": "cpu",
        "api_key": "(set, not written)",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(recorded, indent=2))
    config = build_config(TrainConfig, argparse.Namespace(output="runs/b"), str(path))
    assert config == TrainConfig(model=tiny_model, data=["d.jsonl"], output="runs/b", lr=1e-4)
    err = capsys.readouterr().err
    assert "skipped api_key, precision_reason, precision_used (recorded by the run" in err
    online = dataclasses.asdict(RAFTConfig(model=tiny_model, queries="q.jsonl", output="o"))
    online["api_key"] = "(set, not written)"
    path.write_text(json.dumps(online))
    raft = build_config(RAFTConfig, argparse.Namespace(), str(path))
    assert raft.api_key == RAFTConfig().api_key  # not the placeholder
    assert "skipped api_key (not written by the run: give it again)" in capsys.readouterr().err
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 1e-5\n")  # YAML 1.1 reads a string: the float field takes it
    assert merged_values(TrainConfig, argparse.Namespace(), str(yaml_file)) == {"lr": 1e-5}
    yaml_file.write_text("precision_used: fp32\n")
    with pytest.raises(AlignkitError, match="unknown option"):
        build_config(TrainConfig, argparse.Namespace(), str(yaml_file))
