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

example:
  alignkit study --config recipe:real
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
    report = run_study(config)
    print(f"study written to {config.output}/study.md ({len(report['cells'])} cells)")
    return 0
