"""`alignkit.data.inspect`: the statistics of `data inspect`, by hand."""

from __future__ import annotations

import pytest
from conftest import msg

from alignkit.data import (
    LoadSummary,
    Multi,
    Pair,
    Point,
    format_report,
    inspect_records,
)

# ---------------------------------------------------------------- inspect


class WordTokenizer:
    """One token per whitespace-separated word; no chat template."""

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        return {"input_ids": [text.split() for text in texts]}


def test_inspect_statistics_by_hand() -> None:
    records = [
        Pair("abcd", "xy", "xyz", "f:1"),  # prompt 4 chars; responses 2, 3
        Point("abcd", "xy", 1.0, True, True, "f:2"),  # duplicate of (abcd, xy)
        Point("ef", "one two three", 2.5, False, False, "f:3"),  # response 13
        Point("ef", "ok", 0.0, True, False, "f:4"),  # response 2
        Multi((msg("user", "hello"),), ("a", "bb"), (1.0, 3.5), "f:5"),  # prompt 5; 1, 2
    ]
    summary = LoadSummary(files=["f"], counts={"trl-pair": 1, "point": 3, "multi": 1})
    stats = inspect_records(records, summary, tokenizer=WordTokenizer())
    assert stats["records"] == 5
    assert stats["kinds"] == {"pair": 1, "point": 3, "multi": 1}
    assert stats["prompts"] == 3
    # prompt chars: 4, 4, 2, 2, 5 -> mean 3.4, median 4, p95 = 5th smallest = 5
    assert stats["prompt_chars"] == {"mean": pytest.approx(3.4), "median": 4, "p95": 5, "max": 5}
    # response chars: 2, 3, 2, 13, 2, 1, 2 -> sorted 1 2 2 2 2 3 13
    assert stats["response_chars"] == {
        "mean": pytest.approx(25 / 7),
        "median": 2,
        "p95": 13,
        "max": 13,
    }
    assert stats["labels"] == {
        "binary": {"positive": 1, "negative": 1},
        "continuous": {"count": 1, "min": 2.5, "mean": 2.5, "max": 2.5},
        "high_quality": 1,
    }
    assert stats["multi"] == {
        "records": 1,
        "responses_per_prompt": {"min": 2, "mean": 2.0, "max": 2},
    }
    assert stats["duplicates"] == 1
    # response tokens: 1, 1, 1, 3, 1, 1, 1
    assert stats["response_tokens"] == {
        "mean": pytest.approx(9 / 7),
        "median": 1,
        "p95": 3,
        "max": 3,
    }
    assert stats["prompt_tokens"]["max"] == 1
    report = format_report(stats)
    assert "5 valid records in 1 file(s): f" in report
    assert "binary labels:   1 positive / 1 negative" in report
    assert "duplicates:      1" in report
    assert "response tokens:" in report


class ChatTokenizer(WordTokenizer):
    chat_template = "set"

    def apply_chat_template(
        self, messages: list, tokenize: bool, add_generation_prompt: bool
    ) -> str:
        assert not tokenize and add_generation_prompt
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"


def test_inspect_chat_prompt_tokens_use_the_chat_template() -> None:
    records = [Point((msg("system", "be nice"), msg("user", "hi")), "ok", 1.0, True, True, "f:1")]
    stats = inspect_records(records, LoadSummary(files=["f"]), tokenizer=ChatTokenizer())
    assert stats["prompt_chars"]["max"] == 9  # "be nice" + "hi"
    assert stats["prompt_tokens"]["max"] == 6  # <system> be nice <user> hi <assistant>


class LongestSeen(WordTokenizer):
    """`WordTokenizer`, recording the longest text it was given."""

    longest = 0

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        self.longest = max([self.longest, *(len(text) for text in texts)])
        return super().__call__(texts, add_special_tokens)


def test_a_huge_text_is_counted_in_pieces_of_bounded_size() -> None:
    """C1: a 3 MB answer reaches the tokenizer in pieces of at most 2^18 characters, cut at
    white space (so no word is split: the count is exact here)."""
    huge = "alpha beta\ngamma\t" * 180_000  # 3,060,000 characters, 540,000 words
    tokenizer = LongestSeen()
    stats = inspect_records([Point("hi there", huge, 1.0)], LoadSummary(files=["f"]), tokenizer)
    assert 0 < tokenizer.longest <= 1 << 18
    assert stats["response_tokens"]["max"] == 540_000
    assert stats["prompt_tokens"]["max"] == 2
