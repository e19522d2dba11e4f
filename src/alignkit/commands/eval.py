"""`alignkit eval`: perplexity, implicit-reward margins, generations, reward score and BLEU."""

from __future__ import annotations

from alignkit.evaluation.config import EvalConfig
from alignkit.options import CONFIG_NOTE, add_config_verb

EPILOG = """\
metrics (--metrics; default: every one the data and models support):
  perplexity  exp(mean token NLL) of the reference responses (chosen / demonstrations)
  margins     implicit reward r = beta*(log pi - log pi_ref) on test pairs: margin, accuracy,
              DPO loss, reward_chosen/rejected (TRL's units); margin_unscaled and
              reward_chosen/rejected_unscaled = the same without beta, log pi - log pi_ref
              (REAL's Eq. 10 units). Reference: --ref; else, for a LoRA model, the adapter
              disabled; else the base model named in the run's summary.json
  generate    responses to --num-prompts test prompts (greedy unless --do-sample), saved to
              REPORT.generations.jsonl
  reward      mean and std of the --reward-model score of the generations
  bleu        BLEU of the generations against the chosen responses, two definitions:
                bleu           corpus sacreBLEU, 0-100 (13a tokens, n-gram counts summed
                               over the generations, no smoothing)
                bleu_sentence  mean sentence BLEU, 0-1 (sacreBLEU sentence_bleu / 100,
                               'exp' smoothing, effective order): the PLE/DEFT papers' scale
              (each generation's bleu_sentence is also in REPORT.generations.jsonl)
REPORT.json's "definitions" (and REPORT.md's last column) restate each metric's definition.

examples:
  alignkit eval --model runs/dpo --data test.jsonl --output runs/dpo/report.json
  alignkit eval --model runs/dpo/model --data test.jsonl --metrics generate,reward \\
      --reward-model runs/rm/model --num-prompts 50 --output eval.json
"""


def register(subparsers) -> None:
    add_config_verb(
        subparsers,
        "eval",
        EvalConfig,
        run,
        help="evaluate a model: perplexity, implicit-reward margins, generations, reward, BLEU",
        description="Evaluate a model on test data and write REPORT.json + REPORT.md. "
        + CONFIG_NOTE,
        epilog=EPILOG,
    )


def run(config: EvalConfig) -> int:
    from alignkit.distributed import distributed_state
    from alignkit.evaluation.runner import markdown, run_eval

    report = run_eval(config)
    if distributed_state().is_main_process:  # launched on N processes: print once
        print(markdown(report), end="")
        print(f"report written to {config.output}")
    return 0
