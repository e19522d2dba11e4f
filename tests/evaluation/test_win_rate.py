"""Win rates (`alignkit.evaluation.win_rate`): verdict parsing, win/tie/loss by hand with
scripted judges, explicit ties, criteria, one order, concurrency, the verdict cache and the
generations files."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import by_criterion, kind_or_tie, prefers_kind, write_gens

from alignkit.errors import AlignkitError, DataError
from alignkit.evaluation.judges import (
    FunctionJudge,
    Judge,
    JudgeUnavailable,
    Question,
    QuestionRejected,
    parse_criterion,
)
from alignkit.evaluation.win_rate import (
    Item,
    VerdictCache,
    align,
    format_summary,
    judge_pairs,
    load_generations,
    outcome,
    outcome_one_order,
    parse_verdict,
)

# ------------------------------------------------------------------ judge: parsing, outcomes


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A", "A"),
        ("b", "B"),
        (" B.", "B"),
        ("[[A]]", "A"),
        ("My verdict: [[B]]", "B"),
        ("(A)", "A"),
        ("**B**", "B"),
        ("Answer: A", "A"),
        ("B\n\nExplanation: it is kinder.", "B"),
        ("The better answer is B.", "B"),
        ("A is better because it is safe.", "A"),
        ("Answer B is better.", "B"),
        ("A good answer would explain more", None),
        ("[[A]] or [[B]]", None),
        ("Both are fine", None),
        ("", None),
        (None, None),
        ("\u00bf\u00bf cat dog", None),
        # explicit ties, counted apart from unparseable replies
        ("tie", "tie"),
        ("Tie.", "tie"),
        ("[[C]]", "tie"),  # MT-bench's tie
        ("[[tie]]", "tie"),
        ("Verdict: tie", "tie"),
        ("It's a tie: both refuse politely.", "tie"),
        ("Both answers are equally good.", "tie"),
        ("A is better, it is not close to a tie", "A"),
        ("[[A]] or [[C]]", None),
        # ULMA appendix B: 1>2 (text 1 = answer A better), 1=2, 1<2
        ("1>2", "A"),
        ("1 < 2", "B"),
        ("1=2", "tie"),
        ("1\u22652", "A"),
        ("1<=2", "B"),
        ("[Judgment Result - Harmless]: 1<2", "B"),
        ("1>2 and 1<2", None),
        ("11>2", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_outcome_table():
    assert outcome("A", "B") == "win"  # A preferred in both orders
    assert outcome("A", "A") == "tie" and outcome("B", "B") == "tie"  # position bias
    assert outcome("B", "A") == "loss"
    assert outcome(None, "B") == "unparseable" and outcome("A", None) == "unparseable"


def test_outcome_with_explicit_ties():
    """Points for A: A first says A -> 1, tie -> 1/2, B -> 0; B first says B -> 1, tie ->
    1/2, A -> 0. Win > 1, tie = 1, loss < 1. Fails when a tie reply is taken as unparseable
    or as a preference for the answer shown first."""
    assert outcome("A", "tie") == "win" and outcome("tie", "B") == "win"  # 1.5 points
    assert outcome("tie", "tie") == "tie"  # 1 point
    assert outcome("B", "tie") == "loss" and outcome("tie", "A") == "loss"  # 0.5 points
    assert outcome("tie", None) == "unparseable"
    assert [outcome_one_order(v) for v in ("A", "tie", "B", None)] == [
        "win",
        "tie",
        "loss",
        "unparseable",
    ]


ITEMS = [
    Item("p1", "a kind reply", "a rude reply"),  # win
    Item("p2", "rude", "kind"),  # loss
    Item("p3", "meh", "also meh"),  # tie (always "A")
    Item("p4 ???", "kind", "rude"),  # unparseable
    Item("p5", "kind words", "rude words"),  # win
]


def test_scripted_win_tie_loss_by_hand():
    report = judge_pairs(ITEMS, FunctionJudge(prefers_kind), cache=None, concurrency=2)
    assert (report["wins"], report["ties"], report["losses"], report["unparseable"]) == (2, 1, 1, 1)
    assert report["win_rate"] == pytest.approx(2 / 4)
    assert report["tie_rate"] == pytest.approx(1 / 4) and report["loss_rate"] == pytest.approx(
        1 / 4
    )
    assert report["win_rate_ties_half"] == pytest.approx(2.5 / 4)
    rows = {r["prompt"]: r for r in report["per_prompt"]}
    assert [rows[p]["outcome"] for p in ("p1", "p2", "p3", "p4 ???", "p5")] == [
        "win",
        "loss",
        "tie",
        "unparseable",
        "win",
    ]
    assert rows["p1"]["verdict_a_first"] == "A" and rows["p1"]["verdict_b_first"] == "B"
    assert rows["p4 ???"]["reply_a_first"] == "I cannot decide"
    assert report["questions"] == {"asked": 10, "cached": 0, "rejected": 0}


class BatchJudge(Judge):
    """A fake judge class answering in batches, recording what it was asked."""

    name = "batch-judge"
    batch_size = 3

    def __init__(self, reply: str = "A") -> None:
        self.reply = reply
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def ask_batch(self, questions):
        with self.lock:
            self.batches.append(len(questions))
        return [self.reply] * len(questions)


def test_explicit_ties_are_counted_apart_from_unparseable():
    items = [
        Item("p1", "kind", "rude"),  # A, then B first: B (= A preferred) -> win
        Item("p2 same", "x", "y"),  # tie, tie -> tie (2 tie replies)
        Item("p3 ???", "kind", "rude"),  # unparseable
        Item("p4", "rude", "kind"),  # loss
    ]
    report = judge_pairs(items, FunctionJudge(kind_or_tie))
    counts = [report[k] for k in ("wins", "ties", "losses", "unparseable", "tie_replies")]
    assert counts == [1, 1, 1, 1, 2]
    assert report["win_rate"] == pytest.approx(1 / 3)
    rows = {r["prompt"]: r for r in report["per_prompt"]}
    assert rows["p2 same"]["verdict_a_first"] == rows["p2 same"]["verdict_b_first"] == "tie"
    assert "explicit tie replies: 2" in format_summary(report)


def test_criteria_are_judged_separately_in_one_pass(tmp_path):
    """One verdict per criterion per pair; win rates per criterion, counted by hand.
    Fails when the criterion does not reach the judge (both criteria alike) or is left out
    of the cache key (the second criterion is answered from the first one's cache)."""
    items = [
        Item("p1", "kind and very detailed", "rude"),  # harmless: win; helpful: win
        Item("p2", "rude but detailed", "kind"),  # harmless: loss; helpful: win
        Item("p3", "kind", "rude"),  # harmless: win; helpful: 4 vs 4 chars, tie
    ]
    criteria = [parse_criterion("helpfulness"), parse_criterion("harmlessness")]
    cache = VerdictCache(tmp_path / "cache.jsonl")
    report = judge_pairs(items, FunctionJudge(by_criterion), cache, criteria=criteria)
    helpful, harmless = report["criteria"]["helpfulness"], report["criteria"]["harmlessness"]
    assert [helpful[k] for k in ("wins", "ties", "losses", "tie_replies")] == [2, 1, 0, 2]
    assert [harmless[k] for k in ("wins", "ties", "losses", "tie_replies")] == [2, 0, 1, 0]
    assert helpful["win_rate_ties_half"] == pytest.approx(2.5 / 3)
    assert harmless["win_rate"] == pytest.approx(2 / 3)
    assert report["questions"] == {"asked": 12, "cached": 0, "rejected": 0}  # 3 x 2 x 2
    again = judge_pairs(items, FunctionJudge(by_criterion), cache, criteria=criteria)
    assert again["questions"] == {"asked": 0, "cached": 12, "rejected": 0}
    assert again["criteria"] == report["criteria"]
    text = format_summary(report)
    assert "[helpfulness] A wins 2, ties 1" in text and "[harmlessness] A wins 2" in text


def test_one_order_asks_once_with_a_first():
    """ULMA / REAL ask once: the verdict is the outcome, so a judge biased towards the
    answer shown first makes A win where both orders would call it a tie."""
    items = [Item("p1", "meh", "also meh"), Item("p2", "rude", "kind")]
    judge = CountingJudge()
    report = judge_pairs(items, judge, orders="one")
    assert judge.asked == 2 and report["orders"] == "one"
    assert (report["wins"], report["ties"], report["losses"]) == (1, 0, 1)
    assert "verdict_b_first" not in report["per_prompt"][0]
    both = judge_pairs(items, CountingJudge())
    assert (both["wins"], both["ties"], both["losses"]) == (0, 1, 1)


def test_judge_class_batches_and_all_ties():
    judge = BatchJudge("[[A]]")
    report = judge_pairs(ITEMS, judge, concurrency=1)
    assert sorted(judge.batches) == [1, 3, 3, 3]  # 10 questions in batches of 3
    assert report["ties"] == 5 and report["wins"] == report["losses"] == 0


def test_no_decided_prompts_gives_null_rates():
    report = judge_pairs(ITEMS[:2], FunctionJudge(lambda *a: "no idea"))
    assert report["unparseable"] == 2 and report["win_rate"] is None


def test_rejected_questions_are_counted_not_cached(tmp_path):
    def picky(prompt, first, second):
        if prompt == "p2":
            raise QuestionRejected("HTTP 400: too long")
        return prefers_kind(prompt, first, second)

    cache = VerdictCache(tmp_path / "cache.jsonl")
    report = judge_pairs(ITEMS[:2], FunctionJudge(picky), cache)
    assert report["unparseable"] == 1 and report["wins"] == 1
    assert report["questions"]["rejected"] == 2
    assert len(VerdictCache(tmp_path / "cache.jsonl").answers) == 2


def test_concurrency_limit():
    state = {"active": 0, "peak": 0}
    lock = threading.Lock()

    def slow(prompt, first, second):
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        time.sleep(0.05)
        with lock:
            state["active"] -= 1
        return "A"

    items = [Item(f"q{i}", "x", "y") for i in range(8)]
    judge_pairs(items, FunctionJudge(slow), concurrency=3)
    assert 2 <= state["peak"] <= 3
    state["peak"] = 0
    judge_pairs(items, FunctionJudge(slow), concurrency=1)
    assert state["peak"] == 1


# ------------------------------------------------------------------ judge: cache


class CountingJudge(Judge):
    """Scripted (prefers_kind); counts questions; fails after `fail_after` of them."""

    name = "counting"

    def __init__(self, fail_after: int | None = None) -> None:
        self.asked = 0
        self.fail_after = fail_after

    def ask(self, question):
        if self.fail_after is not None and self.asked >= self.fail_after:
            raise JudgeUnavailable("judge went away")
        self.asked += 1
        return prefers_kind(question.prompt, question.first, question.second)


def test_cache_resumes_an_interrupted_run(tmp_path):
    path = tmp_path / "cache.jsonl"
    with pytest.raises(JudgeUnavailable):
        judge_pairs(ITEMS, CountingJudge(fail_after=4), VerdictCache(path), concurrency=1)
    assert len(VerdictCache(path).answers) == 4
    resumed = CountingJudge()
    report = judge_pairs(ITEMS, resumed, VerdictCache(path), concurrency=1)
    assert resumed.asked == 6 and report["questions"] == {"asked": 6, "cached": 4, "rejected": 0}
    again = CountingJudge()
    report2 = judge_pairs(ITEMS, again, VerdictCache(path))
    assert again.asked == 0 and report2["questions"]["cached"] == 10
    assert report2["per_prompt"] == report["per_prompt"]


def test_cache_survives_a_cut_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = VerdictCache(path)
    cache.add({"k1": "A"})
    with open(path, "a") as handle:
        handle.write('{"key": "k2", "ans')  # interrupted mid-write
    cache = VerdictCache(path)
    assert cache.answers == {"k1": "A"} and cache.skipped == 1
    cache.add({"k3": "B"})
    assert VerdictCache(path).answers == {"k1": "A", "k3": "B"}


def test_cache_key_depends_on_judge_and_order():
    q, swapped = Question("p", "x", "y"), Question("p", "y", "x")
    assert q.key("j1") != swapped.key("j1") and q.key("j1") != q.key("j2")
    assert q.key("j1") == Question("p", "x", "y").key("j1")


# ------------------------------------------------------------------ judge: generations files


def test_align_by_prompt_in_any_order(tmp_path):
    chat = [{"role": "user", "content": "hi"}]
    a = load_generations(
        write_gens(tmp_path / "a.jsonl", [("p1", "a1"), (chat, "a2"), ("p1", "a3")])
    )
    b = load_generations(
        write_gens(tmp_path / "b.jsonl", [(chat, "b2"), ("p1", "b1"), ("p1", "b3")])
    )
    items = align(a, b, "a.jsonl", "b.jsonl")
    assert [(i.a, i.b) for i in items] == [("a1", "b1"), ("a2", "b2"), ("a3", "b3")]
    assert items[1].prompt == tuple(chat)


def test_align_names_mismatched_prompts(tmp_path):
    a = load_generations(write_gens(tmp_path / "a.jsonl", [("same", "x"), ("only in a", "y")]))
    b = load_generations(write_gens(tmp_path / "b.jsonl", [("same", "x"), ("only in b", "y")]))
    with pytest.raises(
        AlignkitError, match=r"1 only in a.jsonl: 'only in a'.*1 only in b.jsonl: 'only in b'"
    ):
        align(a, b, "a.jsonl", "b.jsonl")


def test_bad_generations_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        load_generations(str(bad))
    bad.write_text("{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: not valid JSON"):
        load_generations(str(bad))
    bad.write_text("\n")
    with pytest.raises(AlignkitError, match="no records"):
        load_generations(str(bad))
    with pytest.raises(AlignkitError, match="cannot read"):
        load_generations(str(tmp_path / "missing.jsonl"))
