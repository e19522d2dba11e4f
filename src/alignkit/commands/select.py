"""`alignkit select NAME`: cut a preference dataset down before training.

One shape for every selector of `alignkit.select.registry` (a scorer plus a keep rule):
`alignkit select NAME --data F --output DIR (--fraction F | --count N)
[--keep lowest|highest|near-zero] [--seed S] [selector options]` (reward-gap and rm-margin
also name the rules by what they keep of a margin: --keep uncertain|misranked|confident), NAME in random, deft, real, reward-gap, rm-margin (registered
by `alignkit.rewards.selection`, imported here), perplexity, length. Each writes
OUTPUT/subset.jsonl (read by `alignkit train --data`), OUTPUT/scores.jsonl, dropped.jsonl and
a report (report.md, report.json, PNG histogram), through one run
(`alignkit.select.pipeline.run_selection`). `deft` and `real` keep their own flags
(`--strategy`, ...; deft's old `--keep-fraction`/`--keep-count` are deprecated aliases of the
common `--fraction`/`--count`); their subset is TRL prompt/chosen/rejected rows; `deft` also writes
OUTPUT/q_diff.safetensors, the Q_diff it filtered with, for `alignkit train --q-diff`.
Every selector works under `torchrun --nproc_per_node N -m alignkit select ...`: every
process scores a shard, the main process writes the outputs.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import alignkit.rewards.selection  # noqa: F401  (registers rm-margin)
from alignkit.options import CONFIG_NOTE, add_config_verb
from alignkit.select.registry import SELECTORS

_DEFT_EPILOG = """\
R_Q(x, y) = mean over response positions of <Q_diff, log p(. | x, y_<t)>, with
Q_diff = Q_pos - Q_neg the token distributions of chosen minus rejected responses.
DEFT keeps the examples the starting model finds least typical of preferred answers.
OUTPUT/q_diff.safetensors holds that Q_diff (with its tokenizer and data fingerprint):
`alignkit train --q-diff` uses it for the guidance term and the logged R_Q.

examples:
  alignkit select deft --data pairs.jsonl --model default --output sel/deft
  alignkit select deft --data pairs.jsonl --count 1000 --score margin --output sel/d
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

# the selectors with their own help and examples (the others: their description and _EXAMPLES)
_VERBS = {
    "deft": ("keep the examples with the lowest (--keep highest: highest) DEFT R_Q", _DEFT_EPILOG),
    "real": ("choose response pairs by embedding similarity (REAL)", _REAL_EPILOG),
}

_EXAMPLES = {
    "random": "alignkit select random --data pairs.jsonl --fraction 0.25 --seed 1 --output sel/r1",
    "reward-gap": "alignkit select reward-gap --data pairs.jsonl --model runs/sft --fraction 0.25 "
    "--output sel/gap\n  alignkit select reward-gap --data pairs.jsonl --model runs/sft "
    "--keep misranked --count 100 --output sel/suspect   # pairs to relabel\n"
    "  alignkit select reward-gap --data pairs.jsonl --model runs/dpo --ref runs/sft "
    "--fraction 0.5 --output sel/gap",
    "rm-margin": "alignkit select rm-margin --data pairs.jsonl --reward-model runs/rm "
    "--fraction 0.5 --output sel/rm",
    "perplexity": "alignkit select perplexity --data pairs.jsonl --model default --fraction 0.5 "
    "--output sel/ppl",
    "length": "alignkit select length --data pairs.jsonl --what pair --count 1000 --keep lowest "
    "--output sel/short",
}

_COMMON_EPILOG = """\
Writes OUTPUT/subset.jsonl (the kept records, original columns), scores.jsonl (every record:
index, source, score, rank, kept), dropped.jsonl (the others with their scores), report.json,
report.md and scores_hist.png (the cut marked). Ties at the cut are ordered by --seed.

examples:
  {example}
  alignkit train --method dpo --data OUTPUT/subset.jsonl --output RUN_DIR"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "select",
        help="choose the part of a dataset worth training or labelling (random, deft, real, "
        "reward-gap, rm-margin, perplexity, length)",
        description="Select a subset of preference data before training: alignkit select NAME "
        "--data F --output DIR (--fraction F | --count N) [--keep lowest|highest|near-zero] "
        "[--seed S] [options of NAME]. Writes a dataset `alignkit train --data` reads, every "
        "score, the dropped records and a report.",
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    verbs = parser.add_subparsers(dest="select_command", metavar="SELECTOR")
    for name, selector in SELECTORS.items():
        if selector.config is None:
            continue  # a selector without CLI options: Python API only
        help, epilog = _VERBS.get(name, (selector.description, ""))
        if not epilog:
            example = _EXAMPLES.get(name, f"alignkit select {name} --data pairs.jsonl "
                                    "--fraction 0.5 --output sel/out")  # fmt: skip
            epilog = _COMMON_EPILOG.format(example=example)
        description = f"{help[0].upper()}{help[1:]}. {CONFIG_NOTE}"
        func = functools.partial(run_selection_command, name)
        add_config_verb(
            verbs, name, selector.config, func, help=help, description=description, epilog=epilog
        )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_selection_command(name: str, config: Any) -> int:
    from alignkit.distributed import distributed_state
    from alignkit.select.pipeline import run_selection

    selection = run_selection(name, config)
    if distributed_state().is_main_process:  # launched on N processes: print once
        print(selection.message)
    return 0
