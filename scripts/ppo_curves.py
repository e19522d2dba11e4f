"""PPO curves with the old critic and the new one: reward, KL, value loss, explained variance.

Runs `alignkit ppo` twice on the embedded model (`--model default`, SmolLM2-135M-Instruct,
`--lora`) over the same queries, seed and reward, once with the critic of before issue 20
(`--value-init zero --critic-lr LR --critic-warmup-steps 0`, LR = `--lr`: V = 0 and the
policy's learning rate) and once with the defaults (value head from the reward model where it
applies, `--critic-lr 1e-4`, 100 warm-up steps on the first rollout's Monte-Carlo returns).
Writes OUTPUT/ppo_curves.md (a table per step) and OUTPUT/ppo_curves.png (four panels).

Queries: the first --queries prompts of the embedded preference set
(src/alignkit/demo_data/prefs_train.jsonl). Reward: --reward-model (a reward model directory,
e.g. from `alignkit train-rm --model default --lora --data
src/alignkit/demo_data/prefs_train.jsonl`, which the new critic's --value-init copies), or by
default a scripted one: min(words, 40) / 10, a length reward whose value the first tokens of
an answer cannot see (the case where GAE with V = 0 gives them almost no credit).

Small check (minutes on a CPU):
    python scripts/ppo_curves.py --output runs/ppo-curves-small --iterations 2 \\
        --queries-per-iteration 4 --max-new-tokens 16
Bigger (a GPU; what the README's curves use):
    python scripts/ppo_curves.py --output runs/ppo-curves --iterations 40 \\
        --queries-per-iteration 32 --max-new-tokens 96 --queries 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alignkit.cli import main  # noqa: E402
from alignkit.io import atomic_write_jsonl, atomic_write_text, read_jsonl  # noqa: E402
from alignkit.report import new_figure, save_png  # noqa: E402

PREFS = ROOT / "src" / "alignkit" / "demo_data" / "prefs_train.jsonl"
REWARD_MODULE = "ppo_curves_rewards"
CURVES = (  # metric key in metrics.jsonl, label
    ("reward/mean", "reward"),
    ("ppo/kl", "KL to the reference"),
    ("ppo/value_loss", "value loss"),
    ("ppo/explained_variance", "explained variance"),
)


def length_score(prompts, responses) -> list[float]:
    """The scripted reward: min(words, 40) / 10."""
    return [min(len(r.split()), 40) / 10 for r in responses]


def write_queries(path: Path, n: int) -> str:
    """The first `n` distinct prompts of the embedded preference set, as a queries file."""
    prompts, seen = [], set()
    for row in read_jsonl(PREFS):
        key = json.dumps(row["prompt"])
        if key not in seen:
            seen.add(key)
            prompts.append({"prompt": row["prompt"]})
        if len(prompts) == n:
            break
    atomic_write_jsonl(path, prompts)
    return str(path)


def run_ppo(args: argparse.Namespace, queries: str, out: Path, critic: list[str]) -> list[dict]:
    """`alignkit ppo` with the shared settings and `critic`'s flags; its per-iteration rows."""
    argv = [
        "ppo", "--model", args.model, "--lora", "--queries", queries, "--output", str(out),
        "--reward-model", args.reward_model or f"{REWARD_MODULE}:length_score",
        "--iterations", str(args.iterations),
        "--queries-per-iteration", str(args.queries_per_iteration),
        "--num-samples", str(args.num_samples), "--max-new-tokens", str(args.max_new_tokens),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
        "--save-every", "0", "--no-save-model", "--overwrite", *critic,
    ]  # fmt: skip
    if main(argv) != 0:
        raise SystemExit(f"alignkit ppo failed for {out}")
    return [row for row in read_jsonl(out / "metrics.jsonl") if "ppo/kl" in row]


def table(runs: dict[str, list[dict]]) -> str:
    """Markdown: one row per iteration and critic, the four curves."""
    head = "| iteration | critic | " + " | ".join(label for _, label in CURVES) + " |"
    lines = [head, "|" + "---|" * (len(CURVES) + 2)]
    for name, rows in runs.items():
        for row in rows:
            values = " | ".join(f"{row.get(key, float('nan')):.4g}" for key, _ in CURVES)
            lines.append(f"| {row['step']} | {name} | {values} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(10, 6.5)
    for i, (key, label) in enumerate(CURVES):
        ax = figure.add_subplot(2, 2, i + 1)
        for name, rows in runs.items():
            ax.plot([r["step"] for r in rows], [r.get(key, float("nan")) for r in rows], "o-",
                    label=name)  # fmt: skip
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend()
    figure.tight_layout()
    save_png(figure, path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="folder for the runs, table and figure")
    p.add_argument("--model", default="default", help="policy (default: embedded SmolLM2-135M)")
    p.add_argument("--reward-model", default="", help="reward model dir (default: scripted)")
    p.add_argument("--queries", type=int, default=64, help="distinct prompts used")
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--queries-per-iteration", type=int, default=8)
    p.add_argument("--num-samples", type=int, default=2, help="answers per query")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-5, help="policy learning rate (--lr)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, list[dict]]:
    args = parse(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    module = types.ModuleType(REWARD_MODULE)
    module.length_score = length_score  # type: ignore[attr-defined]
    sys.modules[REWARD_MODULE] = module
    queries = write_queries(out / "queries.jsonl", args.queries)
    old = ["--value-init", "zero", "--critic-lr", str(args.lr), "--critic-warmup-steps", "0"]
    runs = {
        "old (V=0, lr, no warm-up)": run_ppo(args, queries, out / "old", old),
        "new (defaults)": run_ppo(args, queries, out / "new", []),
    }
    atomic_write_text(out / "ppo_curves.md", table(runs))
    plot(runs, out / "ppo_curves.png")
    print(table(runs))
    print(f"wrote {out / 'ppo_curves.md'} and {out / 'ppo_curves.png'}")
    return runs


if __name__ == "__main__":
    run()
