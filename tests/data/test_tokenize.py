"""Tokenization: exact prompt prefix, EOS, truncation policy, chat rendering."""

from __future__ import annotations

import pytest

from alignkit.data import tokenize
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


class Bounded:
    """The tokenizer `tok`, refusing any text over `most` characters (what the old code did
    with a long record: tokenize all of it) and recording the longest it was given."""

    def __init__(self, tok, most: int) -> None:
        self.tok, self.most, self.longest = tok, most, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __call__(self, texts, **kwargs):
        self.longest = max([self.longest, *(len(t) for t in texts)])
        assert self.longest <= self.most, f"tokenized a text of {self.longest} characters"
        return self.tok(texts, **kwargs)


def _whole(monkeypatch, records, tok, max_length, truncation="truncate"):
    """encode_records as before the cut: every text tokenized whole."""
    with monkeypatch.context() as patch:
        patch.setattr(tokenize, "CHARS_PER_TOKEN", 10**12)
        return encode_records(records, tok, max_length, truncation)


def test_a_long_text_is_cut_before_tokenizing_and_keeps_the_same_tokens(tok, monkeypatch):
    """C1: at max_length 64 no text of more than 64 * 32 = 2048 characters reaches the
    tokenizer, and the tokens kept are those of the whole text."""
    words = " ".join(f"w{i % 97} cat" for i in range(6000))  # 47,889 characters
    chat = ({"role": "user", "content": words},)
    records = [
        Point(words, " dog", 1.0),  # prompt cut from the left
        Point("hi", words, 0.0),  # response cut from the right
        Pair(chat, words, " no"),  # a chat prompt and one long answer
        Multi("q", (words, " a", words[:100]), (1.0, 0.0, 0.5)),
        Point("short", " dog", 1.0),  # untouched
    ]
    bounded = Bounded(tok, 2048)
    got, summary = encode_records(records, bounded, 64)
    assert bounded.longest == 2048
    want, before = _whole(monkeypatch, records, tok, 64)
    assert got == want and summary == before
    assert summary.prompt_truncated == 2 and summary.response_truncated == 3
    got, _ = encode_records(records, Bounded(tok, 2048), 64, "drop")
    assert got == _whole(monkeypatch, records, tok, 64, "drop")[0]
    assert [e.index for e in got] == [4]


def test_a_5mb_record_tokenizes_a_bounded_text(tok):
    huge = "the cat sat on the mat " * 230_000  # 5.3 MB
    bounded = Bounded(tok, 1024 * 32)
    (enc,), summary = encode_records([Point(huge, huge, 1.0)], bounded, 1024)
    assert bounded.longest == 1024 * 32
    assert len(enc.prompt) == len(enc.responses[0]) == 512  # prompt at half, response cut
    assert tok.decode(enc.responses[0]).startswith("the cat sat on the mat the cat")


class LongTokens:
    """A tokenizer whose tokens are 100 characters long (runs of spaces or symbols are)."""

    eos_token_id, chat_template = 0, None

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, texts, add_special_tokens=True):
        self.seen += [len(t) for t in texts]
        return {"input_ids": [[7] * -(-len(t) // 100) for t in texts]}


def test_a_cut_text_with_too_few_tokens_is_cut_again_longer(monkeypatch):
    """2048 characters of 100-character tokens are 21 tokens, fewer than the 64 that may be
    kept: the response is tokenized again from 4096, then 8192 characters (82 tokens)."""
    records = [Point("q", "=" * 10_000, 1.0)]
    fake = LongTokens()
    got, _ = encode_records(records, fake, 64)
    assert fake.seen == [1, 2048, 4096, 8192]
    assert got == _whole(monkeypatch, records, LongTokens(), 64)[0]
    assert len(got[0].responses[0]) == 63
