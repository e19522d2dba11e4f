"""The labelling loop of the README, run end to end on the embedded model (SmolLM2-135M):

  prompts -> `alignkit generate` (4 answers each) -> `alignkit label select` (50%, easy)
  -> `alignkit label serve` + a scripted annotator in headless Chromium who prefers the
     SHORTER answer (by words), pressing keys as a person would -> stop the server
  -> `alignkit label import` -> `alignkit train --method dpo --lora`
  -> `alignkit eval` of the base model and of the trained run on the prompts left unlabelled,
     with the annotator's own preference as the reward (`brevity` below).

Every verb runs as a subprocess and is printed as the command a user would type.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/labelling_walkthrough.py \\
        --output runs/labelling-walkthrough

Writes OUTPUT/walkthrough.json (the numbers), OUTPUT/label_serve.png (the page mid-way) and
every file of the loop (prompts, pool, pairs, verdicts, prefs, the DPO run, eval reports).
Needs python playwright and /usr/bin/chromium (the browser tests' setup).

This module is also the reward of the eval step: `--reward-model labelling_walkthrough:brevity`
with scripts/ on PYTHONPATH (so it imports nothing heavy at module level).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ANNOTATOR = "sam"
SCRIPTS = Path(__file__).resolve().parent
OUTPUTS = (  # what a run writes into OUTPUT (removed first with --overwrite)
    "prompts.jsonl",
    "pool.jsonl",
    "pool.meta.json",
    "pairs.jsonl",
    "verdicts.jsonl",
    "prefs.jsonl",
    "heldout.jsonl",
    "dpo",
    "eval-base.json",
    "eval-base.md",
    "eval-base.generations.jsonl",
    "eval-dpo.json",
    "eval-dpo.md",
    "eval-dpo.generations.jsonl",
    "label_serve.png",
    "walkthrough.json",
)


def words(text: str) -> int:
    return len(text.split())


def brevity(prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
    """The annotator's preference as a reward: minus the number of words of the response."""
    return [-float(words(r)) for r in responses]


# ------------------------------------------------------------------ running the verbs


