"""Label pairs automatically, and measure how well the labels agree with people's.

`alignkit label auto` labels the pairs of a pairs file with
- a judge (`alignkit.evaluation.judges.build_judge`: `local:MODEL`, `http:URL`,
  `package.module:function`), asked in both orders by `alignkit.evaluation.win_rate.
  judge_pairs`: a is preferred in both orders -> "a", b in both -> "b", a verdict that flips
  with the order (or an explicit tie) -> "tie"; a reply that names no answer is not a label
  (counted as unparseable). Annotator "judge:SPEC".
- a reward model (`alignkit.rewards.loading.load_reward_model`): the answer with the higher
  reward wins, equal rewards are a tie. Annotator "rm:SPEC".

The labels are verdict lines (`alignkit.labelling.pairs.Verdict`). Given people's verdicts on
the same pairs, `agreement` reports how often the automatic label equals the human one and
Cohen's kappa over the labels a / b / tie (REAL's label-noise analysis).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from alignkit.errors import AlignkitError
from alignkit.labelling.pairs import LabelPair, Verdict

KAPPA_LABELS = ("a", "b", "tie")
_OUTCOME_VERDICT = {"win": "a", "loss": "b", "tie": "tie"}


def now() -> str:
    """The current UTC time as the verdicts file writes it (2026-11-29T11:00:00Z)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _verdict(pair: LabelPair, value: str, annotator: str, time: str) -> Verdict:
    return Verdict(pair.pair_id, value, annotator, None, time, pair.prompt, pair.a, pair.b)


def judge_verdicts(
    pairs: Sequence[LabelPair],
    judge: Any,
    annotator: str,
    cache: Any = None,
    concurrency: int = 4,
) -> tuple[list[Verdict], dict[str, int]]:
    """The judge's verdict on every pair (both orders), and the counts of a / b / tie /
    unparseable. Pairs with an unparseable reply get no verdict."""
    from alignkit.evaluation.win_rate import Item, judge_pairs

    items = [Item(p.prompt, p.a, p.b) for p in pairs]
    report = judge_pairs(items, judge, cache, concurrency, orders="both")
    stamp = now()
    verdicts, counts = [], Counter({"a": 0, "b": 0, "tie": 0, "unparseable": 0})
    for pair, row in zip(pairs, report["per_prompt"], strict=True):
        value = _OUTCOME_VERDICT.get(row["outcome"])
        counts[value or "unparseable"] += 1
        if value is not None:
            verdicts.append(_verdict(pair, value, annotator, stamp))
    return verdicts, dict(counts)


def reward_verdicts(
    pairs: Sequence[LabelPair], reward: Any, annotator: str
) -> tuple[list[Verdict], dict[str, int]]:
    """The reward model's verdict on every pair: higher R wins, equal R is a tie."""
    prompts = [p.prompt for p in pairs for _ in (0, 1)]
    scores = reward.score(prompts, [t for p in pairs for t in (p.a, p.b)])
    stamp = now()
    verdicts, counts = [], Counter({"a": 0, "b": 0, "tie": 0})
    for n, pair in enumerate(pairs):
        r_a, r_b = scores[2 * n], scores[2 * n + 1]
        value = "a" if r_a > r_b else "b" if r_b > r_a else "tie"
        counts[value] += 1
        verdicts.append(_verdict(pair, value, annotator, stamp))
    return verdicts, dict(counts)


# ------------------------------------------------------------------ agreement


def cohen_kappa(
    first: Sequence[str], second: Sequence[str], labels: Sequence[str] = KAPPA_LABELS
) -> float | None:
    """Cohen's kappa of two label sequences of equal length n:

        p_o = (1/n) * #{i: first_i == second_i}            (observed agreement)
        p_e = sum_c (n_first(c) / n) * (n_second(c) / n)   (agreement expected by chance)
        kappa = (p_o - p_e) / (1 - p_e)

    None when n = 0 or p_e = 1 (both raters use one and the same label: kappa undefined)."""
    if len(first) != len(second):
        raise AlignkitError(f"{len(first)} labels against {len(second)}")
    n = len(first)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(first, second, strict=True)) / n
    c1, c2 = Counter(first), Counter(second)
    p_e = sum(c1[c] * c2[c] for c in labels) / (n * n)
    if p_e == 1:
        return None
    return (p_o - p_e) / (1 - p_e)


def agreement(
    auto: Sequence[Verdict], human: Sequence[Verdict], refused: Sequence[str] = ()
) -> dict[str, Any]:
    """Agreement of automatic verdicts (one per pair) with human verdicts on the same pairs.

    One comparison per (pair, human annotator) where both gave a, b or tie (skips are left
    out). Reported: common_pairs, comparisons, agreement (share of equal labels),
    cohen_kappa over a / b / tie, the confusion counts auto label -> human label, and the
    `refused` human verdicts (texts that no longer match their pair id)."""
    by_pair = {v.pair_id: v.verdict for v in auto if v.verdict != "skip"}
    auto_labels, human_labels, pairs = [], [], set()
    for verdict in human:
        mine = by_pair.get(verdict.pair_id)
        if mine is None or verdict.verdict == "skip":
            continue
        auto_labels.append(mine)
        human_labels.append(verdict.verdict)
        pairs.add(verdict.pair_id)
    n = len(auto_labels)
    confusion = {a: dict.fromkeys(KAPPA_LABELS, 0) for a in KAPPA_LABELS}
    for a, h in zip(auto_labels, human_labels, strict=True):
        confusion[a][h] += 1
    kappa = cohen_kappa(auto_labels, human_labels)
    agree = sum(a == h for a, h in zip(auto_labels, human_labels, strict=True))
    return {
        "common_pairs": len(pairs),
        "comparisons": n,
        "agreement": round(agree / n, 6) if n else None,
        "cohen_kappa": None if kappa is None else round(kappa, 6),
        "confusion_auto_by_human": confusion,
        "human_annotators": sorted({v.annotator for v in human}),
        "refused_human_verdicts": list(refused),
    }


def format_agreement(report: dict[str, Any]) -> str:
    """One line for people."""

    def show(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    text = (
        f"agreement with the human labels: {report['common_pairs']} common pairs, "
        f"{report['comparisons']} comparisons, agreement {show(report['agreement'])}, "
        f"Cohen's kappa {show(report['cohen_kappa'])}"
    )
    if report["refused_human_verdicts"]:
        text += f" ({len(report['refused_human_verdicts'])} human verdicts refused)"
    return text
