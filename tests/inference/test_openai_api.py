"""`alignkit serve` as OpenAI clients use it: the official `openai` client against the real
server (tiny random model, in a thread on 127.0.0.1): streaming, n > 1, /v1/completions,
usage, errors, concurrent clients.

The tiny model greedily answers chat prompts with newlines only (stripped: ""), so chat
comparisons also use seeded sampling; /v1/completions is not stripped and greedily repeats
the prompt's last word, which gives non-empty greedy texts.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from types import SimpleNamespace
from typing import Any

import openai
import pytest

from alignkit.inference.server import ChatModel, make_server
from alignkit.models import load_inference_model

LIMIT = 12  # the server's --max-new-tokens
HELLO = [{"role": "user", "content": "hello cat"}]


@pytest.fixture(scope="module")
def served(tiny_model):
    chat = ChatModel(load_inference_model(tiny_model), "tiny", max_new_tokens=LIMIT)
    server = make_server(chat, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
    yield SimpleNamespace(chat=chat, client=client, url=server.url)
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class SlowForward:
    """Forward hooks on the served model: each forward (one token) sleeps `delay`; counts
    the forwards and the most running at once."""

    def __init__(self, model: Any, delay: float) -> None:
        self.delay, self.calls, self.active, self.peak = delay, 0, 0, 0
        self.count = threading.Lock()
        self.handles = [
            model.register_forward_pre_hook(self._enter),
            model.register_forward_hook(self._leave),
        ]

    def _enter(self, *_: Any) -> None:
        with self.count:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)

    def _leave(self, *_: Any) -> None:
        time.sleep(self.delay)
        with self.count:
            self.active -= 1

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def stream_chat(client: openai.OpenAI, **kwargs: Any) -> tuple[dict[int, str], dict, Any, list]:
    """Texts by choice index, finish reasons by index, the usage, and all chunks."""
    chunks = list(client.chat.completions.create(model="tiny", stream=True, **kwargs))
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    usage = None
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return texts, finish, usage, chunks


def stream_text(client: openai.OpenAI, **kwargs: Any) -> tuple[dict[int, str], dict, Any]:
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    usage = None
    for chunk in client.completions.create(model="tiny", stream=True, **kwargs):
        assert chunk.object == "text_completion"
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return texts, finish, usage


# ------------------------------------------------------------------ chat


def test_chat_non_stream_and_usage(served):
    reply = served.client.chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=5, temperature=1.0, seed=3
    )
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    [choice] = reply.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content and choice.finish_reason == "length"
    prompt_tokens = served.chat.encode_messages(HELLO)["input_ids"].shape[1]
    # the template adds roles and markers around "hello cat": more tokens than the words
    assert reply.usage.prompt_tokens == prompt_tokens > 2
    assert reply.usage.completion_tokens == 5  # finish "length": exactly max_tokens
    assert reply.usage.total_tokens == prompt_tokens + 5


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 11}])
def test_chat_stream_equals_non_stream(served, sampling):
    body = {"messages": HELLO, "max_tokens": 10, **sampling}
    plain = served.client.chat.completions.create(model="tiny", **body)
    texts, finish, usage, chunks = stream_chat(
        served.client, stream_options={"include_usage": True}, **body
    )
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant" and first.delta.content == ""
    assert texts == {0: plain.choices[0].message.content}
    assert finish == {0: plain.choices[0].finish_reason}
    assert chunks[-1].choices == [] and usage == plain.usage  # the usage chunk comes last
    if sampling["temperature"]:
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1


def test_stream_with_a_stop_sequence(served):
    body = {"messages": HELLO, "max_tokens": 10, "temperature": 1.0, "seed": 11}
    full = served.client.chat.completions.create(model="tiny", **body).choices[0].message.content
    stop = full[4:6]
    cut = served.client.chat.completions.create(model="tiny", stop=[stop], **body).choices[0]
    assert cut.message.content == full[: full.find(stop)].strip() and cut.finish_reason == "stop"
    texts, finish, _, _ = stream_chat(served.client, stop=[stop], **body)
    assert texts == {0: cut.message.content} and finish == {0: "stop"}


def test_chunks_arrive_while_generating(served):
    slow = SlowForward(served.chat.model, 0.05)
    try:
        start, arrivals = time.monotonic(), []
        stream = served.client.completions.create(
            model="tiny", prompt="the cat", max_tokens=10, temperature=0, stream=True
        )
        for chunk in stream:
            if chunk.choices[0].text:
                arrivals.append(time.monotonic() - start)
    finally:
        slow.remove()
    assert len(arrivals) == 10  # one piece per token (" cat")
    assert arrivals[0] < arrivals[-1] - 0.3  # 9 more tokens at >= 0.05 s each came later


# ------------------------------------------------------------------ n > 1


def test_n_choices_are_seeded_samples(served):
    body = {"messages": HELLO, "max_tokens": 6, "temperature": 1.0, "seed": 5}
    reply = served.client.chat.completions.create(model="tiny", n=3, **body)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    texts = [c.message.content for c in reply.choices]
    assert len(set(texts)) == 3  # three samples, not one copied
    # choice i is the sample of seed + i
    for i, text in enumerate(texts):
        single = served.client.chat.completions.create(model="tiny", **{**body, "seed": 5 + i})
        assert single.choices[0].message.content == text
    assert reply.usage.completion_tokens == 3 * 6
    assert reply.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    streamed, finish, _, chunks = stream_chat(served.client, n=3, **body)
    assert streamed == dict(enumerate(texts)) and sorted(finish) == [0, 1, 2]
    roles = [c.choices[0].index for c in chunks if c.choices[0].delta.role]
    assert roles == [0, 1, 2]  # every choice opens with its role chunk


# ------------------------------------------------------------------ /v1/completions


def test_completions_prompts_and_choices(served):
    reply = served.client.completions.create(
        model="tiny", prompt=["the cat", "a dog"], n=2, max_tokens=4, temperature=0
    )
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]  # prompt p, choice j: p * n + j
    assert [c.text for c in reply.choices] == [" cat" * 4] * 2 + [" dog" * 4] * 2  # unstripped
    assert {c.finish_reason for c in reply.choices} == {"length"}
    tok = served.chat.tokenizer
    prompt_tokens = sum(len(tok(p)["input_ids"]) for p in ("the cat", "a dog"))
    assert reply.usage.prompt_tokens == prompt_tokens and reply.usage.completion_tokens == 16


def test_completions_stream_equals_non_stream(served):
    body = {"prompt": "a dog", "max_tokens": 8, "temperature": 1.0, "seed": 2, "n": 2}
    plain = served.client.completions.create(model="tiny", **body)
    texts, finish, usage = stream_text(
        served.client, stream_options={"include_usage": True}, **body
    )
    assert texts == {c.index: c.text for c in plain.choices}
    assert finish == {c.index: c.finish_reason for c in plain.choices}
    assert usage == plain.usage


def test_top_k_is_applied(served):
    body = {"model": "tiny", "prompt": "the sun", "max_tokens": 6}
    greedy = served.client.completions.create(temperature=0, **body).choices[0].text
    top1 = served.client.completions.create(temperature=2.0, extra_body={"top_k": 1}, **body)
    assert top1.choices[0].text == greedy  # top-1 sampling is greedy at any temperature
    wide = served.client.completions.create(temperature=2.0, seed=1, **body).choices[0].text
    assert wide != greedy  # without top_k the same temperature wanders off


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "param", "words"),
    [
        ("chat", {"n": 17}, "n", "between 1 and 16"),
        ("chat", {"frequency_penalty": 0.5}, "frequency_penalty", "not supported"),
        ("chat", {"logprobs": True}, "logprobs", "not supported"),
        ("chat", {"extra_body": {"top_k": -2}}, "top_k", "'top_k' must be"),
        ("chat", {"stream_options": {"include_usage": True}}, "stream_options", "only allowed"),
        ("chat", {"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "role"),
        ("text", {"prompt": [1, 2, 3]}, "prompt", "token-id prompts"),
        ("text", {"prompt": ["x"] * 17}, "prompt", "at most 16"),
        ("text", {"echo": True}, "echo", "not supported"),
        ("text", {"max_tokens": 0}, "max_tokens", "positive integer"),
    ],
)
def test_errors_are_bad_requests(served, endpoint, kwargs, param, words):
    with pytest.raises(openai.BadRequestError) as caught:
        if endpoint == "chat":
            served.client.chat.completions.create(model="tiny", **{"messages": HELLO, **kwargs})
        else:
            served.client.completions.create(model="tiny", **{"prompt": "the", **kwargs})
    assert caught.value.status_code == 400 and words in caught.value.message
    assert caught.value.body["param"] == param


# ------------------------------------------------------------------ the wire, concurrency


def test_server_sent_events_on_the_wire(served):
    body = {"messages": HELLO, "stream": True, "max_tokens": 3, "temperature": 1.0, "seed": 1}
    request = urllib.request.Request(
        served.url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]  # the stream ends with [DONE] and a blank line
    assert all(e.startswith("data: {") for e in events[:-2])
    last = json.loads(events[-3].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "length" and "usage" not in last


def test_a_failure_mid_stream_reaches_the_client(served):
    def broken(*_: Any) -> None:
        raise RuntimeError("the model broke")

    handle = served.chat.model.register_forward_hook(broken)
    try:
        with pytest.raises(openai.APIError, match="generation failed: the model broke"):
            stream_chat(served.client, messages=HELLO, max_tokens=3)
        with pytest.raises(openai.InternalServerError, match="the model broke"):
            served.client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=3)
    finally:
        handle.remove()
    assert served.client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)


def test_a_client_leaving_mid_stream_stops_its_generation(served):
    slow = SlowForward(served.chat.model, 0.05)
    try:
        stream = served.client.completions.create(
            model="tiny", prompt="the cat", max_tokens=LIMIT, temperature=0, stream=True
        )
        next(iter(stream))
        stream.close()
        calls = -1
        while calls != slow.calls:  # wait until generation stops
            calls = slow.calls
            time.sleep(0.3)
    finally:
        slow.remove()
    assert calls < LIMIT - 3  # cancelled after the next write or two, not run to the end
    reply = served.client.completions.create(model="tiny", prompt="a", max_tokens=2)
    assert reply.choices[0].finish_reason == "length"  # the lock was released


def test_concurrent_clients_get_their_own_answers(served):
    sampled = {"max_tokens": 6, "temperature": 1.0}

    def chat_stream(seed: int) -> Any:
        return stream_chat(served.client, messages=HELLO, seed=seed, **sampled)[0][0]

    def chat_n2() -> Any:
        reply = served.client.chat.completions.create(
            model="tiny", messages=HELLO, n=2, seed=7, **sampled
        )
        return [c.message.content for c in reply.choices]

    def text_stream() -> Any:
        return stream_text(served.client, prompt="a dog", max_tokens=5, temperature=0)[0][0]

    jobs = [lambda: chat_stream(1), lambda: chat_stream(2), chat_n2, text_stream]
    expected = [job() for job in jobs]  # one after another
    assert len({expected[0], expected[1]}) == 2 and expected[3] == " dog" * 5
    slow = SlowForward(served.chat.model, 0.01)
    results: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = jobs[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        slow.remove()
    assert results == expected
    assert slow.peak == 1  # one generation at a time: the others waited
