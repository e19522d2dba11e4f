"""Learning-rate sweep of DPO with LoRA on the embedded model: which `--lr` learns.

Trains `alignkit train --method dpo --lora` (the default LoRA preset, every other option at its
default) on a seeded sample of the shipped harder preference set
(src/alignkit/demo_data/prefs_train.jsonl) for every learning rate and seed, evaluates on the
held-out pairs (prefs_heldout.jsonl), and writes a Markdown table of the held-out preference
accuracy (share of pairs with r(chosen) > r(rejected)) and reward margin after training, each
the mean over seeds with its 95% t-interval (`alignkit.report.interval`), to OUTPUT/lr_sweep.md
(also printed; the per-run numbers go to OUTPUT/lr_sweep.json).

The default size is a smoke test (64 pairs, 2 learning rates, 1 seed: minutes on a CPU). The
sweep behind the LoRA default of `alignkit.train.config.LORA_LR`:

    python scripts/lr_sweep.py --output runs/lr-sweep --pairs 512 --eval-pairs 400 \\
        --lrs 5e-6 1e-5 2e-5 5e-5 1e-4 2e-4 5e-4 --seeds 0 1 2 --epochs 1

A finished run (OUTPUT/lr-LR-seed-S/summary.json) is reused, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alignkit.cli import main  # noqa: E402
from alignkit.io import atomic_write_text  # noqa: E402
from alignkit.report import interval, markdown_table  # noqa: E402

DATA = ROOT / "src" / "alignkit" / "demo_data"
METRICS = {"accuracy": "eval/rewards/accuracies", "margin": "eval/rewards/margins"}


def sample_lines(source: Path, n: int, target: Path) -> str:
    """A seeded sample of `n` records of a jsonl file (all when n is 0), the same for every
    learning rate and training seed."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    if 0 < n < len(lines):
        lines = random.Random(0).sample(lines, n)
    atomic_write_text(target, "\n".join(lines) + "\n")
    return str(target)


def train_one(args: argparse.Namespace, lr: float, seed: int, data: str, held_out: str) -> dict:
    """One DPO + LoRA run; its held-out metrics before and after training."""
    out = Path(args.output) / f"lr-{lr:g}-seed-{seed}"
    if not (out / "summary.json").exists():
        argv = ["train", "--method", "dpo", "--lora", "--model", args.model, "--data", data]
        argv += ["--eval-data", held_out, "--lr", str(lr), "--seed", str(seed)]
        argv += ["--epochs", str(args.epochs), "--max-length", str(args.max_length)]
        argv += ["--batch-size", str(args.batch_size), "--output", str(out), "--overwrite"]
        argv += ["--max-steps", str(args.max_steps)] if args.max_steps else []
        if main(argv) != 0:
            raise SystemExit(f"training failed: alignkit {' '.join(argv)}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "lr": lr,
        "seed": seed,
        "steps": summary["steps"],
        "before": {k: summary["eval_before"][m] for k, m in METRICS.items()},
        "after": {k: summary["eval_after"][m] for k, m in METRICS.items()},
    }


def _cell(values: list[float]) -> str:
    """mean [low, high] of a metric over seeds (the mean alone for one seed)."""
    ci = interval(values)
    if ci["ci95_low"] is None:
        return f"{ci['mean']:.3f}"
    return f"{ci['mean']:.3f} [{ci['ci95_low']:.3f}, {ci['ci95_high']:.3f}]"


def table(runs: list[dict]) -> str:
    """One row per learning rate: seeds, steps, held-out accuracy and margin after training."""
    rows = []
    for lr in sorted({r["lr"] for r in runs}):
        mine = [r for r in runs if r["lr"] == lr]
        rows.append(
            [
                f"{lr:g}",
                len(mine),
                mine[0]["steps"],
                _cell([r["after"]["accuracy"] for r in mine]),
                _cell([r["after"]["margin"] for r in mine]),
            ]
        )
    header = ["lr", "seeds", "steps", "held-out accuracy (95% CI)", "reward margin (95% CI)"]
    before = runs[0]["before"]
    note = (
        f"Before training: accuracy {before['accuracy']:.3f}, margin {before['margin']:.3f} "
        "(the policy equals the reference: every implicit reward is 0, ties count as wrong)."
    )
    return markdown_table(header, rows, align="lrrll") + "\n\n" + note


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/lr-sweep", help="folder of the runs and table")
    parser.add_argument("--model", default="default", help="model spec (default: embedded)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-6, 1e-4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pairs", type=int, default=64, help="training pairs (0 = all 1600)")
    parser.add_argument("--eval-pairs", type=int, default=64, help="held-out pairs (0 = all 400)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=0, help="0 = from --epochs")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = sample_lines(DATA / "prefs_train.jsonl", args.pairs, out / "train.jsonl")
    held_out = sample_lines(DATA / "prefs_heldout.jsonl", args.eval_pairs, out / "heldout.jsonl")
    runs = [train_one(args, lr, seed, data, held_out) for lr in args.lrs for seed in args.seeds]
    atomic_write_text(out / "lr_sweep.json", json.dumps(runs, indent=2))
    text = table(runs)
    atomic_write_text(out / "lr_sweep.md", text + "\n")
    return text


if __name__ == "__main__":
    print(run(parse_args()))
