"""`alignkit select` end to end: `--skip-invalid` writes the rejected records into the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_hh_like

from alignkit.cli import main


@pytest.mark.parametrize("verb", ["deft", "real"])
def test_cli_select_skip_invalid_writes_rejected_into_the_output(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture, verb: str
) -> None:
    path, bad = write_hh_like(tmp_path / "harmless.jsonl")
    out = tmp_path / verb
    args = ["select", verb, "--data", path, "--model", tiny_model, "--output", str(out)]
    args += ["--precision", "fp32"]
    args += (
        ["--keep-count", "2"] if verb == "deft" else ["--strategy", "random", "--fraction", "0.5"]
    )
    if verb == "real":
        args += ["--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 2
    assert "or pass --skip-invalid" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    listed = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in listed] == [f"{path}:{n}" for n in sorted(bad.values())]
    assert (out / "subset.jsonl").exists()
