"""Pairwise win rates by an LLM judge (`alignkit judge`), the PLE protocol by default.

Each prompt is judged twice, the two responses shown in both orders (`orders="both"`): each
order gives A 1 point when it prefers A, 1/2 for an explicit tie, 0 when it prefers B; A
wins with more than 1 point of 2, ties with 1, loses with less. Without explicit ties that
is PLE's rule: A wins when preferred in both orders, ties when preferred once, loses when
never. `orders="one"` asks once, A shown first (ULMA and REAL): the verdict is the outcome.
A reply that names neither answer (nor a tie) is counted as unparseable (the prompt's
outcome is then "unparseable"), never fatal, and apart from ties.

Several criteria (ULMA: helpfulness and harmlessness) are asked as separate questions and
counted separately. B can be the dataset's chosen answer to the same prompt
(`against_chosen`), and `label_agreement` asks which of a pair's chosen and rejected answers
is better and reports how often the judge agrees with the dataset's label (REAL, Fig. 3).

The judges (a local causal LM, any OpenAI-compatible endpoint, a function) and the question
templates live in `alignkit.evaluation.judges`. Answers are cached on disk (jsonl, keyed by a
hash of the judge and its template + prompt + answers in order + criterion), so an
interrupted run resumes without asking again.
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

from alignkit.data.formats import parse_prompt
from alignkit.data.prompts import prompt_json, prompt_key
from alignkit.data.records import Prompt
from alignkit.errors import AlignkitError, DataError
from alignkit.evaluation.judges import Criterion, Judge, Question, QuestionRejected
from alignkit.io import iter_jsonl, load_json

log = logging.getLogger(__name__)

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss", "unparseable"]
Orders = Literal["both", "one"]


# ------------------------------------------------------------------ generations files


@dataclass(frozen=True)
class Item:
    """One prompt with the responses of system A and system B."""

    prompt: Prompt
    a: str
    b: str


def _prompt(value: Any) -> Prompt | None:
    """The prompt of a generations row, or None when it is not a valid prompt."""
    try:
        return parse_prompt(value, "")
    except DataError:
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


_BRACKETED = re.compile(r"\[\[\s*([ABC]|(?i:tie))\s*\]\]")
_SYMBOLS = re.compile(r"(?<![\d.])1\s*(>=|<=|[<>=≥≤])\s*2(?![\d.])")
_LEADING = re.compile(
    r"^[\s*_`\"'#(\[]*(?:(?i:answer|response|verdict|choice|winner)\s*[:\-]?\s*)?"
    r"\(?([AB])\)?(?=$|[\s.,:;!)\]*_`\"'])(?!\s+[a-z])"
)
_STATED = re.compile(
    r"(?i:answer|response|verdict|choice|winner)\s*(?i:is)?\s*[:\-]?\s*\(?([AB])\b"
    r"|\b([AB])\s+(?i:is\s+(?:the\s+)?better|is\s+preferred|wins)"
)
_TIE = re.compile(
    r"(?i:^[\s*_`\"'#(\[]*(?:(?:answer|verdict|judg(?:e)?ment|result|choice)\s*[:\-]?\s*)?"
    r"(?:it(?:'|’)?s\s+|it\s+is\s+)?(?:a\s+)?(tie|draw)\b"
    r"|\b(?:equally\s+good|equally\s+(?:helpful|harmless|bad)|(?:it(?:'|’)?s|is)\s+a\s+tie)\b)"
)
_SYMBOL_VERDICT: dict[str, Verdict] = {
    ">": "A",
    ">=": "A",
    "≥": "A",
    "<": "B",
    "<=": "B",
    "≤": "B",
    "=": "tie",
}


def _found(pattern: re.Pattern[str], text: str) -> set[str]:
    return {g for m in pattern.finditer(text) for g in m.groups() if g}


def parse_verdict(text: str | None) -> Verdict | None:
    """The verdict "A", "B" or "tie" in a judge's reply, or None when it names none or
    several.

    Accepted: "[[A]]" / "[[B]]" / "[[C]]" or "[[tie]]" (MT-bench's tie), ULMA's "1>2" /
    "1=2" / "1<2" (also with >= <= and the signs ≥ ≤: answer 1 is A), a reply that starts
    with the letter ("B", "(A).", "Answer: B") or states it ("the better answer is A", "B is
    better"), and a tie said in words ("tie", "Verdict: tie", "it's a tie", "equally
    good"). A lone capital "A" followed by a lowercase word ("A good answer ...") is an
    article, not a verdict.
    """
    if not text:
        return None
    text = text.strip()
    bare = text.strip(" \t\n.:*`'\"()[]")
    if bare.upper() in ("A", "B"):
        return bare.upper()  # type: ignore[return-value]
    if bare.lower() in ("tie", "draw"):
        return "tie"
    bracketed = {"tie" if g.upper() in ("C", "TIE") else g for g in _found(_BRACKETED, text)}
    symbols = {_SYMBOL_VERDICT[g] for g in _found(_SYMBOLS, text)}
    ties = {"tie"} if _TIE.search(text) else set()
    for found in (bracketed, symbols, _found(_LEADING, text), _found(_STATED, text), ties):
        if len(found) == 1:
            return found.pop()  # type: ignore[return-value]
        if found:
            return None
    return None


# points for A of one order's verdict: A shown first, then B shown first
_POINTS_A_FIRST = {"A": 1.0, "tie": 0.5, "B": 0.0}
_POINTS_B_FIRST = {"B": 1.0, "tie": 0.5, "A": 0.0}


def outcome(first_order: Verdict | None, swapped_order: Verdict | None) -> Outcome:
    """A's outcome from the verdict with A shown first and the one with B shown first:
    1 point per order that prefers A, 1/2 per explicit tie; win > 1 point, tie = 1,
    loss < 1 (without explicit ties: win = preferred in both orders, tie = once)."""
    if first_order is None or swapped_order is None:
        return "unparseable"
    points = _POINTS_A_FIRST[first_order] + _POINTS_B_FIRST[swapped_order]
    return "win" if points > 1 else "loss" if points < 1 else "tie"


def outcome_one_order(verdict: Verdict | None) -> Outcome:
    """A's outcome from one verdict, A shown first (ULMA and REAL ask once)."""
    if verdict is None:
        return "unparseable"
    return {"A": "win", "tie": "tie", "B": "loss"}[verdict]  # type: ignore[return-value]


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
        text = self.path.read_text(encoding="utf-8")
        for line in text.removesuffix("\n").split("\n") if text else []:  # "\n" only, as io
            try:
                row = load_json(line)
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
    *,
    criteria: Sequence[Criterion] = (),
    orders: Orders = "both",
) -> dict[str, Any]:
    """Judge every item (in both orders, or once with A first): counts, win rate and
    per-prompt verdicts. With `criteria`, every criterion is a question of its own, asked in
    the same pass, and the report holds one summary per criterion under "criteria"."""
    if orders not in ("both", "one"):
        raise AlignkitError(f"orders must be 'both' or 'one', got {orders!r}")
    names = [c.name for c in criteria]
    if len(set(names)) != len(names):
        raise AlignkitError(f"--criteria names repeat: {', '.join(names)}")
    asks: dict[str | None, list[tuple[Question, Question | None]]] = {}
    for criterion in criteria or [None]:
        asks[criterion.name if criterion else None] = [
            (
                Question(it.prompt, it.a, it.b, criterion),
                Question(it.prompt, it.b, it.a, criterion) if orders == "both" else None,
            )
            for it in items
        ]
    questions = [q for pairs in asks.values() for pair in pairs for q in pair if q is not None]
    replies, stats = ask_all(judge, questions, cache, concurrency)
    summaries = {
        name: _summary(_rows(items, pairs, replies, judge.name), orders)
        for name, pairs in asks.items()
    }
    head = {"judge": judge.name, "prompts": len(items), "orders": orders}
    ask_counts = {"asked": stats.asked, "cached": stats.cached, "rejected": stats.rejected}
    if not criteria:
        return {**head, **summaries[None], "questions": ask_counts}
    return {**head, "criteria": summaries, "questions": ask_counts}


def _rows(
    items: Sequence[Item],
    pairs: list[tuple[Question, Question | None]],
    replies: dict[str, str | None],
    judge_name: str,
) -> list[dict[str, Any]]:
    rows = []
    for item, (ab, ba) in zip(items, pairs, strict=True):
        raw_ab = replies[ab.key(judge_name)]
        v_ab = parse_verdict(raw_ab)
        row = {
            "prompt": prompt_json(item.prompt),
            "response_a": item.a,
            "response_b": item.b,
            "verdict_a_first": v_ab,
        }
        if ba is None:
            row.update(reply_a_first=raw_ab, outcome=outcome_one_order(v_ab))
        else:
            raw_ba = replies[ba.key(judge_name)]
            v_ba = parse_verdict(raw_ba)
            row.update(
                verdict_b_first=v_ba,
                reply_a_first=raw_ab,
                reply_b_first=raw_ba,
                outcome=outcome(v_ab, v_ba),
            )
        rows.append(row)
    return rows


def _summary(rows: list[dict[str, Any]], orders: Orders) -> dict[str, Any]:
    counts = Counter(r["outcome"] for r in rows)
    wins, ties, losses = counts["win"], counts["tie"], counts["loss"]
    decided = wins + ties + losses
    verdict_keys = (
        ("verdict_a_first",) if orders == "one" else ("verdict_a_first", "verdict_b_first")
    )

    def rate(x: float) -> float | None:
        return round(x / decided, 6) if decided else None

    return {
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "unparseable": counts["unparseable"],
        "tie_replies": sum(r[k] == "tie" for r in rows for k in verdict_keys),
        "win_rate": rate(wins),
        "tie_rate": rate(ties),
        "loss_rate": rate(losses),
        "win_rate_ties_half": rate(wins + 0.5 * ties),
        "per_prompt": rows,
    }


def format_summary(report: dict[str, Any]) -> str:
    """A few lines for people: counts, win rate (per criterion), cache use."""
    both = report.get("orders", "both") == "both"
    asked = "each asked in both orders" if both else "each asked once, A shown first"
    lines = [f"judge {report['judge']}: {report['prompts']} prompts, {asked}"]
    if "criteria" in report:
        for name, summary in report["criteria"].items():
            lines += _outcome_lines(summary, f"[{name}] ")
    else:
        lines += _outcome_lines(report, "")
    q = report["questions"]
    lines.append(
        f"  questions: {q['asked']} asked, {q['cached']} from the cache, "
        f"{q['rejected']} rejected by the judge"
    )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _outcome_lines(summary: dict[str, Any], label: str) -> list[str]:
    decided = summary["wins"] + summary["ties"] + summary["losses"]
    return [
        f"  {label}A wins {summary['wins']}, ties {summary['ties']}, loses "
        f"{summary['losses']}, unparseable {summary['unparseable']} "
        f"(explicit tie replies: {summary['tie_replies']})",
        f"  {label}win rate of A: {_pct(summary['win_rate'])} of {decided} decided prompts "
        f"(ties counted half: {_pct(summary['win_rate_ties_half'])})",
    ]


# ------------------------------------------------------------------ B from a dataset


def against_chosen(
    a: list[tuple[Prompt, str]], records: Sequence[Any], a_name: str, data_name: str
) -> list[Item]:
    """Items whose B is the dataset's chosen answer to A's prompt (ULMA judges the model
    against the dataset): a pair's chosen response, a ranked list's best, a high-quality
    point's completion; the first one in data order when a prompt repeats."""
    from alignkit.evaluation.runner import reference_response

    chosen: dict[str, str] = {}
    for record in records:
        reference = reference_response(record)
        if reference is not None:
            chosen.setdefault(prompt_key(record.prompt), reference)
    missing = [prompt_key(p) for p, _ in a if prompt_key(p) not in chosen]
    if missing:
        shown = "; ".join(repr(p[:80]) for p in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise AlignkitError(
            f"--against-chosen {data_name}: no chosen answer for {len(missing)} prompt(s) of "
            f"{a_name}: {shown}{more} (give the data the generations were made from)"
        )
    return [Item(prompt, response, chosen[prompt_key(prompt)]) for prompt, response in a]


# ------------------------------------------------------------------ label agreement


def label_agreement(
    subsets: dict[str, Sequence[Any]],
    judge: Judge,
    cache: VerdictCache | None = None,
    concurrency: int = 4,
    *,
    criteria: Sequence[Criterion] = (),
) -> dict[str, Any]:
    """REAL's label check: for the pairs of each subset, ask the judge which of chosen and
    rejected is better, in both orders (chosen shown first, then rejected shown first), and
    report how often it agrees with the dataset's label.

    Per subset (and criterion): agreement_chosen_first = share of the parsed verdicts with
    chosen shown first that prefer chosen (a tie reply does not agree), agreement_rejected_first
    the same with rejected shown first, agreement_mean their mean (what one order would
    give, with the position bias averaged out); agree_both / agree_half / agree_none = pairs
    whose label the judge confirms with 2 / 1 / 0 points of 2 (`outcome`: 1 point per order
    that prefers chosen, 1/2 per tie reply), as win / tie / loss.
    """
    from alignkit.data.records import Pair

    report: dict[str, Any] = {"judge": judge.name, "subsets": {}}
    asked = {"asked": 0, "cached": 0, "rejected": 0}
    for name, records in subsets.items():
        pairs = [r for r in records if isinstance(r, Pair)]
        items = [Item(p.prompt, p.chosen, p.rejected) for p in pairs]
        result = judge_pairs(items, judge, cache, concurrency, criteria=criteria)
        for key in asked:
            asked[key] += result["questions"][key]
        if criteria:
            report["subsets"][name] = {
                "pairs": len(items),
                "criteria": {c: _agreement(s) for c, s in result["criteria"].items()},
            }
        else:
            report["subsets"][name] = {"pairs": len(items), **_agreement(result)}
    report["questions"] = asked
    return report


def _agreement(summary: dict[str, Any]) -> dict[str, Any]:
    rows = summary["per_prompt"]

    def share(key: str, agree: str) -> float | None:
        parsed = [r[key] for r in rows if r[key] is not None]
        return sum(v == agree for v in parsed) / len(parsed) if parsed else None

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    first, swapped = share("verdict_a_first", "A"), share("verdict_b_first", "B")
    mean = None if first is None or swapped is None else (first + swapped) / 2
    out = {
        "agreement_chosen_first": rounded(first),
        "agreement_rejected_first": rounded(swapped),
        "agreement_mean": rounded(mean),
        "agree_both": summary["wins"],
        "agree_half": summary["ties"],
        "agree_none": summary["losses"],
        "unparseable": summary["unparseable"],
        "tie_replies": summary["tie_replies"],
        "agree_both_rate": summary["win_rate"],
        "per_pair": [
            {
                "prompt": r["prompt"],
                "chosen": r["response_a"],
                "rejected": r["response_b"],
                "verdict_chosen_first": r["verdict_a_first"],
                "verdict_rejected_first": r["verdict_b_first"],
                "reply_chosen_first": r["reply_a_first"],
                "reply_rejected_first": r["reply_b_first"],
                "agrees": {"win": "both", "tie": "half", "loss": "none"}.get(
                    r["outcome"], "unparseable"
                ),
            }
            for r in rows
        ],
    }
    return out


def format_agreement(report: dict[str, Any]) -> str:
    """A few lines for people: the agreement of each subset (and criterion)."""
    lines = [f"judge {report['judge']}: agreement with the dataset labels, both orders"]
    for name, subset in report["subsets"].items():
        parts = subset.get("criteria") or {"": subset}
        for criterion, a in parts.items():
            label = f"{name} [{criterion}]" if criterion else name
            lines.append(
                f"  {label}: {subset['pairs']} pairs, agreement {_pct(a['agreement_mean'])} "
                f"(chosen shown first {_pct(a['agreement_chosen_first'])}, rejected shown "
                f"first {_pct(a['agreement_rejected_first'])}); label confirmed by both orders "
                f"{a['agree_both']}, half {a['agree_half']}, none {a['agree_none']}, "
                f"unparseable {a['unparseable']}"
            )
    q = report["questions"]
    lines.append(
        f"  questions: {q['asked']} asked, {q['cached']} from the cache, "
        f"{q['rejected']} rejected by the judge"
    )
    return "\n".join(lines)
