"""`alignkit compare RUN_DIR... --output DIR`: plots and a report comparing training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.evaluation.config import CompareConfig
from alignkit.options import add_config_verb

_DESCRIPTION = """\
Compare runs of `alignkit train`: training curves (loss, reward margins and accuracies, DEFT's
R_Q and held-out metrics, when logged; one line per run) and final metrics (summary.json's
final_metrics and eval_after, plus the numbers of any report.json of `alignkit eval` in the run
directory or one folder below) as bars. Runs whose config.json are equal except for seed,
output and resume are seeds of one configuration: their bar is the mean with a 95% Student-t
interval, dots are the single runs."""

_EPILOG = """\
output: DIR/report.md (Markdown, links the images), DIR/compare.json (all numbers),
        DIR/curve_*.png, DIR/final_metrics_*.png

example:
  alignkit compare runs/dpo-s1 runs/dpo-s2 runs/dpo-s3 runs/ulma-s1 runs/ulma-s2 --output cmp
"""


def register(subparsers: Any) -> None:
    add_config_verb(
        subparsers,
        "compare",
        CompareConfig,
        run,
        help="plot and tabulate several training runs (seeds grouped, 95%% intervals)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        show_defaults=False,
    )


def run(args: CompareConfig) -> int:
    from alignkit.evaluation.compare import compare_runs

    result = compare_runs(args.runs, args.output)
    out = Path(args.output)
    n_conf = len(result["configurations"])
    print(f"compared {len(result['runs'])} runs in {n_conf} configurations")
    for conf in result["configurations"]:
        print(f"  {conf['label']}: {', '.join(conf['runs'])}")
    print(
        f"report: {out / 'report.md'} (plots: {len(result['images']['curves'])} curves, "
        f"{len(result['images']['final_metrics'])} final-metric figures; table: {out / 'compare.json'})"
    )
    return 0
