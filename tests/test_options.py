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
