"""`alignkit.evaluation.metrics`: perplexity, corpus and sentence BLEU and mean/std on
hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.evaluation import metrics as M


def test_perplexity_of_a_known_distribution():
    # every token has p = 1/4 -> perplexity 4, whatever the split into responses
    assert M.perplexity(10 * math.log(0.25), 10) == pytest.approx(4.0)
    sums = torch.tensor([3 * math.log(0.25), 7 * math.log(0.25)])
    assert M.perplexity(sums, torch.tensor([3, 7])) == pytest.approx(4.0)
    # token-weighted, not response-weighted: p=1/2 on 1 token and 1/8 on 3 tokens
    mixed = torch.tensor([math.log(0.5), 3 * math.log(0.125)])
    assert M.perplexity(mixed, torch.tensor([1, 3])) == pytest.approx(2 ** (10 / 4))
    with pytest.raises(ValueError):
        M.perplexity(0.0, 0)


def test_bleu_and_mean_std():
    text = ["the cat sat on the mat today", "a dog can not help it is danger"]
    assert M.corpus_bleu(text, text) == pytest.approx(100.0)
    assert M.corpus_bleu(["zzz qqq xxx yyy"], ["the cat sat on the mat"]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        M.corpus_bleu(["a"], [])
    with pytest.raises(ValueError):
        M.sentence_bleus(["a"], [])
    assert M.mean_std([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError):
        M.mean_std([])


def test_bleu_by_hand_corpus_and_sentence():
    """Both BLEU definitions on two tiny examples, counted by hand (13a tokens = the words).

    Fails on: corpus BLEU taken as the mean of sentence scores (66.5 / 0.665 instead of
    59.69), sentence BLEU left on 0-100, no smoothing (0 for pair 3), nltk-style method1
    smoothing (epsilon 0.1: 0.103 instead of 0.193), a fixed order 4 instead of the effective
    order (pair 2 has no 4-gram: 0 or smoothed instead of 1.0)."""
    hyps = ["the cat sat on a mat", "a dog ran"]
    refs = ["the cat sat on the mat", "a dog ran"]
    # pair 1, n-gram matches / hypothesis n-grams: 1-grams the cat sat on a mat -> 5/6;
    # 2-grams (the cat, cat sat, sat on, on a, a mat) -> 3/5; 3-grams -> 2/4
    # (the cat sat, cat sat on); 4-grams -> 1/3 (the cat sat on); lengths 6 = 6: BP 1.
    s1 = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4)  # = (1/12)^(1/4) = 0.5373
    # pair 2: identical, 3 tokens, no 4-gram at all: effective order 3, every precision 1
    s2 = 1.0
    # corpus: counts summed over both pairs before the geometric mean:
    # 1-grams (5+3)/(6+3), 2-grams (3+2)/(5+2), 3-grams (2+1)/(4+1), 4-grams (1+0)/(3+0)
    corpus = 100 * (8 / 9 * 5 / 7 * 3 / 5 * 1 / 3) ** (1 / 4)  # = 59.695
    assert M.corpus_bleu(hyps, refs) == pytest.approx(corpus, rel=1e-9)
    assert M.sentence_bleus(hyps, refs) == pytest.approx([s1, s2], rel=1e-9)
    # pair 3: no 3-gram and no 4-gram matches. 1-grams the dog sat on a mat -> 4/6
    # (the, sat, on, mat); 2-grams -> 1/5 (sat on); 3-grams 0/4; 4-grams 0/3.
    # 'exp' smoothing: the k-th order without a match counts 1 / (2^k * total):
    # 3-grams 1/(2*4) = 1/8, 4-grams 1/(4*3) = 1/12.
    s3 = (4 / 6 * 1 / 5 * 1 / 8 * 1 / 12) ** (1 / 4)  # = 0.19305
    [got] = M.sentence_bleus(["the dog sat on a mat"], ["the cat sat on the mat"])
    assert got == pytest.approx(s3, rel=1e-9)
    # brevity penalty: "the cat" against 6 words, effective order 2 (precisions 1, 1):
    # BP = exp(1 - 6/2) = e^-2
    [short] = M.sentence_bleus(["the cat"], ["the cat sat on the mat"])
    assert short == pytest.approx(math.exp(-2), rel=1e-9)
