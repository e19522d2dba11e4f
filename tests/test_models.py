"""`--precision auto` by capability (`models.precision_choice`), with the CPU's and GPU's
bf16 support mocked both ways, and the choice recorded in a run's config.json."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import pair_rows, write_jsonl

from alignkit import models
from alignkit.cli import main
from alignkit.errors import AlignkitError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BF16_FORWARD = {"training": "bf16", "reference": "bf16", "scoring": "bf16"}


@pytest.fixture
def native(monkeypatch):
    """Set the CPU's native bf16 support; every call announces again."""
    monkeypatch.setattr(models, "_ANNOUNCED", set())

    def set_native(value: bool) -> None:
        monkeypatch.setattr(models, "cpu_native_bf16", lambda: value)

    return set_native


@pytest.fixture
def gpu_bf16(monkeypatch):
    def set_gpu(value: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: value)

    return set_gpu


def test_auto_on_a_cpu_with_native_bf16_trains_in_bf16_and_generates_in_fp32(native):
    native(True)
    choice = models.precision_choice("auto", CPU)
    assert choice.stages == {**BF16_FORWARD, "generation": "fp32"}
    assert "native bf16" in choice.reason
    assert models.autocast_dtype("auto", CPU) is torch.bfloat16
    assert models.generation_dtype("auto", CPU) is None  # decoding is faster in fp32


def test_auto_on_a_cpu_without_native_bf16_is_fp32_everywhere(native, caplog):
    native(False)
    with caplog.at_level(logging.INFO, logger="alignkit.models"):
        assert models.autocast_dtype("auto", CPU) is None
        assert models.generation_dtype("auto", CPU) is None
        assert models.autocast_dtype("auto", CPU) is None
    choice = models.precision_choice("auto", CPU)
    assert set(choice.stages.values()) == {"fp32"}
    assert "no native bf16" in choice.reason
    # printed once per run, however many stages ask
    lines = [r for r in caplog.records if r.name == "alignkit.models"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert lines[0].getMessage() == choice.describe()
    assert lines[0].getMessage().startswith("precision auto on cpu: fp32 for training, reference")


def test_explicit_bf16_on_a_cpu_without_native_bf16_warns_that_it_is_slow(native, caplog):
    native(False)
    with caplog.at_level(logging.INFO, logger="alignkit.models"):
        assert models.autocast_dtype("bf16", CPU) is torch.bfloat16  # obeyed, but
        assert models.generation_dtype("bf16", CPU) is torch.bfloat16
    (record,) = [r for r in caplog.records if r.name == "alignkit.models"]
    assert record.levelno == logging.WARNING
    assert "slower" in record.getMessage()


def test_explicit_bf16_on_a_cpu_with_native_bf16_does_not_warn(native, caplog):
    native(True)
    with caplog.at_level(logging.INFO, logger="alignkit.models"):
        assert models.autocast_dtype("bf16", CPU) is torch.bfloat16
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_fp32_is_fp32_whatever_the_hardware(native, gpu_bf16):
    for value in (True, False):
        native(value)
        gpu_bf16(value)
        for device in (CPU, CUDA):
            choice = models.precision_choice("fp32", device)
            assert set(choice.stages.values()) == {"fp32"}
            assert choice.reason == "--precision fp32 asked for"
            assert models.autocast_dtype("fp32", device) is None


def test_cuda_auto_follows_the_gpu(gpu_bf16, native):
    native(False)  # the CPU does not matter on a GPU
    gpu_bf16(True)
    assert models.precision_choice("auto", CUDA).stages == {**BF16_FORWARD, "generation": "bf16"}
    assert models.generation_dtype("auto", CUDA) is torch.bfloat16
    gpu_bf16(False)
    assert set(models.precision_choice("auto", CUDA).stages.values()) == {"fp32"}
    with pytest.raises(AlignkitError, match="no bfloat16"):
        models.autocast_dtype("bf16", CUDA)


def test_auto_elsewhere_is_fp32(native):
    native(True)
    choice = models.precision_choice("auto", torch.device("meta"))
    assert set(choice.stages.values()) == {"fp32"}


def test_cpu_native_bf16_detection(monkeypatch):
    detect = models.cpu_native_bf16.__wrapped__  # past the cache
    monkeypatch.setattr(models.platform, "machine", lambda: "x86_64")
    for avx512_bf16, amx, expected in (
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert detect() is expected
    # a torch without the cpuinfo checks: /proc/cpuinfo's flags decide
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert detect() is False  # AVX-512 without bf16 instructions is not native bf16
    monkeypatch.setattr(models, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert detect() is True
    # other architectures: oneDNN's bf16 check
    monkeypatch.setattr(models.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert detect() is True


@pytest.mark.parametrize("native_bf16", [True, False])
def test_config_json_records_the_choice(native_bf16, native, tiny_model, tmp_path):
    native(native_bf16)
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    out = tmp_path / "run"
    args = ["train", "--method", "dpo", "--data", data, "--model", tiny_model, "--output", str(out)]
    assert main([*args, "--max-steps", "1", "--batch-size", "2", "--no-save-model"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == "auto"
    forward = "bf16" if native_bf16 else "fp32"
    assert config["precision_used"] == (
        f"training={forward} reference={forward} scoring={forward} generation=fp32"
    )
    assert ("has native bf16" if native_bf16 else "no native bf16") in config["precision_reason"]
