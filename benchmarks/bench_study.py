"""`alignkit study` vs the same cells run as separate CLI commands, in one invocation.

The cells: every selector x budget x seed of a small grid on a pool of pairs, DPO with LoRA,
evaluated on held-out pairs. Separately, each cell is what a user types without `study`:
`alignkit select NAME ... --output SEL` then `alignkit train --data SEL/subset.jsonl
--eval-data HELD ...` (each command loads the model, tokenizes, computes its reference log-probs
and, for train, evaluates before and after). The study does the shared work once and loads
the model once. Both sides start with empty caches (`ALIGNKIT_CACHE` points into a fresh
temporary directory; the converted embedded model is linked in so neither side pays the
conversion).

Printed: the wall time of each side and their ratio (target >= 3x at 8 cells); from the
study's OUTPUT/timings.json and each cell's metrics.jsonl and cell.json, the shared work and
the mean per-cell overhead beyond the cell's own work (its run's wall time minus the
`elapsed_s` of its training loop and its held-out evaluation's `eval_s`: the set-up, the
optimizer, the files; target < 5 s); with
--workers N, the same study in N worker processes and its speed-up over the serial study.

    python benchmarks/bench_study.py                  # embedded model, pool 160, 8 cells
    python benchmarks/bench_study.py --workers 2      # and the study with 2 workers
    python benchmarks/bench_study.py --model PATH --pool 40 --held 16 --budgets 8 16   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alignkit.commands.env import describe_machine, machine_info

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "alignkit" / "demo_data"


def take(path: Path, n: int, out: Path) -> str:
    lines = [x for x in path.read_text().splitlines() if x.strip()][:n]
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def alignkit(args: list[str], env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "alignkit", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--pool", type=int, default=160, help="pairs in the pool")
    ap.add_argument("--held", type=int, default=64, help="held-out pairs")
    ap.add_argument("--budgets", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--selectors", nargs="+", default=["random", "real"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--workers", type=int, default=0, help="also run the study with N workers")
    ap.add_argument("--skip-separate", action="store_true", help="only the study (and workers)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    print(describe_machine("auto"), flush=True)  # the precision of every command (auto)

    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    src_cache = Path(os.environ.get("ALIGNKIT_CACHE", Path.home() / ".cache" / "alignkit"))
    pool = take(DATA / "prefs_train.jsonl", args.pool, work / "pool.jsonl")
    held = take(DATA / "prefs_heldout.jsonl", args.held, work / "held.jsonl")
    train = ["--lora", "--lr", "5e-4", "--batch-size", "8", "--max-length", "128"]

    def fresh_cache(name: str) -> dict[str, str]:
        cache = work / name
        (cache / "models").mkdir(parents=True)
        models = src_cache / "models"
        if models.is_dir():  # the converted embedded model, shared read-only
            for entry in models.iterdir():
                (cache / "models" / entry.name).symlink_to(entry)
        return {**env, "ALIGNKIT_CACHE": str(cache)}

    cells = [(s, b, seed) for s in args.selectors for b in args.budgets for seed in args.seeds]

    def study(name: str, workers: int) -> tuple[float, dict]:
        """Wall seconds of `alignkit study` (fresh caches) and its timings.json, with the
        per-cell training seconds."""
        config = {
            "data": pool,
            "eval_data": held,
            "output": str(work / name),
            "model": args.model,
            "selectors": [{"name": s} for s in args.selectors],
            "budgets": [float(b) for b in args.budgets],
            "seeds": args.seeds,
            "methods": [{"name": "dpo", "method": "dpo"}],
            "train": {"lora": True, "lr": 5e-4, "batch_size": 8, "max_length": 128},
            "selection": {"batch_size": 16, "max_length": 128},
            "workers": workers,
        }
        (work / f"{name}.yaml").write_text(json.dumps(config))
        start = time.perf_counter()
        alignkit(["study", "--config", str(work / f"{name}.yaml")], fresh_cache(f"cache-{name}"))
        wall = time.perf_counter() - start
        timings = json.loads((work / name / "timings.json").read_text())
        folders = {c: work / name / "cells" / c.replace("/", "__") for c in timings["cells_s"]}
        timings["train_s"] = {c: training_seconds(folder) for c, folder in folders.items()}
        timings["eval_s"] = {
            c: json.loads((folder / "cell.json").read_text()).get("eval_s", 0.0)
            for c, folder in folders.items()
        }
        return wall, timings

    study_s, timings = study("study", 1)
    cells_s, train_s, eval_s = timings["cells_s"], timings["train_s"], timings["eval_s"]
    overhead = [cells_s[c] - train_s[c] - eval_s[c] for c in cells_s]
    result: dict = {
        "cells": len(cells),
        "pool": args.pool,
        "held_out": args.held,
        "study_s": round(study_s, 1),
        "shared_work_s": round(timings["shared_s"], 1),
        "cell_s_mean": round(sum(cells_s.values()) / len(cells_s), 2),
        "cell_training_s_mean": round(sum(train_s.values()) / len(train_s), 2),
        "cell_eval_s_mean": round(sum(eval_s.values()) / len(eval_s), 2),
        "cell_overhead_s_mean": round(sum(overhead) / len(overhead), 2),
        "cell_overhead_s_max": round(max(overhead), 2),
    }
    print(
        f"{len(cells)} cells ({', '.join(args.selectors)} x budgets {args.budgets} x seeds "
        f"{args.seeds}), pool {args.pool}, held-out {args.held}"
    )
    print(f"  alignkit study           {study_s:8.1f} s")
    print(f"    shared work            {timings['shared_s']:8.1f} s (scores, tokens, reference)")
    print(f"    per cell               {result['cell_s_mean']:8.2f} s, of which training steps "
          f"{result['cell_training_s_mean']:.2f} s, held-out evaluation "
          f"{result['cell_eval_s_mean']:.2f} s")  # fmt: skip
    print(f"    per-cell overhead      {result['cell_overhead_s_mean']:8.2f} s mean, "
          f"{result['cell_overhead_s_max']:.2f} s max (beyond its training and evaluation)")  # fmt: skip

    if not args.skip_separate:
        start = time.perf_counter()
        sep_env = fresh_cache("cache-separate")
        for n, (selector, budget, seed) in enumerate(cells):
            sel = work / f"sel-{n}"
            select = ["select", selector, "--data", pool, "--output", str(sel)]
            select += ["--count", str(budget), "--seed", str(seed)]
            if selector != "random":  # the control needs no model
                select += ["--model", args.model]
            alignkit(select, sep_env)
            run = ["train", "--method", "dpo", "--model", args.model, "--seed", str(seed)]
            run += ["--data", str(sel / "subset.jsonl"), "--eval-data", held, *train]
            alignkit([*run, "--output", str(work / f"run-{n}")], sep_env)
        separate_s = time.perf_counter() - start
        result.update(separate_s=round(separate_s, 1), speedup=round(separate_s / study_s, 2))
        print(f"  separate CLI runs        {separate_s:8.1f} s")
        print(f"  separate / study         {separate_s / study_s:8.2f}x (target >= 3x at 8 cells)")
    if args.workers > 1:
        workers_s, _ = study("workers", args.workers)
        result.update(workers=args.workers, workers_s=round(workers_s, 1))
        result["workers_speedup"] = round(study_s / workers_s, 2)
        print(f"  study, {args.workers} workers        {workers_s:8.1f} s")
        print(f"  serial / {args.workers} workers      {study_s / workers_s:8.2f}x")
    result.update(load_average=os.getloadavg()[0], machine=machine_info("auto"))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def training_seconds(run: Path) -> float:
    """The `elapsed_s` of a run's training loop (its last logged training row)."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return max(r.get("elapsed_s", 0.0) for r in rows)


if __name__ == "__main__":
    main()
