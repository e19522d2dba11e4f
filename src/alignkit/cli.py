"""`alignkit VERB ...`: the command-line interface.

Each verb lives in `alignkit.commands.<module>` and exposes `register(subparsers)`, which adds
its parser (`options.add_config_verb`: the fields of a config dataclass, `--config YAML`) and
sets `func`, where `func(args) -> int` returns the exit code.
Exit codes: 0 ok, 2 bad input or usage (an `AlignkitError`), 1 internal error.

A verb's module is imported only when that verb is parsed (`alignkit --help` lists the verbs
from `VERBS`, the static table below), and a module imports torch only when its verb runs: the
CLI answers `--help` without loading the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from alignkit import __version__
from alignkit.errors import AlignkitError

# verb -> (its module in alignkit.commands, its one-line help), in the order of `alignkit
# --help`; the help must be the one the module's `register` gives (tests/test_cli.py checks)
VERBS: dict[str, tuple[str, str]] = {
    "train": ("train", "align a model with an objective (dpo, ulma, sft, ...)"),
    "data": ("data", "check, describe and convert data files"),
    "demo": ("demo", "align the embedded model on the embedded data and show before/after"),
    "select": (
        "select",
        "choose the part of a dataset worth training or labelling (random, deft, real, "
        "reward-gap, rm-margin, perplexity, length)",
    ),
    "study": (
        "study",
        "data-efficiency study: selectors x budgets x seeds x methods, labels saved",
    ),
    "generate": (
        "generate",
        "sample K answers per prompt into a pool to label (hf, vLLM or an endpoint)",
    ),
    "label": (
        "label",
        "choose pairs to label, label them (browser, Label Studio, judge), import labels",
    ),
    "eval": (
        "eval",
        "evaluate a model: perplexity, implicit-reward margins, generations, reward, BLEU",
    ),
    "train-rm": ("train_rm", "train a Bradley-Terry reward model on preference pairs"),
    "judge": ("judge", "win rate of generations A over B by an LLM judge (both orders)"),
    "serve": (
        "serve",
        "serve a local model through an OpenAI-compatible API (chat, completions, streaming)",
    ),
    "compare": (
        "compare",
        "plot and tabulate several training runs (seeds grouped, 95%% intervals)",
    ),
    "ple": ("online", "PLE: principle-guided sampling, reward scoring and a decaying threshold"),
    "raft": ("online", "RAFT: sample K responses, fine-tune on the best by reward"),
    "rrhf-online": ("online", "online RRHF: rank K fresh samples by reward (+ SFT on the best)"),
    "rloo": (
        "online",
        "RLOO: REINFORCE with a leave-one-out baseline over K samples, KL to the reference",
    ),
    "ppo": ("online", "PPO: RLHF with a value head, per-token KL penalty, GAE and clipped losses"),
    "export": (
        "export",
        "export a run's model (LoRA merged, or the adapter) with a model card; push to the Hub",
    ),
    "env": (
        "env",
        "print versions, device, CPU flags and the precision auto picks (for bug reports)",
    ),
}


class _LazyVerbs(dict):
    """The verb -> parser map of the top-level subparsers action: a verb's module is imported
    and its `register` run the first time its parser is looked up (argparse looks up only the
    verb given on the command line). Membership and iteration see every verb of `VERBS`."""

    def __init__(self, action: Any) -> None:
        super().__init__()
        self._action = action
        self._pending = dict(VERBS)

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self._pending

    def __iter__(self) -> Any:
        return iter([*VERBS, *(n for n in super().keys() if n not in VERBS)])

    def __missing__(self, name: str) -> argparse.ArgumentParser:
        if name not in self._pending:
            raise KeyError(name)
        module_name = self._pending[name][0]
        for verb in [v for v, (m, _) in self._pending.items() if m == module_name]:
            del self._pending[verb]  # the module registers all of its verbs
        listed = list(self._action._choices_actions)  # the table's lines stay the help's
        importlib.import_module(f"alignkit.commands.{module_name}").register(self._action)
        self._action._choices_actions[:] = listed
        return dict.__getitem__(self, name)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `alignkit`; each verb's own parser is built when it is first looked up."""
    parser = argparse.ArgumentParser(
        prog="alignkit",
        description="Data-efficient preference alignment of language models "
        "(DEFT, ULMA, PLE, REAL and their baselines).",
    )
    parser.add_argument("--version", action="version", version=f"alignkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="VERB")
    verbs = _LazyVerbs(sub)
    sub._name_parser_map = sub.choices = verbs
    for name, (_, help) in VERBS.items():
        sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), help))
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignkit: interrupted", file=sys.stderr)
        return 130
