"""Fingerprints of fixed-seed outputs of the main verbs, to show that a refactor changes nothing.

Builds the tests' tiny random model and data, runs `train`, `select deft`, `select real`, `ple`,
`ppo`, `rloo` and a small `study` through `alignkit.cli.main` (float32, fixed seeds), and prints
one JSON object: for every run, a SHA-256 of each output file, with wall-clock fields (times,
throughputs, dates) left out of JSON/jsonl files. Run it before and after a change and diff:

    python scripts/fixed_seed_outputs.py before.json
    ... change ...
    python scripts/fixed_seed_outputs.py after.json && diff before.json after.json
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_tiny_model, make_tokenizer, pair_rows, write_jsonl  # noqa: E402

from alignkit.cli import main  # noqa: E402

# keys whose values depend on the clock or the machine, not on the computation
VOLATILE = ("time", "elapsed", "per_s", "per_sec", "seconds", "eta", "date", "duration", "wall")
# files whose content is a path, a date or a cache we do not compare
SKIPPED = {"events.out.tfevents", ".lock", "README.md"}


def _stable(value):
    if isinstance(value, dict):
        return {
            k: _stable(v)
            for k, v in sorted(value.items())
            if not any(word in k.lower() for word in VOLATILE)
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def _digest(path: Path, tmp: str) -> str:
    data = path.read_bytes()
    if path.suffix in (".json", ".jsonl"):
        text = data.decode().replace(tmp, "TMP")
        if path.suffix == ".json":
            rows = [_stable(json.loads(text))]
        else:
            rows = [_stable(json.loads(line)) for line in text.splitlines() if line.strip()]
        data = json.dumps(rows, sort_keys=True).encode()
    elif path.suffix == ".safetensors":  # the header's metadata keys come in any order
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = json.dumps(f.metadata(), sort_keys=True).encode()
            data = meta + b"".join(
                k.encode() + f.get_tensor(k).numpy().tobytes() for k in sorted(f.keys())
            )
    elif path.suffix in (".md", ".txt", ".yaml"):
        text = re.sub(r"\b\d+(\.\d+)? (s|min)\b", "T", data.decode().replace(tmp, "TMP"))
        data = text.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(out: Path, tmp: str) -> dict[str, str]:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {
        str(p.relative_to(out)): _digest(p, tmp)
        for p in files
        if not any(s in p.name for s in SKIPPED)
        and "checkpoint" not in str(p.relative_to(out))
        and p.suffix not in (".png", ".log", ".pt", ".bin")
        or p.name in ("value_head.pt",)
    }


def keyword_reward(prompts, responses) -> list[float]:
    """Scripted reward: how many letters 'e' the response has."""
    return [float(r.count("e")) for r in responses]


def main_() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    module = types.ModuleType("fixed_seed_rewards")
    module.score = keyword_reward  # type: ignore[attr-defined]
    sys.modules["fixed_seed_rewards"] = module
    results: dict[str, dict[str, str]] = {}
    # one fixed folder and fixed file times: cache keys fingerprint paths, sizes and times;
    # a lock makes two runs at once (two checkouts) take turns in it
    tmp_name = os.path.join(tempfile.gettempdir(), "alignkit-fixed-seed-outputs")
    lock = open(tmp_name + ".lock", "w")  # noqa: SIM115 (held until the process ends)
    fcntl.flock(lock, fcntl.LOCK_EX)
    shutil.rmtree(tmp_name, ignore_errors=True)
    tmp = Path(tmp_name)
    try:
        model = tmp / "model"
        tok = make_tokenizer(model)
        make_tiny_model(model, len(tok))
        pool = write_jsonl(tmp / "pool.jsonl", pair_rows(16))
        held = write_jsonl(tmp / "held.jsonl", pair_rows(6, seed=5))
        queries = tmp / "queries.jsonl"
        queries.write_text(
            "".join(json.dumps({"prompt": f"how to bake a cake {i}"}) + "\n" for i in range(8))
        )
        for path in tmp.rglob("*"):
            os.utime(path, (1e9, 1e9))
        common = ["--model", str(model), "--precision", "fp32"]
        online = ["--queries", str(queries), "--iterations", "2", "--queries-per-iteration", "4",
                  "--max-new-tokens", "6", "--batch-size", "2", "--lr", "1e-3"]  # fmt: skip
        runs: dict[str, list[str]] = {
            "train": ["train", "--method", "dpo", "--data", pool, "--eval-data", held,
                      "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--max-length", "64"],
            "select-deft": ["select", "deft", "--data", pool, "--batch-size", "3",
                            "--keep-fraction", "0.25"],
            "select-real": ["select", "real", "--data", pool, "--batch-size", "4",
                            "--cache-dir", str(tmp / "cache")],
            "ple": ["ple", *online, "--reward-model", "fixed_seed_rewards:score"],
            "ppo": ["ppo", *online, "--reward-model", "fixed_seed_rewards:score",
                    "--num-ppo-epochs", "2"],
            "rloo": ["rloo", *online, "--reward-model", "fixed_seed_rewards:score"],
        }  # fmt: skip
        for name, args in runs.items():
            out = tmp / name
            code = main([*args, *common, "--output", str(out)])
            if code != 0:
                print(f"{name} exited {code}", file=sys.stderr)
                return 1
            results[name] = fingerprint(out, tmp_name)
        study = {
            "data": pool,
            "eval_data": held,
            "output": str(tmp / "study"),
            "model": str(model),
            "selectors": [{"name": "random"}, {"name": "length", "keep": "lowest"}],
            "budgets": [0.5, 1.0],
            "seeds": [0, 1],
            "methods": [{"name": "dpo", "method": "dpo"}],
            "train": {"lr": 1e-3, "batch_size": 4, "epochs": 1, "precision": "fp32",
                      "max_length": 64},
            "selection": {"batch_size": 8},
        }  # fmt: skip
        (tmp / "study.yaml").write_text(json.dumps(study))
        if main(["study", "--config", str(tmp / "study.yaml")]) != 0:
            print("study failed", file=sys.stderr)
            return 1
        results["study"] = fingerprint(tmp / "study", tmp_name)
    finally:
        shutil.rmtree(tmp_name, ignore_errors=True)
    Path(sys.argv[1]).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
