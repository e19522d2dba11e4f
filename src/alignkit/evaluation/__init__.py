"""Evaluation: metric functions (`metrics`) and the `alignkit eval` orchestration (`runner`)."""

from alignkit.evaluation.metrics import corpus_bleu, mean_std, perplexity
from alignkit.evaluation.runner import METRIC_NAMES, EvalConfig, run_eval

__all__ = [
    "METRIC_NAMES",
    "EvalConfig",
    "corpus_bleu",
    "mean_std",
    "perplexity",
    "run_eval",
]
