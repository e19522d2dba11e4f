"""`alignkit select deft|real`: cut a preference dataset down before training.

Each sub-verb writes OUTPUT/subset.jsonl (TRL prompt/chosen/rejected, read by
`alignkit train --data`), OUTPUT/scores.jsonl and a report (report.md, report.json, PNG);
`deft` also writes OUTPUT/q_diff.safetensors, the Q_diff it filtered with, for
`alignkit train --q-diff`.
Works under `torchrun --nproc_per_node N -m alignkit select ...`: every process scores a
shard, the main process writes the outputs.
"""

from __future__ import annotations

import argparse
from typing import Any

from alignkit.options import CONFIG_NOTE, add_config_verb
from alignkit.scoring.deft import Q_DIFF_FILE
from alignkit.select.deft import DeftConfig
from alignkit.select.real import RealConfig

_DEFT_EPILOG = """\
R_Q(x, y) = mean over response positions of <Q_diff, log p(. | x, y_<t)>, with
Q_diff = Q_pos - Q_neg the token distributions of chosen minus rejected responses.
DEFT keeps the examples the starting model finds least typical of preferred answers.
OUTPUT/q_diff.safetensors holds that Q_diff (with its tokenizer and data fingerprint):
`alignkit train --q-diff` uses it for the guidance term and the logged R_Q.

examples:
  alignkit select deft --data pairs.jsonl --model default --output sel/deft
  alignkit select deft --data pairs.jsonl --keep-count 1000 --score margin --output sel/d
  alignkit train --method dpo --data sel/deft/subset.jsonl --q-diff sel/deft/q_diff.safetensors \\
      --deft-lambda 0.1 --output runs/deft-dpo
  torchrun --nproc_per_node 2 -m alignkit select deft --data pairs.jsonl --output sel/deft"""

_REAL_EPILOG = """\
Embedding of a response: base model on the response alone, last hidden layer, mean over
tokens, L2-normalised (cached on disk; an interrupted run resumes).
pair data:  easy = least similar chosen/rejected, hard = most similar, random = seeded
multi data: one pair per prompt (easy / hard / random / centroid), oriented by score

examples:
  alignkit select real --data pairs.jsonl --strategy easy --fraction 0.5 --output sel/easy
  alignkit select real --data shp.jsonl --strategy centroid --min-score-ratio 1.5 \\
      --max-length 512 --output sel/centroid
  alignkit train --method dpo --data sel/easy/subset.jsonl --output runs/real-easy"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "select",
        help="choose the part of a dataset worth training (deft) or labelling (real)",
        description="Select a subset of preference data before training; writes a dataset "
        "`alignkit train --data` reads, a per-example scores file and a report.",
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    verbs = parser.add_subparsers(dest="select_command", metavar="SUBVERB")
    for name, cls, func, help, epilog in (
        ("deft", DeftConfig, run_deft_command, _DEFT_HELP, _DEFT_EPILOG),
        ("real", RealConfig, run_real_command, _REAL_HELP, _REAL_EPILOG),
    ):
        description = f"{help[0].upper()}{help[1:]}. {CONFIG_NOTE}"
        add_config_verb(verbs, name, cls, func, help=help, description=description, epilog=epilog)


_DEFT_HELP = "keep the examples with the lowest DEFT distribution reward R_Q"
_REAL_HELP = "choose response pairs by embedding similarity (REAL)"


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_deft_command(config: DeftConfig) -> int:
    from alignkit.select.pipeline import run_deft

    result = run_deft(config)
    if result is not None:
        q_diff = result.output / Q_DIFF_FILE
        print(
            f"kept {result.kept} of {result.scored} examples (lowest R_Q, cut {result.cut:.6g})\n"
            f"subset: {result.subset}\nQ_diff: {q_diff}\n"
            f"report: {result.output / 'report.md'}\n"
            f"train on it: alignkit train --method dpo --data {result.subset} "
            f"--q-diff {q_diff} [--deft-lambda L | --log-r-q] --output RUN_DIR"
        )
    return 0


def run_real_command(config: RealConfig) -> int:
    from alignkit.select.pipeline import run_real

    result = run_real(config)
    if result is not None:
        print(
            f"selected {result.selected} pairs ({config.strategy}, {result.summary['mode']} "
            f"data)\nsubset: {result.subset}\nreport: {result.output / 'report.md'}\n"
            f"train on it: alignkit train --method dpo --data {result.subset} --output RUN_DIR"
        )
    return 0