class Steps:
    """Runs `alignkit VERB ...` as subprocesses, printing each command and timing each step."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def shown(self, argv: Sequence[str], env: dict[str, str] | None = None) -> str:
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
        return prefix + "alignkit " + " ".join(shlex.quote(a) for a in argv)

    def run(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        print(f"\n== {name}\n$ {self.shown(argv, env)}", flush=True)
        start = time.perf_counter()
        full_env = {**os.environ, **(env or {})}
        done = subprocess.run([sys.executable, "-m", "alignkit", *argv], env=full_env)
        self.times[name] = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"step {name!r} failed (exit {done.returncode}): {self.shown(argv, env)}")
        print(f"-- {name}: {self.times[name]:.1f} s", flush=True)


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is inside it (as a user types it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def key_of(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


# ------------------------------------------------------------------ the labelling session


def label_in_browser(steps: Steps, pairs: Path, verdicts: Path, screenshot: Path) -> dict[str, Any]:
    """`alignkit label serve` in a subprocess and a scripted annotator in headless Chromium:
    they type their name, then for every pair press the key of the side with fewer words
    (a / b, or the arrows; t when both have as many). Screenshot half-way; then the server is
    stopped as a person stops it (Ctrl-C). What was pressed, per pair."""
    from playwright.sync_api import expect, sync_playwright

    argv = ["label", "serve", "--pairs", shown_path(pairs), "--verdicts", shown_path(verdicts)]
    argv += ["--port", "0"]
    print(f"\n== label serve\n$ {steps.shown(argv)}", flush=True)
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "alignkit", *argv], stdout=subprocess.PIPE, text=True
    )
    pressed: dict[str, Any] = {"keys": {}, "left": 0, "right": 0, "tie": 0}
    try:
        line = server.stdout.readline() if server.stdout else ""
        print(line, end="", flush=True)
        found = re.search(r"at (http://\S+)", line)
        if not found:
            sys.exit(f"label serve printed no URL (exit {server.poll()}): {line!r}")
        url = found.group(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(url)
            expect(page.locator("#message")).to_contain_text("Type your name")
            page.click("#annotator")
            page.keyboard.type(ANNOTATOR)
            page.keyboard.press("Enter")
            total = len(rows_of(pairs))
            for n in range(total):
                expect(page.locator("#progress-text")).to_have_text(f"{n} / {total} labelled")
                if n == total // 2:
                    page.screenshot(path=str(screenshot), full_page=True)
                left = words(page.inner_text("#left"))
                right = words(page.inner_text("#right"))
                side = "tie" if left == right else "left" if left < right else "right"
                key = {"left": ("a", "ArrowLeft"), "right": ("b", "ArrowRight"), "tie": ("t",)}
                press = key[side][n % len(key[side])]  # letters and arrows, as people mix
                page.keyboard.press(press)
                pressed[side] += 1
                pressed["keys"][press] = pressed["keys"].get(press, 0) + 1
            expect(page.locator("#progress-text")).to_have_text(f"{total} / {total} labelled")
            expect(page.locator("#finished")).to_be_visible()
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            rest = server.communicate()[0]
        print(rest or "", end="", flush=True)
    steps.times["label serve"] = time.perf_counter() - start
    print(f"-- label serve (browser session): {steps.times['label serve']:.1f} s", flush=True)
    return pressed


# ------------------------------------------------------------------ the walk-through


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/labelling-walkthrough", help="output folder")
    parser.add_argument("--model", default="default", help="policy and base of DPO")
    parser.add_argument("--num-prompts", type=int, default=32, help="prompts to generate for")
    parser.add_argument("--budget", type=int, default=16, help="pairs to label")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--overwrite", action="store_true", help="remove a previous run's files")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium)")

    out = Path(args.output)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            sys.exit(f"{out} is not empty: give another --output, or --overwrite")
        for name in OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    steps = Steps()
    o = shown_path(out)
    tokens = str(args.max_new_tokens)

    # the first N distinct prompts of the held-out demo preferences (chat messages)
    source = resources.files("alignkit") / "demo_data" / "prefs_heldout.jsonl"
    records: dict[str, dict[str, Any]] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        records.setdefault(key_of(record["prompt"]), record)
        if len(records) == args.num_prompts:
            break
    write_rows(out / "prompts.jsonl", [{"prompt": r["prompt"]} for r in records.values()])
    print(f"{len(records)} prompts -> {o}/prompts.jsonl (first distinct prompts of {source.name})")

    steps.run(
        "generate",
        ["generate", "--model", args.model, "--prompts", f"{o}/prompts.jsonl"]
        + ["--num-responses", "4", "--max-new-tokens", tokens, "--seed", "0"]
        + ["--output", f"{o}/pool.jsonl"],
    )
    steps.run(
        "label select",
        ["label", "select", "--pool", f"{o}/pool.jsonl", "--strategy", "easy"]
        + ["--budget", str(args.budget), "--output", f"{o}/pairs.jsonl"],
    )
    pressed = label_in_browser(
        steps, out / "pairs.jsonl", out / "verdicts.jsonl", out / "label_serve.png"
    )
    steps.run(
        "label import",
        ["label", "import", f"{o}/verdicts.jsonl", "--output", f"{o}/prefs.jsonl"],
    )
    steps.run(
        "train dpo",
        ["train", "--method", "dpo", "--model", args.model, "--data", f"{o}/prefs.jsonl"]
        + ["--lora", "--lr", "5e-4", "--epochs", "3", "--batch-size", "4"]
        + ["--max-length", "192", "--output", f"{o}/dpo"],
    )

    # held out: the pool's prompts that were not chosen for labelling
    labelled = {key_of(r["prompt"]) for r in rows_of(out / "pairs.jsonl")}
    held = [r for k, r in records.items() if k not in labelled]
    write_rows(out / "heldout.jsonl", held)
    print(f"\n{len(held)} unlabelled prompts -> {o}/heldout.jsonl (eval data)")
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))
    }
    shown_env = {"PYTHONPATH": shown_path(SCRIPTS)}
    evals: dict[str, dict[str, Any]] = {}
    for name, model in (("base", args.model), ("dpo", f"{o}/dpo")):
        argv_eval = ["eval", "--model", model, "--data", f"{o}/heldout.jsonl"]
        argv_eval += ["--metrics", "generate", "reward"]
        argv_eval += ["--reward-model", "labelling_walkthrough:brevity", "--num-prompts", "0"]
        argv_eval += ["--max-new-tokens", tokens, "--output", f"{o}/eval-{name}.json"]
        print(f"\n== eval {name}\n$ {steps.shown(argv_eval, shown_env)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "alignkit", *argv_eval], env={**os.environ, **env}
        )
        steps.times[f"eval {name}"] = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"eval {name} failed (exit {done.returncode})")
        print(f"-- eval {name}: {steps.times[f'eval {name}']:.1f} s", flush=True)
        report = json.loads((out / f"eval-{name}.json").read_text())
        generations = rows_of(out / f"eval-{name}.generations.jsonl")
        counts = [words(g["response"]) for g in generations]
        evals[name] = {
            "prompts": len(generations),
            "mean_words": sum(counts) / len(counts),
            "reward_mean": report["metrics"]["reward_mean"],
        }

    # the numbers
    pool = rows_of(out / "pool.jsonl")
    pairs = rows_of(out / "pairs.jsonl")
    verdict_lines = rows_of(out / "verdicts.jsonl")
    prefs = rows_of(out / "prefs.jsonl")
    ties = sum(v.get("verdict") == "tie" for v in verdict_lines)
    shorter_chosen = sum(words(r["chosen"]) < words(r["rejected"]) for r in prefs)
    summary = json.loads((out / "dpo" / "summary.json").read_text())
    results = {
        "model": args.model,
        "prompts": len(pool),
        "responses_per_prompt": len(pool[0]["responses"]),
        "unfinished_responses": sum(not f for r in pool for f in r["finished"]),
        "pairs_labelled": len(pairs),
        "verdict_lines": len(verdict_lines),
        "ties": ties,
        "keys_pressed": pressed["keys"],
        "imported_pairs": len(prefs),
        "imported_shorter_chosen": shorter_chosen,
        "dpo_steps": summary["steps"],
        "dpo_final_loss": summary["final_metrics"].get("loss"),
        "eval_prompts": evals["base"]["prompts"],
        "mean_words_before": evals["base"]["mean_words"],
        "mean_words_after": evals["dpo"]["mean_words"],
        "reward_before": evals["base"]["reward_mean"],
        "reward_after": evals["dpo"]["reward_mean"],
        "seconds": {k: round(v, 1) for k, v in steps.times.items()},
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "screenshot": f"{o}/label_serve.png",
    }
    (out / "walkthrough.json").write_text(json.dumps(results, indent=1) + "\n", "utf-8")

    table = [
        ("prompts x answers", f"{results['prompts']} x {results['responses_per_prompt']}"),
        ("pairs labelled (easy, 50%)", results["pairs_labelled"]),
        ("ties", results["ties"]),
        ("imported pairs", f"{len(prefs)} (shorter chosen: {shorter_chosen})"),
        ("DPO steps / final loss", f"{summary['steps']} / {results['dpo_final_loss']:.4f}"),
        ("held-out prompts", results["eval_prompts"]),
        ("mean words, greedy: before", f"{results['mean_words_before']:.1f}"),
        ("mean words, greedy: after", f"{results['mean_words_after']:.1f}"),
        ("reward (-words): before", f"{results['reward_before']:.2f}"),
        ("reward (-words): after", f"{results['reward_after']:.2f}"),
    ]
    table += [(f"time: {k}", f"{v:.1f} s") for k, v in steps.times.items()]
    table.append(("wall time", f"{results['wall_seconds']:.1f} s"))
    width = max(len(k) for k, _ in table)
    print("\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in table))
    print(f"\nnumbers: {o}/walkthrough.json; the page mid-way: {o}/label_serve.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
