"""`alignkit study --config study.yaml`: a data-efficiency study in one command."""

from __future__ import annotations

from alignkit.options import add_config_verb
from alignkit.study.options import StudyOptions

EPILOG = """\
The grid (selectors x budgets x seeds x methods) is a YAML file (`alignkit.study.config`
documents its keys), or a recipe that ships with alignkit: --config recipe:NAME (listed
below; `--config recipe:NAME --print-config > my.yaml` copies one to edit). Input paths in
the file are read relative to it; `output:` is relative to the working directory.

Each cell selects its subset of --data with one selector and budget, trains one method on
it with one seed, and evaluates on --eval-data (held-out implicit-reward accuracy, margin,
DPO loss; the first `eval_limit` pairs). Methods are `alignkit train` methods, or online ones
(ple, raft, rrhf-online, rloo, ppo: they sample from the subset's prompts).
Optional: `reward_model:` (a spec, or train-rm options: trained once) scores every cell's
greedy answers to the first `reward_prompts` held-out prompts (metric `reward`); `judge:`
gives each cell's win rate against a `baseline:` cell of the same seed (metric `win_rate`).
Tokens, reference log-probs, selector scores and the reward model are computed once. A
killed study resumes where it stopped: finished cells (cells/<id>/cell.json) are skipped.

study.md: every number with a 95% hierarchical bootstrap interval (seeds, then held-out
pairs; each cell writes its per-pair outcomes to cells/<id>/heldout_outcomes.jsonl), n per
cell, the paired difference of every cell to the random control of the same seed, labels
saved (selectors that pick pairs without their labels) or training pairs saved (selectors
that read the pool's labels) read off monotone curves in log budget, with the probability
that the target is not reached, and the seeds a paired design needs for 80% power (--detect).

outputs: OUTPUT/study.json, OUTPUT/study.md, OUTPUT/<method>_<metric>.png (metric vs budget,
one line per selector, 95% t-intervals over seeds; one budget: methods_<metric>.png, methods
side by side), OUTPUT/cells/<id>/ (one run directory each)

With `rounds:` (active preference learning) every cell spends its budget in rounds: the model
trained on the labels so far picks the next pairs (acquisition functions random, real, apl,
dopt) and a simulated annotator reveals only their labels (`flip_rate:` flips some);
`retrain:` trains each round from the start instead of on from the last round.

One model load per study process: each cell gets the model as a fresh run loads it (a new
LoRA adapter from the cell's seed; for full fine-tuning the weights restored from a copy), so
a cell's results are those it gives run alone. --workers N runs the cells in N processes on
this machine (one GPU each, or a share of the CPU threads); --executor ray on a Ray cluster
(OUTPUT on shared storage; see docs/scaling-study.md). The results do not depend on where
the cells ran.

--dry-run lists the cells and the shared work and estimates the wall time from a short
calibration on this machine (a model load, a few forward passes and training steps); it
writes nothing.

examples:
  alignkit study --config recipe:real
  alignkit study --config recipe:active --dry-run
  alignkit study --config study.yaml --workers 4
  RAY_ADDRESS=ray://head:10001 alignkit study --config study.yaml --executor ray
"""


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rsplit(" ", 1)[0] + " ..."


def recipes_note() -> str:
    """The recipes shipped with alignkit, one line each (for --help)."""
    from alignkit.package_data import RECIPES_DIR, recipe_names, recipe_summary

    lines = [f"  recipe:{name:<6} {_cut(recipe_summary(name), 76)}" for name in recipe_names()]
    return f"recipes (in {RECIPES_DIR}):\n" + "\n".join(lines) + "\n"


def register(subparsers) -> None:
    add_config_verb(
        subparsers,
        "study",
        StudyOptions,
        run,
        help="data-efficiency study: selectors x budgets x seeds x methods, labels saved",
        description="Run a grid of select -> train -> evaluate cells and report every metric "
        "against the budget with 95% intervals over seeds, and how many labels each selector "
        "saves against the random control.",
        epilog=EPILOG + "\n" + recipes_note(),
        show_defaults=False,
    )


def run(args: StudyOptions) -> int:
    from alignkit.study.config import load_study_config
    from alignkit.study.run import run_study

    config = load_study_config(args.config, args.overrides())
    if args.dry_run:
        return dry_run(config)
    if config.active:
        from alignkit.study.active import run_active_study

        report = run_active_study(config)
    else:
        report = run_study(config)
    print(f"study written to {config.output}/study.md ({len(report['cells'])} cells)")
    return 0


def dry_run(config) -> int:
    """Print the plan and the estimate; run nothing."""
    from alignkit.data.loading import load_records
    from alignkit.study.plan import calibrate, plan_markdown, plan_study

    pool, _ = load_records(config.data, skip_invalid=config.skip_invalid)
    held, _ = load_records(config.eval_data, skip_invalid=config.skip_invalid)
    print(f"calibrating {config.model} on this machine ...")
    calibration = calibrate(config, pool, held)
    plan = plan_study(config, len(pool), len(held), calibration)
    print(plan_markdown(plan, calibration))
    print(f"dry run: {len(plan.cells)} cells, nothing was run or written")
    return 0
