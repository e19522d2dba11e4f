"""The README's quick start, run top to bottom on the embedded model with tiny step counts
(`scripts/quickstart.py --tiny`: the commands read from README.md, in a fresh folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import alignkit
from alignkit.io import read_jsonl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "quickstart.py"


def test_the_readme_quick_start_runs_top_to_bottom(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(alignkit.__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--workdir", str(tmp_path), "--timeout", "900"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    runs = tmp_path / "runs"

    demo = json.loads((runs / "demo" / "demo_report.json").read_text())
    assert len(demo["answers"]) == 12 and demo["heldout_accuracy"]["before"] == 0.0

    subset = read_jsonl(runs / "easy" / "subset.jsonl")  # --count 8 of the 16 tiny pairs
    assert len(subset) == 8 and {"prompt", "chosen", "rejected"} <= set(subset[0])

    assert (runs / "dpo" / "model" / "adapter_config.json").is_file()  # LoRA
    metrics = read_jsonl(runs / "dpo" / "metrics.jsonl")
    assert metrics[-1]["step"] == 2

    report = json.loads((runs / "dpo" / "eval" / "report.json").read_text())
    assert report["counts"]["pairs"] == 16  # the 16 tiny held-out pairs
    assert {"accuracy", "margin", "dpo_loss", "perplexity", "bleu"} <= set(report["metrics"])
    assert len(read_jsonl(runs / "dpo" / "eval" / "report.generations.jsonl")) == 2

    # curl prints the server's reply without a newline: decode the JSON object where it starts
    start = done.stdout.index('{"id": "chatcmpl-')
    reply, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    assert reply["object"] == "chat.completion" and reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] <= 8  # serve --max-new-tokens 8 caps max_tokens 48
