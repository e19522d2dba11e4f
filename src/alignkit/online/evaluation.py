"""Held-out reward of the policy: greedy, unguided responses to held-out queries, scored by
the run's reward model (docs/methods.md, "Evaluation metrics": reward-model score of
generated responses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.data.prompts import prompt_json
from alignkit.data.queries import Query
from alignkit.inference.generation import SamplingConfig
from alignkit.inference.generators import Generator, greedy
from alignkit.rewards.loading import RewardModel


def heldout_rows(
    queries: Sequence[Query], generator: Generator, reward: RewardModel, sampling: SamplingConfig
) -> list[dict[str, Any]]:
    """One row per query: prompt, category, greedy response and its reward."""
    prompts = [q.prompt for q in queries]
    if not prompts:
        return []
    responses = [group[0].text for group in generator.generate(prompts, greedy(sampling), 1)]
    scores = reward.score(prompts, responses)
    return [
        {"prompt": prompt_json(q.prompt), "category": q.category, "response": r, "reward": s}
        for q, r, s in zip(queries, responses, scores, strict=True)
    ]


def heldout_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """eval/reward over all rows, and eval/reward/<category> for every category."""
    if not rows:
        return {}
    metrics = {"eval/reward": sum(r["reward"] for r in rows) / len(rows)}
    for cat in sorted({r["category"] for r in rows if r["category"]}):
        group = [r["reward"] for r in rows if r["category"] == cat]
        metrics[f"eval/reward/{cat}"] = sum(group) / len(group)
    return metrics
