"""Tokenization: exact prompt prefix, EOS, truncation policy, chat rendering."""

from __future__ import annotations

import pytest

from alignkit.data.prompts import render_prompt
from alignkit.data.records import Multi, Pair, Point
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.models import load_tokenizer

TRICKY = [
    # (prompt, response): boundaries where a joint tokenization would merge tokens
    ("\n\nHuman: hi\n\nAssistant:", " sure"),
    ("\n\nHuman: hi\n\nAssistant: ", "sure"),
    ("Say the word ca", "t please"),
    ("Answer:", "\n\nthe answer"),
    ("quote '", "'quoted'"),
    ("emoji 🙂", "🙂 again"),
]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return load_tokenizer(tiny_model)


@pytest.mark.parametrize(("prompt", "response"), TRICKY)
def test_prompt_is_exact_prefix_and_response_decodes(tok, prompt, response):
    (enc,), _ = encode_records([Point(prompt, response, 1.0)], tok, max_length=256)
    full = tok(prompt)["input_ids"]
    assert enc.prompt == full  # the prompt's own tokenization, untouched by the response
    assert enc.responses[0][-1] == tok.eos_token_id
    assert tok.decode(enc.responses[0][:-1]) == response
    assert tok.decode(enc.prompt + enc.responses[0][:-1]) == prompt + response


def test_pair_and_multi_labels(tok):
    pair = Pair("q?", " yes", " no")
    multi = Multi("q?", (" a", " b", " c"), (0.5, 2.0, 1.0))
    (p, m), summary = encode_records([pair, multi], tok, max_length=64)
    assert p.labels == [1.0, 0.0] and p.high_quality == [True, False]
    assert m.labels == [0.5, 2.0, 1.0] and m.high_quality == [False, True, False]
    assert (p.index, m.index) == (0, 1)
    assert summary.kept == 2 and summary.dropped == 0


def test_unfinished_generations_get_no_eos(tok):
    """A generation cut off at max-new-tokens must not teach the model to stop there."""
    whole = tok(" a b c", add_special_tokens=False)["input_ids"]
    point = Point("q?", " a b c", 1.0, unfinished=True)
    multi = Multi("q?", (" a b c", " a b c"), (1.0, 0.0), unfinished=(False, True))
    (p, m), _ = encode_records([point, multi], tok, max_length=64)
    assert p.responses == [whole]
    assert m.responses == [whole + [tok.eos_token_id], whole]
    (empty,), _ = encode_records([Point("q?", "", 1.0, unfinished=True)], tok)
    assert empty.responses == [[tok.eos_token_id]]  # never an empty response
    with pytest.raises(ValueError, match="2 responses but 1 unfinished"):
        encode_records([Multi("q?", (" a", " b"), (1.0, 0.0), unfinished=(True,))], tok)


def test_truncation_keeps_response_and_cuts_prompt_from_left(tok):
    prompt = " ".join(["cat"] * 40)  # 40+ tokens
    response = " dog dog"
    (enc,), summary = encode_records([Point(prompt, response, 1.0)], tok, max_length=20)
    resp_len = len(tok(response, add_special_tokens=False)["input_ids"]) + 1
    assert enc.responses[0][-1] == tok.eos_token_id  # response intact
    assert len(enc.prompt) == 20 - resp_len  # prompt gave up exactly what was needed
    assert enc.prompt == tok(prompt)["input_ids"][-len(enc.prompt) :]
    assert summary.prompt_truncated == 1 and summary.response_truncated == 0


def test_truncation_cuts_response_when_prompt_is_at_half(tok):
    prompt = " ".join(["cat"] * 40)
    response = " ".join(["dog"] * 40)
    (enc,), summary = encode_records([Point(prompt, response, 1.0)], tok, max_length=20)
    assert len(enc.prompt) == 10 and len(enc.responses[0]) == 10
    assert summary.prompt_truncated == 1 and summary.response_truncated == 1


def test_drop_policy_counts_and_names_sources(tok):
    long = Point(" ".join(["cat"] * 40), " x", 1.0, source="f.jsonl:3")
    short = Point("hi", " x", 1.0, source="f.jsonl:4")
    encoded, summary = encode_records([long, short], tok, max_length=20, truncation="drop")
    assert [e.index for e in encoded] == [1]
    assert summary.dropped == 1 and summary.dropped_sources == ["f.jsonl:3"]
    assert "1 dropped" in summary.describe(20, "drop")


def test_everything_dropped_is_an_error(tok):
    long = Point(" ".join(["cat"] * 40), " x", 1.0)
    with pytest.raises(AlignkitError, match="no example is left"):
        encode_records([long], tok, max_length=10, truncation="drop")


def test_chat_prompt_rendered_with_template(tok):
    messages = ({"role": "user", "content": "hello"},)
    text, templated = render_prompt(messages, tok)
    assert templated and text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    (enc,), _ = encode_records([Pair(messages, "hi", "go away")], tok, max_length=64)
    assert tok.decode(enc.prompt) == text


def test_chat_prompt_without_template_is_a_clear_error(tok):
    template = tok.chat_template
    tok.chat_template = None
    try:
        with pytest.raises(AlignkitError, match="no chat template"):
            render_prompt(({"role": "user", "content": "x"},), tok)
    finally:
        tok.chat_template = template
