"""`alignkit data inspect` end to end: JSON output, tokenizers, formats, usage errors and
`--skip-invalid`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PROMPT, write_hh_like, write_jsonl

from alignkit.cli import main

# ---------------------------------------------------------------- CLI


def make_tokenizer(folder: Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "</s>": 1, "Sure": 2, "Surely": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>"
    )
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def test_cli_inspect_ok_with_json_and_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_jsonl(
        tmp_path / "hh.jsonl",
        [{"chosen": PROMPT + " Sure thing", "rejected": PROMPT + " Surely not"}],
    )
    out = tmp_path / "stats.json"
    tokenizer = make_tokenizer(tmp_path / "tok")
    code = main(["data", "inspect", data, "--json", str(out), "--tokenizer", tokenizer])
    assert code == 0
    printed = capsys.readouterr().out
    assert "1 valid records in 1 file(s)" in printed and "formats:         hh 1" in printed
    stats = json.loads(out.read_text(encoding="utf-8"))
    assert stats["kinds"] == {"pair": 1}
    assert stats["response_tokens"]["max"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_cli_inspect_invalid_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "completion": "c", "label": "false"}])
    assert main(["data", "inspect", data]) == 2
    err = capsys.readouterr().err
    assert "1 invalid record found:" in err
    assert f"{data}:1: field 'label' is the string 'false'" in err


def test_cli_format_option_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    assert main(["data", "inspect", data, "--format", "point"]) == 2
    assert "missing field 'label'" in capsys.readouterr().err
    assert main(["data", "inspect", data, "--format", "demonstration", "--max-errors", "1"]) == 0
    assert main(["data"]) == 2
    assert "inspect" in capsys.readouterr().out


def test_cli_bad_tokenizer_and_json_folder_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}])
    (tmp_path / "empty").mkdir()
    assert main(["data", "inspect", data, "--tokenizer", str(tmp_path / "empty")]) == 2
    assert "cannot load a tokenizer" in capsys.readouterr().err
    assert main(["data", "inspect", data, "--json", str(tmp_path / "no" / "s.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_inspect_skip_invalid(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, bad = write_hh_like(tmp_path / "harmless.jsonl")
    assert main(["data", "inspect", path]) == 2
    assert "or pass --skip-invalid" in capsys.readouterr().err
    assert main(["data", "inspect", path, "--skip-invalid"]) == 0
    printed = capsys.readouterr().out
    assert "5 valid records in 1 file(s)" in printed
    assert "duplicates:      2" in printed  # line 5 repeats both answers of line 1
    assert "dropped:         5 invalid records (--skip-invalid)" in printed
    assert "1  the final answer of 'chosen' is empty" in printed
    assert not list(tmp_path.glob("*.rejected.jsonl"))  # without --json only counted
    stats_path = tmp_path / "stats.json"
    assert main(["data", "inspect", path, "--skip-invalid", "--json", str(stats_path)]) == 0
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    rejected = tmp_path / "stats.rejected.jsonl"
    assert stats["rejected"]["records"] == 5
    assert stats["rejected"]["by_reason"]["invalid JSON"] == 1
    assert stats["rejected"]["file"] == str(rejected)
    rows = [json.loads(line) for line in rejected.read_text(encoding="utf-8").splitlines()]
    assert [row["where"] for row in rows] == [f"{path}:{n}" for n in sorted(bad.values())]
    only_bad = write_jsonl(tmp_path / "e.jsonl", [{"chosen": PROMPT, "rejected": PROMPT + " x"}])
    assert main(["data", "inspect", only_bad, "--skip-invalid"]) == 2
    assert "all 1 record are invalid" in capsys.readouterr().err
