"""data.formats.parse_prompt (the one prompt parser of every reader) and
data.prompts.distinct_prompts, by hand."""

from __future__ import annotations

import pytest

from alignkit.data.formats import parse_prompt
from alignkit.data.prompts import as_prompt, distinct_prompts, hh_messages
from alignkit.data.queries import parse_query
from alignkit.data.records import Pair, Point
from alignkit.errors import DataError
from alignkit.evaluation.win_rate import load_generations


def test_parse_prompt_text_and_messages():
    assert parse_prompt("hello", "f:1") == "hello"
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi", "x": 1},
    ]
    assert parse_prompt(messages, "f:1") == (  # a tuple; other keys dropped
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "field 'prompt' must be a string or a list of messages, got"),
        ([], "field 'prompt' has no messages"),
        ([{"role": "user"}], "message prompt[0] needs 'role' and 'content'"),
        ([{"role": "bot", "content": "x"}], "message prompt[0] has role 'bot', not one of"),
        ([{"role": "user", "content": 5}], "field 'prompt[0].content' must be a string"),
    ],
)
def test_parse_prompt_errors_name_the_place(value, message):
    with pytest.raises(DataError, match=r"f\.jsonl:4") as error:
        parse_prompt(value, "f.jsonl:4")
    assert message in str(error.value)


def test_every_reader_parses_prompts_alike(tmp_path):
    """Query files, generations files and labelling files go through parse_prompt."""
    chat = [{"role": "user", "content": "hi"}]
    assert parse_query({"prompt": chat, "category": "c"}, "q:1", chat=False).prompt == (
        {"role": "user", "content": "hi"},
    )
    assert parse_query({"prompt": "hi"}, "q:1", chat=True).prompt == (
        {"role": "user", "content": "hi"},
    )
    with pytest.raises(DataError, match="the prompt is empty"):
        parse_query({"prompt": "  "}, "q:2", chat=False)
    with pytest.raises(DataError, match=r"q:3: message prompt\[0\] has role 'bot'"):
        parse_query({"prompt": [{"role": "bot", "content": "x"}]}, "q:3", chat=False)
    generations = tmp_path / "g.jsonl"
    generations.write_text('{"prompt": [{"role": "user", "content": "hi"}], "response": "yo"}\n')
    assert load_generations(str(generations)) == [(({"role": "user", "content": "hi"},), "yo")]
    generations.write_text('{"prompt": [], "response": "yo"}\n')
    with pytest.raises(DataError, match=r"g\.jsonl:1: expected \{\"prompt\": text or chat"):
        load_generations(str(generations))


def test_distinct_prompts_in_first_seen_order():
    chat = ({"role": "user", "content": "a"},)
    records = [
        Pair("a", "x", "y"),
        Pair(chat, "x", "y"),
        Point("b", "z", 1.0),
        Pair("a", "u", "v"),
        Point(chat, "w", 0.0),
    ]
    groups = distinct_prompts(records)
    assert [prompt for prompt, _ in groups] == ["a", chat, "b"]  # text "a" != chat "a"
    assert [[records.index(r) for r in group] for _, group in groups] == [[0, 3], [1, 4], [2]]
    assert distinct_prompts([]) == []


def test_an_hh_transcript_becomes_its_chat_turns():
    """With the chat template on (every verb's default), an HH-RLHF prompt is rendered as its
    turns, not as one user message holding the whole transcript."""
    text = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: bye?\n\nAssistant:"
    assert as_prompt(text, True) == (
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye?"},
    )
    assert as_prompt(text, False) == text  # --no-chat: the text as it is
    assert as_prompt("plain question", True) == ({"role": "user", "content": "plain question"},)
    # not a transcript: no final "Assistant:", an answer already there, turns out of order
    for other in (
        "\n\nHuman: q",
        "\n\nHuman: q\n\nAssistant: a",
        "\n\nAssistant: a\n\nHuman: q\n\nAssistant:",
        "intro\n\nHuman: q\n\nAssistant:",
    ):
        assert hh_messages(other) is None, other
