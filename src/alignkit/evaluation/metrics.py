"""Evaluation metrics as small pure functions of tensors, numbers and strings.

docs/methods.md, "Evaluation metrics": perplexity of reference responses and BLEU against
the chosen response, at the corpus level on 0-100 (`corpus_bleu`, what MT papers and
sacreBLEU report) and as a mean of sentence scores on 0-1 (`sentence_bleus`, the scale of the
PLE and DEFT papers). The implicit-reward metrics of test pairs are in
`alignkit.objectives.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def perplexity(logp_sum: float | Tensor, n_tokens: int | float | Tensor) -> float:
    """exp(-sum log p / number of tokens): the exp of the mean token NLL.

    Tensor arguments (e.g. per-response sums (N,) and counts (N,)) are summed first, so
    every token weighs the same whatever response it belongs to.
    """
    total = float(torch.as_tensor(logp_sum, dtype=torch.float64).sum())
    count = float(torch.as_tensor(n_tokens, dtype=torch.float64).sum())
    if count <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(-total / count)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, population standard deviation) of a non-empty list."""
    if not values:
        raise ValueError("mean_std of an empty list")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


BLEU_DEFINITIONS = {
    "bleu": "corpus BLEU, 0-100: sacreBLEU corpus_bleu (13a tokenizer, n-gram counts summed "
    "over all generations before the geometric mean and brevity penalty, no smoothing), "
    "one reference (the chosen response) per prompt",
    "bleu_sentence": "mean sentence BLEU, 0-1: sacreBLEU sentence_bleu of each generation "
    "against its chosen response (13a tokenizer, 'exp' smoothing: the k-th n-gram order "
    "without a match counts 1/(2^k * total), effective order), divided by 100, averaged",
}


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU corpus BLEU (0..100) of hypotheses against one reference each
    (`BLEU_DEFINITIONS["bleu"]`)."""
    import sacrebleu

    _check_lengths(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def sentence_bleus(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """sacreBLEU sentence BLEU of each hypothesis against its reference, on 0..1
    (`BLEU_DEFINITIONS["bleu_sentence"]`: 13a tokenizer, exponential smoothing, effective
    order; the sacreBLEU score / 100). nltk's `sentence_bleu` with `method1` smoothing
    (epsilon 0.1) gives other values when an n-gram order has no match."""
    import sacrebleu

    _check_lengths(hypotheses, references)
    return [
        float(sacrebleu.sentence_bleu(h, [r], smooth_method="exp").score) / 100
        for h, r in zip(hypotheses, references, strict=True)
    ]
