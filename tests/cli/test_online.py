"""`alignkit ple / raft / rrhf-online` end to end: a YAML config, and the help of every option."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import keyword_reward  # noqa: F401 (named by --reward-model below)

from alignkit.cli import main
from alignkit.io import read_jsonl
from alignkit.online.config import PLEConfig, RAFTConfig, RRHFOnlineConfig


def test_rrhf_online_cli_with_a_yaml_config(tiny_model, queries_file, tmp_path, capsys) -> None:
    out = tmp_path / "rrhf"
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("iterations: 1\nqueries-per-iteration: 2\nnum_samples: 2\n")
    code = main(
        [
            "rrhf-online", "--config", str(yaml_file), "--queries", queries_file,
            "--model", tiny_model, "--reward-model", f"{__name__}:keyword_reward",
            "--output", str(out), "--max-new-tokens", "6", "--precision", "fp32",
            "--no-save-model",
        ]
    )  # fmt: skip
    assert code == 0 and "1 iterations" in capsys.readouterr().out
    row = read_jsonl(out / "metrics.jsonl")[0]
    assert {"loss/rank", "loss/sft", "rrhf/best_reward", "reward/mean"} <= set(row)
    assert len(read_jsonl(out / "generations" / "iter-0001.jsonl")[0]["responses"]) == 2
    bad = main(["ple", "--queries", queries_file, "--output", str(out), "--alpha", "2"])
    assert bad == 2 and "--alpha" in capsys.readouterr().err


# ----------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "verb, cls", [("ple", PLEConfig), ("raft", RAFTConfig), ("rrhf-online", RRHFOnlineConfig)]
)
def test_help_explains_every_option(verb, cls, capsys) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in text, f.name
        assert f.metadata["help"].split()[0] in text
    assert "generations/iter-NNNN.jsonl" in text
