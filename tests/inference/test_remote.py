"""Remote generation: the online loops sampling from an OpenAI-compatible server
(`--generator URL`), the adapter sync of a vLLM-like server, the option checks, and the
one HTTP client (`alignkit.inference.openai_client`) that the judges, `alignkit generate`
and the loops share.

The loop runs on the tiny model of conftest against a real `alignkit serve` in a thread
(the server's replies are recorded at the client), and against a stub that speaks vLLM's
runtime LoRA endpoints (/v1/load_lora_adapter, /v1/unload_lora_adapter)."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import keyword_reward, serve_in_thread

from alignkit.cli import main
from alignkit.errors import AlignkitError
from alignkit.inference.generation import SamplingConfig
from alignkit.inference.generators import HFGenerator
from alignkit.inference.openai_client import EndpointUnavailable, OpenAIClient, RequestRefused
from alignkit.inference.remote import OFF_POLICY, EndpointGenerator
from alignkit.io import read_jsonl
from alignkit.online.config import RAFTConfig
from alignkit.online.loop import OnlineTrainer


@pytest.fixture(scope="module")
def served(tiny_model) -> Iterator[Any]:
    """`alignkit serve` on the tiny model, on a free port of 127.0.0.1."""
    from alignkit.inference.server import ChatModel, make_server
    from alignkit.models import load_inference_model

    chat = ChatModel(load_inference_model(tiny_model), "tiny", max_new_tokens=16)
    yield from serve_in_thread(make_server(chat, "127.0.0.1", 0))


# ------------------------------------------------------------------ the loop on alignkit serve


def test_raft_samples_from_alignkit_serve(
    served, tiny_model, queries_file, tmp_path, monkeypatch, caplog
):
    """`alignkit raft --generator URL`: every response of the generations files is an
    answer the server sent, training ran, and the run says the samples are off-policy."""
    replies: list[dict[str, Any]] = []
    lock = threading.Lock()
    real_chat = OpenAIClient.chat

    def recording_chat(self, body):
        reply = real_chat(self, body)
        with lock:
            replies.append(reply)
        return reply

    monkeypatch.setattr(OpenAIClient, "chat", recording_chat)
    eval_file = tmp_path / "heldout.jsonl"
    eval_file.write_text(json.dumps({"prompt": "is the sea blue"}) + "\n")
    out = tmp_path / "raft"
    with caplog.at_level(logging.INFO):
        code = main(
            [
                "raft", "--queries", queries_file, "--output", str(out), "--model", tiny_model,
                "--reward-model", f"{__name__}:keyword_reward",
                "--generator", served.url, "--generator-concurrency", "2",
                "--iterations", "2", "--queries-per-iteration", "4", "--num-samples", "2",
                "--max-new-tokens", "6", "--batch-size", "2", "--lr", "1e-3",
                "--precision", "fp32", "--eval-queries", str(eval_file),
            ]
        )  # fmt: skip
    assert code == 0
    sent = Counter(c["message"]["content"].strip() for r in replies for c in r["choices"])
    assert {r["model"] for r in replies} == {"tiny"}  # the served model's name (the default)
    got: Counter[str] = Counter()
    for it in (1, 2):
        rows = read_jsonl(out / "generations" / f"iter-{it:04d}.jsonl")
        assert len(rows) == 4 and all(len(r["responses"]) == 2 for r in rows)
        got.update(text for r in rows for text in r["responses"])
    # every request was one training sample: the held-out evaluation sampled the policy
    # itself (the server's weights never change here, so they would not measure it)
    assert got == sent and sum(sent.values()) == 2 * 4 * 2
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics if "train/steps" in m] == [1, 2]
    assert all(m["train/steps"] > 0 and m["loss"] == m["loss"] for m in metrics if "loss" in m)
    assert (out / "model" / "model.safetensors").exists()
    assert (out / "eval" / "iter-0000.jsonl").exists() and (
        out / "eval" / "iter-0002.jsonl"
    ).exists()
    assert caplog.text.count(OFF_POLICY) == 1  # warned once, not per iteration
    assert json.loads((out / "config.json").read_text())["endpoint"] == served.url


def test_sampling_settings_reach_the_server(served):
    """The request body: n falls back to 1 on `alignkit serve`; greedy = temperature 0."""
    generator = EndpointGenerator(OpenAIClient(served.url, retry_wait=0.0))
    assert generator.model == "tiny"
    sampling = SamplingConfig(max_new_tokens=4, do_sample=False, seed=3)
    (group,) = generator.generate(["hello there"], sampling, 2)
    assert len(group) == 2
    assert group[0].text == group[1].text  # greedy: the same answer twice


# ------------------------------------------------------------------ sync (a vLLM-like stub)


class VLLMStub(BaseHTTPRequestHandler):
    """Speaks what the loop uses of vLLM: /v1/models, /v1/chat/completions (n choices
    saying which model answered) and the runtime LoRA endpoints, replying in plain text."""

    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, data: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(200, json.dumps({"data": [{"id": "base", "object": "model"}]}).encode())

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stub = self.server
        with stub.lock:
            stub.keys.add(self.headers.get("Authorization"))
            if self.path == "/v1/load_lora_adapter":
                path = Path(body["lora_path"])
                stub.loads.append((body["lora_name"], (path / "adapter_config.json").exists()))
                stub.loaded.add(body["lora_name"])
                return self._reply(200, b"Success: LoRA adapter added", "text/plain")
            if self.path == "/v1/unload_lora_adapter":
                stub.unloads.append(body["lora_name"])
                stub.loaded.discard(body["lora_name"])
                return self._reply(200, b"Success: LoRA adapter removed", "text/plain")
            if self.path != "/v1/chat/completions":
                return self._reply(404, b'{"detail": "Not Found"}')
            stub.models.append(body["model"])
        if body["model"] not in stub.loaded | {"base"}:
            error = {"error": {"message": f"The model `{body['model']}` does not exist."}}
            return self._reply(404, json.dumps(error).encode())
        choices = [
            {"message": {"content": f"from {body['model']} #{i}"}, "finish_reason": "stop"}
            for i in range(body["n"])
        ]
        self._reply(200, json.dumps({"choices": choices}).encode())


@pytest.fixture
def vllm_stub() -> Iterator[SimpleNamespace]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), VLLMStub)
    server.lock, server.keys = threading.Lock(), set()
    server.loads, server.unloads, server.models, server.loaded = [], [], [], set()
    for s in serve_in_thread(server):
        yield SimpleNamespace(server=s, url=f"http://127.0.0.1:{s.server_port}/v1")


def test_sync_loads_the_trained_adapter_into_the_server(
    vllm_stub, tiny_model, queries_file, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    out = tmp_path / "raft"
    config = RAFTConfig(
        queries=queries_file, output=str(out), model=tiny_model, iterations=2,
        queries_per_iteration=4, num_samples=2, max_new_tokens=6, batch_size=2, lr=1e-3,
        precision="fp32", lora=True, endpoint=vllm_stub.url, api_key="sk-flag",
        generator_sync_url=f"{vllm_stub.url}/load_lora_adapter", retry_wait=0.0,
    )  # fmt: skip
    config.validate()
    with caplog.at_level(logging.INFO):
        OnlineTrainer(config, reward=keyword_reward).run()
    stub = vllm_stub.server
    names = [name for name, _ in stub.loads]
    # one load at the start (the resumed or fresh adapter), one after each iteration
    assert len(names) == 3 and len(set(names)) == 3
    assert all(has_config for _, has_config in stub.loads)  # a saved peft adapter
    assert stub.unloads == names[:2]  # the older adapter goes when a new one is in
    # one request (n = 2) per query; iteration i samples from the adapter loaded before it
    assert stub.models == [names[0]] * 4 + [names[1]] * 4
    rows = read_jsonl(out / "generations" / "iter-0002.jsonl")
    assert rows[0]["responses"] == [f"from {names[1]} #0", f"from {names[1]} #1"]
    assert sorted(p.name for p in (out / "sync").iterdir()) == [names[2]]
    assert stub.keys == {"Bearer sk-flag"}  # the flag wins over $OPENAI_API_KEY
    assert "sk-flag" not in (out / "config.json").read_text()
    assert OFF_POLICY not in caplog.text


def test_sync_needs_lora_and_a_server_that_loads_adapters(vllm_stub, tmp_path, monkeypatch):
    import alignkit.inference.remote as remote

    client = OpenAIClient(vllm_stub.url, retries=0)
    sync_url = f"{vllm_stub.url}/no_such_endpoint"  # e.g. vLLM without runtime LoRA updating
    generator = EndpointGenerator(client, sync_url=sync_url, sync_dir=tmp_path / "sync")
    with pytest.raises(AlignkitError, match="train with --lora"):
        generator.sync(SimpleNamespace())  # full weights: no documented way to reload them
    monkeypatch.setattr(remote, "is_peft", lambda model: True)
    adapter = SimpleNamespace(save_pretrained=lambda path: Path(path).mkdir(parents=True))
    with pytest.raises(AlignkitError, match="HTTP 404.*VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"):
        generator.sync(adapter)
    assert generator.model == "base"  # still the server's own model


# ------------------------------------------------------------------ option checks


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"generator": "gpu"}, "expected auto, hf, vllm or the URL"),
        ({"generator": "localhost:8000/v1"}, "expected auto, hf, vllm or the URL"),
        (
            {"generator": "hf", "generator_model": "m"},
            "--generator-model: only for --endpoint URL",
        ),
        ({"generator_sync_url": "http://h/v1/load_lora_adapter"}, "only for --endpoint URL"),
        ({"generator": "http://h:1/v1", "chat": False}, "drop --no-chat"),
        ({"endpoint": "http://h:1/v1", "timeout": 0.0}, "--timeout must"),
        ({"endpoint": "http://h:1/v1", "retries": -1}, "must be >= 0"),
        (
            {"generator": "http://h:1/v1", "generator_sync_url": "h/load", "lora": True},
            "expected http",
        ),
        (
            {"generator": "http://h:1/v1", "generator_sync_url": "http://h:1/v1/load_lora_adapter"},
            "add --lora",
        ),
    ],
)
def test_bad_generator_options(queries_file, changes, message):
    config = RAFTConfig(queries=queries_file, output="o", **changes)
    with pytest.raises(AlignkitError, match=message):
        config.validate()


@pytest.mark.parametrize(
    "generator", ["auto", "hf", "vllm", "http://127.0.0.1:8000/v1", "https://x.org/v1"]
)
def test_good_generator_values(queries_file, generator):
    config = RAFTConfig(queries=queries_file, output="o", generator=generator)
    config.validate()
    assert config.remote is generator.startswith("http")


def test_cli_refuses_a_bad_generator(queries_file, tmp_path, capsys):
    argv = ["raft", "--queries", queries_file, "--output", str(tmp_path / "o")]
    assert main([*argv, "--generator", "ftp://x"]) == 2
    assert "expected auto, hf, vllm or the URL" in capsys.readouterr().err


def test_remote_options_reach_the_generator(vllm_stub, tiny_model, queries_file, tmp_path):
    config = RAFTConfig(
        queries=queries_file, output=str(tmp_path / "o"), model=tiny_model, max_new_tokens=4,
        endpoint=vllm_stub.url, generator_model="named", concurrency=3,
        timeout=7.0, retries=2, retry_wait=0.5,
        eval_queries=queries_file,
    )  # fmt: skip
    config.validate()
    session = OnlineTrainer(config, reward=keyword_reward).setup()
    generator = session.generator
    assert isinstance(generator, EndpointGenerator)
    assert (generator.model, generator.concurrency) == ("named", 3)
    client = generator.client
    assert (client.timeout, client.retries, client.retry_wait) == (7.0, 2, 0.5)
    assert isinstance(session.evaluator, HFGenerator)  # no sync: evaluate the policy itself


# ------------------------------------------------------------------ the HTTP client


class Scripted(BaseHTTPRequestHandler):
    """Replies with the statuses of `server.script` in turn, then 200."""

    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        status = self.server.script.pop(0) if self.server.script else 200
        body = {"choices": [{"message": {"content": "ok"}}]}
        if status != 200:
            body = {"error": {"message": f"scripted {status}"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted() -> Iterator[SimpleNamespace]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.script, server.requests = [], 0
    for s in serve_in_thread(server):
        yield SimpleNamespace(server=s, url=f"http://127.0.0.1:{s.server_port}/v1")


def test_client_retries_a_500_then_succeeds(scripted, caplog):
    scripted.server.script = [500]
    client = OpenAIClient(scripted.url, retries=2, retry_wait=0.0)
    with caplog.at_level(logging.WARNING):
        reply = client.chat({"model": "m", "messages": []})
    assert reply["choices"][0]["message"]["content"] == "ok"
    assert scripted.server.requests == 2
    warning = f"request to {scripted.url}/chat/completions failed (HTTP 500: scripted 500)"
    assert warning in caplog.text and "judge" not in caplog.text


def test_client_errors_name_the_url_and_status(scripted):
    client = OpenAIClient(scripted.url, retries=1, retry_wait=0.0, key_flag="--my-key")
    url = f"{scripted.url}/chat/completions"
    scripted.server.script = [400]
    with pytest.raises(RequestRefused, match="refused a request: HTTP 400: scripted 400") as info:
        client.chat({})
    assert str(info.value).startswith(url) and info.value.status == 400
    scripted.server.script = [401]
    with pytest.raises(EndpointUnavailable, match="HTTP 401.*pass --my-key"):
        client.chat({})
    scripted.server.script = [503, 503]
    with pytest.raises(
        EndpointUnavailable, match=f"{url} did not answer after 2 attempts: HTTP 503"
    ):
        client.chat({})
    assert "sk" not in repr(OpenAIClient(scripted.url, "sk-secret"))
