"""Pairwise win rates by an LLM judge (`alignkit judge`), the PLE protocol.

Each prompt is judged twice, the two responses shown in both orders: A wins when preferred
in both orders, ties when preferred once, loses when never. A verdict that names neither
answer is counted as unparseable (the prompt's outcome is then "unparseable"), never fatal.

The judges (a local causal LM, any OpenAI-compatible endpoint, a function) live in
`alignkit.evaluation.judges`. Answers are cached on disk (jsonl, keyed by a hash of judge + prompt + answers in order),
so an interrupted run resumes without asking again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignkit.data.prompts import prompt_json, prompt_key
from alignkit.data.records import Prompt
from alignkit.errors import AlignkitError, DataError
from alignkit.evaluation.judges import Judge, Question, QuestionRejected
from alignkit.io import iter_jsonl

log = logging.getLogger(__name__)

Verdict = Literal["A", "B"]
Outcome = Literal["win", "tie", "loss", "unparseable"]


# ------------------------------------------------------------------ generations files


@dataclass(frozen=True)
class Item:
    """One prompt with the responses of system A and system B."""

    prompt: Prompt
    a: str
    b: str


def _prompt(value: Any) -> Prompt | None:
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        return tuple({"role": m["role"], "content": m["content"]} for m in value)
    return None


def load_generations(path: str) -> list[tuple[Prompt, str]]:
    """`(prompt, response)` of each line of a jsonl file `{"prompt": ..., "response": ...}`."""
    rows = []
    try:
        for number, row in iter_jsonl(path):
            prompt = _prompt(row.get("prompt")) if isinstance(row, dict) else None
            if prompt is None or not isinstance(row.get("response"), str):
                raise DataError(
                    f"{path}:{number}",
                    'expected {"prompt": text or chat messages, "response": text}',
                    "the format `alignkit eval` writes",
                )
            rows.append((prompt, row["response"]))
    except DataError:
        raise
    except AlignkitError as exc:  # the file cannot be read
        reason = getattr(exc.__cause__, "strerror", None) or exc.__cause__ or exc
        raise AlignkitError(f"cannot read generations file {path}: {reason}") from exc
    if not rows:
        raise AlignkitError(f"generations file {path} has no records")
    return rows


def _mismatch(only: list[str], name: str) -> str:
    shown = "; ".join(repr(p[:80]) for p in only[:5])
    more = f" (and {len(only) - 5} more)" if len(only) > 5 else ""
    return f"{len(only)} only in {name}: {shown}{more}"


def align(
    a: list[tuple[Prompt, str]], b: list[tuple[Prompt, str]], a_name: str, b_name: str
) -> list[Item]:
    """Pair the responses to each prompt (in A's order; repeated prompts pair in order)."""
    a_keys, b_keys = Counter(prompt_key(p) for p, _ in a), Counter(prompt_key(p) for p, _ in b)
    if a_keys != b_keys:
        problems = [
            _mismatch(list((a_keys - b_keys).elements()), a_name),
            _mismatch(list((b_keys - a_keys).elements()), b_name),
        ]
        raise AlignkitError(
            "the two generations files do not hold the same prompts: "
            + " | ".join(p for p in problems if not p.startswith("0 "))
        )
    queues: dict[str, list[str]] = {}
    for prompt, response in b:
        queues.setdefault(prompt_key(prompt), []).append(response)
    return [Item(prompt, response, queues[prompt_key(prompt)].pop(0)) for prompt, response in a]


_BRACKETED = re.compile(r"\[\[\s*([AB])\s*\]\]")
_LEADING = re.compile(
    r"^[\s*_`\"'#(\[]*(?:(?i:answer|response|verdict|choice|winner)\s*[:\-]?\s*)?"
    r"\(?([AB])\)?(?=$|[\s.,:;!)\]*_`\"'])(?!\s+[a-z])"
)
_STATED = re.compile(
    r"(?i:answer|response|verdict|choice|winner)\s*(?i:is)?\s*[:\-]?\s*\(?([AB])\b"
    r"|\b([AB])\s+(?i:is\s+(?:the\s+)?better|is\s+preferred|wins)"
)


def parse_verdict(text: str | None) -> Verdict | None:
    """The verdict "A" or "B" in a judge's reply, or None when it names neither or both.

    Accepted: "[[A]]", a reply that starts with the letter ("B", "(A).", "Answer: B"),
    or states it ("the better answer is A", "B is better"). A lone capital "A" followed by
    a lowercase word ("A good answer ...") is an article, not a verdict.
    """
    if not text:
        return None
    bare = text.strip(" \t\n.:*`'\"()[]").upper()
    if bare in ("A", "B"):
        return bare  # type: ignore[return-value]
    for pattern in (_BRACKETED, _LEADING, _STATED):
        found = {g for m in pattern.finditer(text.strip()) for g in m.groups() if g}
        if len(found) == 1:
            return found.pop()  # type: ignore[return-value]
        if found:
            return None
    return None


def outcome(first_order: Verdict | None, swapped_order: Verdict | None) -> Outcome:
    """A's outcome from the verdict with A shown first and the one with B shown first."""
    if first_order is None or swapped_order is None:
        return "unparseable"
    preferred = (first_order == "A") + (swapped_order == "B")
    return ("loss", "tie", "win")[preferred]  # type: ignore[return-value]


# ------------------------------------------------------------------ cache


class VerdictCache:
    """Judge replies on disk, one JSON object `{key, answer}` a line, appended as they come."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.answers: dict[str, str] = {}
        self.skipped = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        # not `io.iter_jsonl`: a line cut by an interruption stays in the middle of the file
        # once `add` appends after it, and is skipped wherever it is
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                self.answers[row["key"]] = row["answer"]
            except (ValueError, KeyError, TypeError):
                self.skipped += 1  # e.g. the last line of an interrupted run

    def add(self, entries: dict[str, str]) -> None:
        """Append `key -> answer` entries (flushed to disk at once)."""
        self.answers.update(entries)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"key": k, "answer": v}) + "\n" for k, v in entries.items())
        with open(self.path, "ab+") as handle:
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line cut short by an interruption
                    handle.write(b"\n")
            handle.write(lines.encode())
            handle.flush()
            os.fsync(handle.fileno())


# ------------------------------------------------------------------ running


@dataclass
class AskStats:
    asked: int = 0  # questions sent to the judge
    cached: int = 0  # answered from the cache
    rejected: int = 0  # refused by the judge (counted unparseable)


def ask_all(
    judge: Judge, questions: Sequence[Question], cache: VerdictCache | None, concurrency: int
) -> tuple[dict[str, str | None], AskStats]:
    """Every question's reply by key (None when rejected), at most `concurrency` batches at
    a time; replies are cached as each batch comes back."""
    replies: dict[str, str | None] = {}
    stats = AskStats()
    pending: dict[str, Question] = {}
    for q in questions:
        key = q.key(judge.name)
        if cache is not None and key in cache.answers:
            replies[key] = cache.answers[key]
        else:
            pending[key] = q
    stats.cached = len(replies)
    keys = list(pending)
    chunks = [keys[i : i + judge.batch_size] for i in range(0, len(keys), judge.batch_size)]
    lock = threading.Lock()

    def run(chunk: list[str]) -> None:
        try:
            answers: list[str | None] = list(judge.ask_batch([pending[k] for k in chunk]))
        except QuestionRejected as exc:
            log.warning("the judge rejected a question: %s", exc)
            answers = [None] * len(chunk)
        with lock:
            stats.asked += len(chunk)
            stats.rejected += sum(a is None for a in answers)
            replies.update(zip(chunk, answers, strict=True))
            if cache is not None:
                cache.add({k: a for k, a in zip(chunk, answers, strict=True) if a is not None})

    workers = max(1, min(concurrency, judge.max_concurrency))
    _run_bounded(run, chunks, workers)
    return replies, stats


def _run_bounded(fn: Callable[[list[str]], None], chunks: list[list[str]], workers: int) -> None:
    """`fn` over `chunks` with `workers` threads; the first error cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(fn, chunk) for chunk in chunks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def judge_pairs(
    items: Sequence[Item],
    judge: Judge,
    cache: VerdictCache | None = None,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Judge every item in both orders: counts, win rate and per-prompt verdicts."""
    asks = [(Question(it.prompt, it.a, it.b), Question(it.prompt, it.b, it.a)) for it in items]
    replies, stats = ask_all(judge, [q for pair in asks for q in pair], cache, concurrency)
    rows = []
    for item, (ab, ba) in zip(items, asks, strict=True):
        raw_ab, raw_ba = replies[ab.key(judge.name)], replies[ba.key(judge.name)]
        v_ab, v_ba = parse_verdict(raw_ab), parse_verdict(raw_ba)
        rows.append(
            {
                "prompt": prompt_json(item.prompt),
                "response_a": item.a,
                "response_b": item.b,
                "verdict_a_first": v_ab,
                "verdict_b_first": v_ba,
                "reply_a_first": raw_ab,
                "reply_b_first": raw_ba,
                "outcome": outcome(v_ab, v_ba),
            }
        )
    return _summary(judge.name, rows, stats)


def _summary(judge_name: str, rows: list[dict[str, Any]], stats: AskStats) -> dict[str, Any]:
    counts = Counter(r["outcome"] for r in rows)
    wins, ties, losses = counts["win"], counts["tie"], counts["loss"]
    decided = wins + ties + losses

    def rate(x: float) -> float | None:
        return round(x / decided, 6) if decided else None

    return {
        "judge": judge_name,
        "prompts": len(rows),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "unparseable": counts["unparseable"],
        "win_rate": rate(wins),
        "tie_rate": rate(ties),
        "loss_rate": rate(losses),
        "win_rate_ties_half": rate(wins + 0.5 * ties),
        "questions": {"asked": stats.asked, "cached": stats.cached, "rejected": stats.rejected},
        "per_prompt": rows,
    }


def format_summary(report: dict[str, Any]) -> str:
    """A few lines for people: counts, win rate, cache use."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    decided = report["wins"] + report["ties"] + report["losses"]
    q = report["questions"]
    return "\n".join(
        [
            f"judge {report['judge']}: {report['prompts']} prompts, each asked in both orders",
            f"  A wins {report['wins']}, ties {report['ties']}, loses {report['losses']}, "
            f"unparseable {report['unparseable']}",
            f"  win rate of A: {pct(report['win_rate'])} of {decided} decided prompts "
            f"(ties counted half: {pct(report['win_rate_ties_half'])})",
            f"  questions: {q['asked']} asked, {q['cached']} from the cache, "
            f"{q['rejected']} rejected by the judge",
        ]
    )
