"""The OpenAI-compatible server (`alignkit.inference.server`): its HTTP API against the tiny
model in a thread on 127.0.0.1, limits, sampling, bad requests, concurrency, IPv6."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest
from conftest import chat_body, get, post

from alignkit.data.prompts import messages_to_prompt
from alignkit.errors import AlignkitError
from alignkit.inference.server import ChatModel, ChatParams, RequestError, make_server
from alignkit.models import load_inference_model

# ------------------------------------------------------------------ serve: API


def test_models_endpoint(served):
    status, body = get(served.url + "/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny"] and body["data"][0]["object"] == "model"


def test_chat_completion_is_openai_shaped(served):
    status, body = post(served.url + "/chat/completions", chat_body(max_tokens=5, temperature=0))
    assert status == 200
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "tiny"
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 5 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    again = post(served.url + "/chat/completions", chat_body(max_tokens=5, temperature=0))[1]
    assert again["choices"][0]["message"] == choice["message"]  # greedy


def test_server_limit_caps_max_tokens(served):
    body = post(served.url + "/chat/completions", chat_body(max_tokens=500, temperature=0))[1]
    assert body["usage"]["completion_tokens"] <= 8 and served.chat.last_params.max_tokens == 8
    post(served.url + "/chat/completions", chat_body(temperature=0))  # no max_tokens: the limit
    assert served.chat.last_params.max_tokens == 8
    post(served.url + "/chat/completions", chat_body(max_completion_tokens=3))
    assert served.chat.last_params.max_tokens == 3


def test_sampling_with_seed_is_reproducible(served):
    body = chat_body(max_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    first = post(served.url + "/chat/completions", body)[1]["choices"][0]["message"]["content"]
    second = post(served.url + "/chat/completions", body)[1]["choices"][0]["message"]["content"]
    assert first == second
    assert served.chat.last_params.top_p == 0.9 and served.chat.last_params.temperature == 1.0


def test_stop_sequence_truncates(served):
    body = chat_body(max_tokens=8, temperature=1.0, seed=3)
    full = post(served.url + "/chat/completions", body)[1]["choices"][0]["message"]["content"]
    assert len(full) > 3
    stop = full[2:4]
    reply = post(served.url + "/chat/completions", {**body, "stop": [stop]})[1]["choices"][0]
    assert reply["message"]["content"] == full[: full.find(stop)].strip()
    assert reply["finish_reason"] == "stop"


def test_content_parts_and_developer_role(served):
    messages = [
        {"role": "developer", "content": "be kind"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ]
    status, _ = post(served.url + "/chat/completions", {"messages": messages, "max_tokens": 2})
    assert status == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([1, 2], None),
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        (chat_body(max_tokens=0), "max_tokens"),
        (chat_body(max_tokens="9"), "max_tokens"),
        (chat_body(max_tokens=True), "max_tokens"),
        (chat_body(temperature=-1), "temperature"),
        (chat_body(temperature=3), "temperature"),
        (chat_body(top_p=0), "top_p"),
        (chat_body(top_p=1.5), "top_p"),
        (chat_body(stream="yes"), "stream"),
        (chat_body(n=17), "n"),
        (chat_body(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat_body(stop=[""]), "stop"),
        (chat_body(seed=1.5), "seed"),
    ],
)
def test_bad_requests_get_400(served, body, param):
    status, reply = post(served.url + "/chat/completions", body)
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["message"]
    assert reply["error"]["param"] == param


def test_bad_bodies_and_paths(served):
    assert post(served.url + "/chat/completions", None, raw=b"{nope")[0] == 400
    assert post(served.url + "/chat/completions", None, raw=b"[" * 60_000)[0] == 400  # too deep
    assert post(served.url + "/chat/completions", None, raw=b"")[0] == 400
    big = json.dumps(chat_body(pad="x" * (1 << 20))).encode()
    assert post(served.url + "/chat/completions", None, raw=big)[0] == 413
    assert post(served.url + "/embeddings", chat_body())[0] == 404
    assert get(served.url + "/nothing")[0] == 404


def test_concurrent_requests_all_answered(served):
    with_threads: list[int] = []

    def one() -> None:
        with_threads.append(post(served.url + "/chat/completions", chat_body(max_tokens=3))[0])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert with_threads == [200] * 4


def test_chat_template_errors_are_400(tiny_model):
    loaded = load_inference_model(tiny_model)
    loaded.tokenizer.chat_template = "{{ raise_exception('no system messages') }}"
    chat = ChatModel(loaded, "strict", max_new_tokens=2)
    with pytest.raises(RequestError, match="no system messages") as caught:
        chat.complete([{"role": "system", "content": "x"}], ChatParams(max_tokens=1))
    assert caught.value.status == 400


def test_messages_without_chat_template_become_a_transcript():
    tok = SimpleNamespace(chat_template=None)
    messages = [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye?"},
    ]
    assert messages_to_prompt(messages, tok) == (
        "Be nice.\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye?\n\nAssistant:"
    )
    assert messages_to_prompt(messages, SimpleNamespace(chat_template="x")) == tuple(messages)


def test_ipv6_loopback(served):
    try:
        server = make_server(served.chat, "::1", 0)
    except AlignkitError:
        pytest.skip("no IPv6 loopback here")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.url.startswith("http://[::1]:")
        assert get(server.url + "/models")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_serve_embedded_default_model():
    chat = ChatModel(load_inference_model("default"), "default", max_new_tokens=24)
    server = make_server(chat, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        body = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
        status, reply = post(server.url + "/chat/completions", {**body, "temperature": 0})
        assert status == 200 and reply["choices"][0]["message"]["content"].strip()
    finally:
        server.shutdown()
        server.server_close()
