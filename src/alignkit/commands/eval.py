"""`alignkit eval`: perplexity, implicit-reward margins, generations, reward score and BLEU."""

from __future__ import annotations

import argparse

from alignkit.options import add_dataclass_arguments, build_config

EPILOG = """\
metrics (--metrics; default: every one the data and models support):
  perplexity  exp(mean token NLL) of the reference responses (chosen / demonstrations)
  margins     implicit reward beta*(log pi - log pi_ref) on test pairs: margin, accuracy,
              DPO loss (reference: --ref; else, for a LoRA model, the adapter disabled; else
              the base model named in the run's summary.json)
  generate    responses to --num-prompts test prompts (greedy unless --do-sample), saved to
              REPORT.generations.jsonl
  reward      mean and std of the --reward-model score of the generations
  bleu        sacrebleu corpus BLEU of the generations against the chosen responses

examples:
  alignkit eval --model runs/dpo --data test.jsonl --output runs/dpo/report.json
  alignkit eval --model runs/dpo/model --data test.jsonl --metrics generate,reward \\
      --reward-model runs/rm/model --num-prompts 50 --output eval.json
"""


def register(subparsers) -> None:
    from alignkit.evaluation.runner import EvalConfig

    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: perplexity, implicit-reward margins, generations, reward, BLEU",
        description="Evaluate a model on test data and write REPORT.json + REPORT.md. "
        "Options come from --config (YAML), overridden by flags.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="YAML", help="YAML file with any of the options below")
    add_dataclass_arguments(parser, EvalConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.evaluation.runner import EvalConfig, markdown, run_eval

    config = build_config(EvalConfig, args, args.config)
    report = run_eval(config)
    print(markdown(report), end="")
    print(f"report written to {config.output}")
    return 0
