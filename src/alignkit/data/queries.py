"""Query sets of the online loop: reading, the length filter, and the per-iteration schedule.

A queries file holds one record per query with a `prompt` (a string or a list of chat
messages) and an optional `category` (used to break held-out rewards down). Any other
fields (e.g. `chosen`/`rejected` of a preference file) are ignored, so a preference file
can serve as a query set.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.data import iter_rows
from alignkit.data.formats import parse_prompt
from alignkit.data.prompts import as_prompt, has_chat_template
from alignkit.data.records import Prompt
from alignkit.data.tokenize import tokenize_prompts
from alignkit.errors import AlignkitError, DataError


@dataclass(frozen=True)
class Query:
    """One query x: the prompt the policy is trained on (never holds the principle)."""

    prompt: Prompt
    category: str = ""
    source: str = ""


@dataclass
class QuerySet:
    """The queries kept, and how many the length filter dropped."""

    queries: list[Query]
    total: int
    dropped: int

    def describe(self, max_prompt_tokens: int) -> str:
        text = f"{len(self.queries)}/{self.total} queries kept"
        if self.dropped:
            text += f"; {self.dropped} dropped as longer than {max_prompt_tokens} tokens"
        return text


def parse_query(row: Any, where: str, chat: bool) -> Query:
    """A validated Query from one record; plain-text prompts become chat turns when `chat`."""
    if not isinstance(row, dict) or "prompt" not in row:
        raise DataError(where, "a query record needs a 'prompt' field", '{"prompt": "..."}')
    value = row["prompt"]
    if isinstance(value, str) and not value.strip():
        raise DataError(where, "the prompt is empty", "remove the record")
    prompt = as_prompt(parse_prompt(value, where), chat)
    category = row.get("category", "")
    return Query(prompt, category if isinstance(category, str) else str(category), where)


def read_queries(path: str, chat: bool) -> list[Query]:
    """Every query of `path` (jsonl/json/parquet/save_to_disk folder), validated."""
    queries = [parse_query(row, where, chat) for where, row in iter_rows(path)]
    if not queries:
        raise AlignkitError(f"{path} holds no queries")
    return queries


def drop_long(queries: Sequence[Query], tokenizer, max_prompt_tokens: int) -> QuerySet:
    """Drop queries whose rendered prompt exceeds `max_prompt_tokens` (0 = keep all)."""
    if max_prompt_tokens <= 0:
        return QuerySet(list(queries), len(queries), 0)
    lengths = [len(ids) for ids in tokenize_prompts([q.prompt for q in queries], tokenizer)]
    kept = [q for q, n in zip(queries, lengths, strict=True) if n <= max_prompt_tokens]
    return QuerySet(kept, len(queries), len(queries) - len(kept))


def load_queries(path: str, tokenizer, chat: bool, max_prompt_tokens: int) -> QuerySet:
    """Read, validate and length-filter a query file; an error if nothing is left."""
    chat = chat and has_chat_template(tokenizer)
    found = drop_long(read_queries(path, chat), tokenizer, max_prompt_tokens)
    if not found.queries:
        raise AlignkitError(f"{path}: no query is left; {found.describe(max_prompt_tokens)}")
    return found


def iteration_indices(n_queries: int, per_iteration: int, seed: int, iteration: int) -> list[int]:
    """The query indices of one iteration: consecutive slices of seeded permutations.

    Pass p over the query set is a permutation drawn from (seed, p), so the schedule is a pure
    function of its arguments: a resumed run (and every process) recomputes the same queries.
    An iteration that crosses the end of a pass continues into the next permutation.
    """
    start = iteration * per_iteration
    out: list[int] = []
    while len(out) < per_iteration:
        pass_no, offset = divmod(start + len(out), n_queries)
        order = list(range(n_queries))
        random.Random(seed * 1_000_003 + pass_no).shuffle(order)
        out.extend(order[offset : offset + per_iteration - len(out)])
    return out
