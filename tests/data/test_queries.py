"""Prompt files for generation (`alignkit.data.queries`): text and chat prompts, bad lines,
long prompts, the seeded iteration schedule."""

from __future__ import annotations

import json

import pytest
from conftest import chat

from alignkit.data.queries import drop_long, iteration_indices, load_queries, read_queries
from alignkit.errors import AlignkitError, DataError

# --------------------------------------------------------------------- queries


def test_read_queries_text_chat_and_no_chat(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [{"prompt": "plain", "category": "c"}, {"prompt": [{"role": "user", "content": "m"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    as_chat = read_queries(str(path), chat=True)
    assert as_chat[0].prompt == chat("plain") and as_chat[0].category == "c"
    assert as_chat[1].prompt == chat("m") and as_chat[1].category == ""
    assert read_queries(str(path), chat=False)[0].prompt == "plain"


@pytest.mark.parametrize(
    "row, message",
    [({"text": "x"}, "needs a 'prompt'"), ({"prompt": " "}, "empty"), ({"prompt": 3}, "string")],
)
def test_bad_query_names_the_line(tmp_path, row, message) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message) as err:
        read_queries(str(path), chat=False)
    assert err.value.where == f"{path}:2"


def test_long_queries_are_dropped_and_counted(tiny_model, tmp_path) -> None:
    from alignkit.models import load_tokenizer

    tok = load_tokenizer(tiny_model)
    path = tmp_path / "q.jsonl"
    rows = [{"prompt": "cat"}, {"prompt": " ".join(["the dog"] * 40)}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = load_queries(str(path), tok, chat=False, max_prompt_tokens=20)
    assert (len(found.queries), found.total, found.dropped) == (1, 2, 1)
    assert "1 dropped" in found.describe(20)
    assert drop_long(read_queries(str(path), False), tok, 0).dropped == 0  # 0 = keep all
    path.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(AlignkitError, match="no query is left"):
        load_queries(str(path), tok, chat=False, max_prompt_tokens=20)


def test_iteration_schedule_is_seeded_passes() -> None:
    first_pass = iteration_indices(8, 4, 0, 0) + iteration_indices(8, 4, 0, 1)
    assert sorted(first_pass) == list(range(8))  # every query once per pass
    assert iteration_indices(8, 4, 0, 3) == iteration_indices(8, 4, 0, 3)  # pure function
    assert iteration_indices(8, 4, 0, 0) != iteration_indices(8, 4, 1, 0)
    crossing = iteration_indices(5, 3, 0, 1)  # queries 3,4 of pass 0 + query 0 of pass 1
    assert len(crossing) == 3
