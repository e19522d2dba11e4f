"""The OpenAI-compatible server (`alignkit.inference.server`): its HTTP API against the tiny
model in a thread on 127.0.0.1, limits, sampling, bad requests, concurrency, IPv6."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import chat_body, get, half_request, post, serve_in_thread

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
        (chat_body(seed=2**70), "seed"),  # torch would overflow: a 400, not a 500
        (chat_body(seed=-(2**63) - 1), "seed"),
        (chat_body(min_tokens=5), "min_tokens"),  # vLLM's extensions change the output
        (chat_body(ignore_eos=True), "ignore_eos"),
        (chat_body(stop_token_ids=[3]), "stop_token_ids"),
        (chat_body(typical_p=0.5), "typical_p"),
        (chat_body(guided_json={"type": "object"}), "guided_json"),
        (chat_body(repetition_penalty=1.3), "repetition_penalty"),
        (chat_body(length_penalty=2.0), "length_penalty"),
        (chat_body(max_new_tokens=4), "max_new_tokens"),  # a slip for max_tokens
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
    status, reply = post(served.url + "/chat/completions", None, raw=b"[" * 100_000)
    assert status == 400 and "nested too deeply" in reply["error"]["message"]
    big = json.dumps(chat_body(pad="x" * (1 << 20))).encode()
    assert post(served.url + "/chat/completions", None, raw=big)[0] == 413
    assert post(served.url + "/embeddings", chat_body())[0] == 404
    assert get(served.url + "/nothing")[0] == 404


def test_largest_seed_and_neutral_extensions_are_accepted(served):
    body = chat_body(seed=2**63 - 1, n=2, max_tokens=2, min_tokens=0, ignore_eos=False)
    body.update(stop_token_ids=[], typical_p=1, repetition_penalty=1, skip_special_tokens=True)
    assert post(served.url + "/chat/completions", body)[0] == 200


def test_prompt_longer_than_the_context_is_400(served, monkeypatch):
    # the tiny model's context is 512 positions; "hello cat" is a few tokens
    assert served.chat.context == 512
    monkeypatch.setattr(served.chat, "context", 12)
    for stream in (False, True):
        status, reply = post(served.url + "/chat/completions", chat_body(stream=stream))
        assert status == 400 and reply["error"]["param"] == "messages"
        assert "exceeds the model's context of 12 tokens" in reply["error"]["message"]
        body = {"prompt": "hello cat " * 10, "max_tokens": 1, "stream": stream}
        status, reply = post(served.url + "/completions", body)
        assert status == 400 and reply["error"]["param"] == "prompt"
    body = {"prompt": "hi", "max_tokens": 2}  # room for 2 new tokens: answered
    assert post(served.url + "/completions", body)[0] == 200


# ------------------------------------------------------------------ serve: access


def call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
    """The status of a GET (no body) or a JSON POST with these headers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def running(chat: ChatModel, **options: Any) -> Iterator[Any]:
    yield from serve_in_thread(make_server(chat, "127.0.0.1", 0, **options))


def test_api_key_is_required_off_loopback_and_checked_on_every_request(served):
    with pytest.raises(AlignkitError, match="--api-key"):
        make_server(served.chat, "0.0.0.0", 0)
    key = "k3y-of-the-server"
    with running(served.chat, api_key=key) as server:
        url, chat = server.url, chat_body(max_tokens=1)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            assert call(url + "/models", headers=headers) == 401
            assert call(url + "/chat/completions", chat, headers) == 401
        good = {"Authorization": f"Bearer {key}"}
        assert call(url + "/models", headers=good) == 200
        assert call(url + "/chat/completions", chat, good) == 200
        # with a key, any Host name is fine (a rebinding page has no key)
        assert call(url + "/models", headers={**good, "Host": "example.org"}) == 200


def test_loopback_host_names_origin_and_content_type(served):
    url, chat, port = served.url, chat_body(max_tokens=1), served.server.server_address[1]
    for host in ("evil.example", "127.0.0.1.nip.io", f"127.0.0.1:{port + 1}", ""):
        assert call(url + "/models", headers={"Host": host}) == 403, host
        assert call(url + "/chat/completions", chat, {"Host": host}) == 403, host
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", "127.0.0.1"):
        assert call(url + "/models", headers={"Host": host}) == 200, host
    for origin in ("http://evil.example", f"http://evil.example:{port}", "null"):
        assert call(url + "/chat/completions", chat, {"Origin": origin}) == 403
    assert call(url + "/chat/completions", chat, {"Origin": f"http://127.0.0.1:{port}"}) == 200
    for kind in ("text/plain", "application/x-www-form-urlencoded", ""):
        assert call(url + "/chat/completions", chat, {"Content-Type": kind}) == 415, kind
    assert (
        call(url + "/chat/completions", chat, {"Content-Type": "application/json; charset=utf-8"})
        == 200
    )


def test_slow_clients_are_dropped(served):
    assert served.server.request_queue_size >= 128
    with running(served.chat, socket_timeout=0.5) as server:
        port = server.server_address[1]
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        assert half_request(port, head) == b""  # half the headers: closed, no answer
        body = json.dumps(chat_body()).encode()
        head += b"Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5]
        assert half_request(port, head).startswith(b"HTTP/1.0 408")  # half the body
        assert get(server.url + "/models")[0] == 200  # the server goes on


def test_a_huge_content_length_with_one_byte_of_body_is_dropped(served):
    """B11: Content-Length 10^12 and one byte: the body is over the limit, and reading past it
    (so the client reads the 413) stops at the socket timeout: the 413 comes, the thread is
    freed."""
    with running(served.chat, socket_timeout=0.5) as server:
        port = server.server_address[1]
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += "Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{"
        started = time.monotonic()
        answer = half_request(port, head.encode(), wait=10)  # closed, not held
        assert answer.startswith(b"HTTP/1.0 413") and b"over 1048576 bytes" in answer
        assert time.monotonic() - started < 5
        assert get(server.url + "/models")[0] == 200


class EndlessChat(ChatModel):
    """Generates until cancelled (at most 30 s), polling `cancel` as the stopping criterion
    does after every token; `stopped` is set when generation ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopped = threading.Event()

    def _generate(self, enc, params, streamer, cancel):
        end = time.monotonic() + 30
        while not (cancel is not None and cancel.is_set()) and time.monotonic() < end:
            time.sleep(0.01)
        self.stopped.set()
        return torch.zeros(0, dtype=torch.long)


@pytest.fixture(scope="module")
def endless(tiny_model):
    return EndlessChat(load_inference_model(tiny_model), "endless", max_new_tokens=8)


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_a_client_that_leaves_stops_its_generation(endless, path):
    endless.stopped.clear()
    with running(endless) as server:
        port = server.server_address[1]
        body = json.dumps(chat_body(prompt="hello")).encode()
        head = f"POST /v1{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head.encode() + body)
            time.sleep(0.3)
            assert not endless.stopped.is_set()  # still generating while the client waits
        assert endless.stopped.wait(5)  # the client closed: generation stops


def test_a_request_stops_at_its_time_limit(endless):
    with running(endless, request_timeout=0.3) as server:
        started = time.monotonic()
        status, reply = post(server.url + "/chat/completions", chat_body(n=3))
        assert status == 408 and "--request-timeout" in reply["error"]["message"]
        assert time.monotonic() - started < 5  # not 3 x 30 s
        status, reply = post(server.url + "/completions", {"prompt": "hi"})
        assert status == 408


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
