"""Held-out reward of a policy: its answers to held-out prompts, scored by a reward model
(docs/methods.md, "Evaluation metrics": reward-model score of generated responses).

Three stages measure it and all go through here: `alignkit eval --reward-model`
(`evaluation/runner.py`: its own sampling settings, batches and seeds, shared over
processes), the online loop's held-out reward of every iteration and a study's cells (greedy
answers to a queries file: `heldout_rows`, `heldout_metrics`).

- `generate_answers`: one answer per prompt, optionally in given batches shared over the
  processes (`alignkit.distributed.shard_map`), each batch seeded by its number.
- `score_answers`: the reward of each (prompt, answer), optionally in batches shared likewise.
- `heldout_rows`: greedy answers to queries and (with a reward model) their rewards, as rows.
- `heldout_metrics`: `eval/reward` and `eval/reward/<category>` of such rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from alignkit.data.prompts import prompt_json
from alignkit.data.queries import Query
from alignkit.data.records import Prompt
from alignkit.distributed import ProcessState, shard_map
from alignkit.inference.generation import SamplingConfig
from alignkit.inference.generators import Generator, greedy
from alignkit.rewards.loading import RewardModel


def _scatter(batches: Sequence[Sequence[int]], parts: Sequence[Sequence[Any]], n: int) -> list:
    """The values of `parts[b][j]` at index `batches[b][j]` of a list of `n`."""
    out: list[Any] = [None] * n
    for batch, values in zip(batches, parts, strict=True):
        for i, value in zip(batch, values, strict=True):
            out[i] = value
    return out


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def generate_answers(
    prompts: Sequence[Prompt],
    generator: Generator,
    sampling: SamplingConfig,
    *,
    batches: Sequence[Sequence[int]] | None = None,
    state: ProcessState | None = None,
    desc: str | None = None,
) -> list[str]:
    """The text of `generator`'s answer to each prompt, decoded as `sampling` says.

    `batches` (index lists into `prompts`): one `generator.generate` call per batch, seeded
    with `sampling.seed + its number` (when a seed is set), so a batch gives the same answers
    whichever process generates it; the batches are shared over `state`'s processes and every
    process gets every answer. None: one call over all prompts, with `sampling` as it is.
    """
    if not prompts:
        return []
    batches = [list(range(len(prompts)))] if batches is None else batches

    def work(numbered: tuple[int, Sequence[int]]) -> list[str]:
        number, batch = numbered
        seeded = (
            sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + number)
        )
        groups = generator.generate([prompts[i] for i in batch], seeded, 1)
        return [group[0].text for group in groups]

    parts = shard_map(list(enumerate(batches)), work, state, desc=desc)
    return _scatter(batches, parts, len(prompts))


def score_answers(
    prompts: Sequence[Prompt],
    answers: Sequence[str],
    reward: RewardModel,
    *,
    batch_size: int | None = None,
    state: ProcessState | None = None,
    desc: str | None = None,
) -> list[float]:
    """`reward`'s score of each (prompt, answer): one `reward.score` call per `batch_size`
    consecutive rows, shared over `state`'s processes (every process gets every score);
    None: one call over all rows."""
    if not prompts:
        return []
    batches = _chunks(len(prompts), batch_size or len(prompts))

    def work(batch: list[int]) -> list[float]:
        return reward.score([prompts[i] for i in batch], [answers[i] for i in batch])

    return _scatter(batches, shard_map(batches, work, state, desc=desc), len(prompts))


def heldout_rows(
    queries: Sequence[Query],
    generator: Generator,
    reward: RewardModel | None,
    sampling: SamplingConfig,
    *,
    state: ProcessState | None = None,
) -> list[dict[str, Any]]:
    """One row per query, in query order: `{"prompt", "category", "response", "reward"}` with
    the greedy answer and its reward; without a reward model the answers alone,
    `{"prompt", "response"}` (the generations file `alignkit judge` reads).

    Without `state`, one `generate` and one `score` call over all queries. With it, batches
    of `sampling.batch_size` consecutive queries are shared over the processes and every
    process gets every row: the same rows for any number of processes."""
    prompts = [q.prompt for q in queries]
    batches = _chunks(len(prompts), sampling.batch_size) if state is not None else None
    answers = generate_answers(prompts, generator, greedy(sampling), batches=batches, state=state)
    if reward is None:
        return [
            {"prompt": prompt_json(p), "response": a} for p, a in zip(prompts, answers, strict=True)
        ]
    size = sampling.batch_size if state is not None else None
    scores = score_answers(prompts, answers, reward, batch_size=size, state=state)
    return [
        {"prompt": prompt_json(q.prompt), "category": q.category, "response": a, "reward": s}
        for q, a, s in zip(queries, answers, scores, strict=True)
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
