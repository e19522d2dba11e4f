"""`alignkit generate`: the pool format, seeds, resuming a killed run, the settings check,
the endpoint backend (stub OpenAI-compatible servers and `alignkit serve`), bad prompts."""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import JSONHandler

from alignkit.commands import generate as generate_verb
from alignkit.data.prompts import prompt_contents
from alignkit.errors import AlignkitError, DataError
from alignkit.inference.generation import Completion
from alignkit.inference.generators import vllm_available
from alignkit.labelling.generate import GenerateConfig, generate_pool, meta_path
from alignkit.labelling.pairs import prompt_id, read_pool

PROMPTS = [
    "how to bake a cake",
    [{"role": "system", "content": "be kind"}, {"role": "user", "content": "explain rain"}],
    "sort a list in python",
    "is fire safe",
    "thanks for the help",
]


def write_prompts(path: Path, prompts: list[Any]) -> str:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return str(path)


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def as_chat(prompt: Any) -> list[dict[str, str]]:
    """The prompt as the pool stores it with --chat (plain text becomes a user message)."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


class CountingGenerator:
    """A fake backend: response i to prompt P is "P #i" (finished when i is even); it
    records the prompts of every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def generate(self, prompts, sampling, n=1):
        self.calls.append([prompt_contents(p) for p in prompts])
        return [
            [Completion(f"{prompt_contents(p)} #{i}", i % 2 == 0) for i in range(n)]
            for p in prompts
        ]

    def sync(self, model) -> None:
        pass


@pytest.fixture
def config(tiny_model, tmp_path) -> GenerateConfig:
    return GenerateConfig(
        prompts=write_prompts(tmp_path / "prompts.jsonl", PROMPTS),
        output=str(tmp_path / "pool.jsonl"),
        model=tiny_model,
        num_responses=3,
        max_new_tokens=5,
        batch_size=2,
    )


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    generate_verb.register(parser.add_subparsers())
    args = parser.parse_args(["generate", *argv])
    return args.func(args)


# ------------------------------------------------------------------ hf backend


def test_pool_has_k_responses_per_prompt(tiny_model, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:3])
    out = tmp_path / "pool.jsonl"
    argv = ["--model", tiny_model, "--prompts", prompts, "--num-responses", "3"]
    argv += ["--max-new-tokens", "5", "--batch-size", "2", "--output", str(out)]
    assert run_cli(argv) == 0
    rows = read_lines(out)
    # one line per prompt in file order; text prompts stored as sent (a user chat message)
    assert [r["prompt"] for r in rows] == [as_chat(p) for p in PROMPTS[:3]]
    for row in rows:
        assert set(row) == {"prompt", "responses", "finished", "prompt_id", "model"}
        assert len(row["responses"]) == 3 and all(isinstance(t, str) for t in row["responses"])
        assert len(row["finished"]) == 3 and all(isinstance(f, bool) for f in row["finished"])
        assert row["prompt_id"] == prompt_id(row["prompt"])
        assert row["model"] == tiny_model
    assert len(read_pool(out)) == 3  # the labelling readers accept it
    meta = json.loads(meta_path(out).read_text())
    assert meta == {
        "model": tiny_model,
        "num_responses": 3,
        "max_new_tokens": 5,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "seed": 42,
        "chat": True,
    }
    unfinished = sum(not f for r in rows for f in r["finished"])
    printed = capsys.readouterr().out
    assert "3/3 prompts done (3 now, 0 already in the pool)" in printed
    assert f"9 responses, {unfinished} unfinished" in printed


def test_no_chat_keeps_text_prompts(config):
    config.chat = False
    config.num_responses = 1
    generate_pool(config, CountingGenerator())
    assert [r["prompt"] for r in read_lines(config.output)] == PROMPTS


def test_same_seed_same_pool(config, tmp_path):
    outputs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        config.output, config.seed = str(tmp_path / f"{name}.jsonl"), seed
        generate_pool(config)
        outputs.append(Path(config.output).read_text())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_resumed_run_gives_the_uninterrupted_pool(config, tmp_path, caplog):
    """Killed after its first batch (2 prompts) while writing the next line: the resumed
    run regenerates the rest, and with batches of the same prompts and seeds the pool is
    the same as an uninterrupted run's."""
    generate_pool(config)
    full = Path(config.output).read_text()
    lines = full.splitlines(keepends=True)
    killed = tmp_path / "killed.jsonl"
    killed.write_text(lines[0] + lines[1] + lines[2][:40])
    meta_path(killed).write_text(meta_path(config.output).read_text())
    config.output = str(killed)
    with caplog.at_level(logging.WARNING):
        summary = generate_pool(config)
    assert f"{killed}:3: dropped a line cut short" in caplog.text
    assert (summary.resumed, summary.generated, summary.responses) == (2, 3, 9)
    assert killed.read_text() == full


# ------------------------------------------------------------------ resume, settings


def test_resume_generates_only_the_missing_prompts(config, caplog):
    generate_pool(config, CountingGenerator())
    full = read_lines(config.output)
    text = Path(config.output).read_text().splitlines(keepends=True)
    # a run killed in its third batch: lines 1-2 whole, line 3 half written
    Path(config.output).write_text(text[1] + text[0] + text[2][: len(text[2]) // 2])
    fake = CountingGenerator()
    with caplog.at_level(logging.WARNING):
        summary = generate_pool(config, fake)
    assert "dropped a line cut short" in caplog.text
    # 5 prompts, 2 in the pool -> 3 generated, in batches of 2: [3, 4], [5]
    assert fake.calls == [[PROMPTS[2], PROMPTS[3]], [PROMPTS[4]]]
    assert (summary.prompts, summary.resumed, summary.generated) == (5, 2, 3)
    rows = read_lines(config.output)
    assert sorted(r["prompt_id"] for r in rows) == sorted(r["prompt_id"] for r in full)
    assert {json.dumps(r, sort_keys=True) for r in rows} == {
        json.dumps(r, sort_keys=True) for r in full
    }
    # a complete pool: nothing to do, no backend built
    again = CountingGenerator()
    assert generate_pool(config, again).generated == 0 and again.calls == []


def test_repeated_prompts_are_generated_once(config, tmp_path):
    config.prompts = write_prompts(tmp_path / "rep.jsonl", [PROMPTS[0], PROMPTS[2], PROMPTS[0]])
    fake = CountingGenerator()
    summary = generate_pool(config, fake)
    assert fake.calls == [[PROMPTS[0], PROMPTS[2]]]
    assert (summary.prompts, summary.duplicates) == (2, 1)
    assert "1 repeated prompts" in summary.describe()


def test_finished_flags_counted(config):
    summary = generate_pool(config, CountingGenerator())
    # K = 3: responses #0 and #2 finished, #1 not -> one unfinished per prompt
    assert (summary.responses, summary.unfinished) == (15, 5)
    assert all(r["finished"] == [True, False, True] for r in read_lines(config.output))


def test_other_settings_are_refused(config):
    generate_pool(config, CountingGenerator())
    config.temperature = 0.7
    with pytest.raises(AlignkitError, match=r"temperature: 1\.0 then, 0\.7 now.*--overwrite"):
        generate_pool(config, CountingGenerator())
    config.temperature, config.num_responses = 1.0, 2
    with pytest.raises(AlignkitError, match="num_responses: 3 then, 2 now"):
        generate_pool(config, CountingGenerator())
    config.overwrite = True
    fake = CountingGenerator()
    assert generate_pool(config, fake).generated == 5
    assert all(len(r["responses"]) == 2 for r in read_lines(config.output))
    assert json.loads(meta_path(config.output).read_text())["num_responses"] == 2


def test_settings_of_a_run_that_wrote_nothing_are_replaced(config, tmp_path):
    config.prompts = str(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no such file"):
        generate_pool(config, CountingGenerator())
    config.prompts, config.temperature = write_prompts(tmp_path / "p.jsonl", PROMPTS), 0.5
    assert generate_pool(config, CountingGenerator()).generated == 5


def test_api_key_is_not_in_the_config_repr():
    assert "sk-secret" not in repr(GenerateConfig(api_key="sk-secret"))


def test_pool_without_meta_is_refused(config):
    Path(config.output).write_text('{"prompt": "x", "responses": ["a"]}\n')
    with pytest.raises(AlignkitError, match="without pool.jsonl.meta.json.*--overwrite"):
        generate_pool(config, CountingGenerator())


def test_line_with_other_k_is_refused(config):
    generate_pool(config, CountingGenerator())
    rows = read_lines(config.output)
    rows[1]["responses"], rows[1]["finished"] = ["a"], [True]
    Path(config.output).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(AlignkitError, match="pool.jsonl:2: 1 responses where this pool has 3"):
        generate_pool(config, CountingGenerator())


# ------------------------------------------------------------------ bad input


def test_bad_prompts_file_names_the_line(config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "cut\n')
    config.prompts = str(bad)
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        generate_pool(config, CountingGenerator())
    bad.write_text('{"prompt": "fine"}\n{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: a query record needs a 'prompt'"):
        generate_pool(config, CountingGenerator())
    assert not Path(config.output).exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": 0.0}, "--temperature must be > 0"),
        ({"num_responses": 0}, "--num-responses must be > 0"),
        ({"top_p": 1.5}, "--top-p must be in"),
        ({"prompts": ""}, "give --prompts"),
        ({"endpoint": "localhost:8000"}, "expected http"),
        ({"endpoint": "http://x/v1", "chat": False}, "drop --no-chat"),
        ({"endpoint": "http://x/v1", "backend": "hf"}, "drop it with --endpoint"),
        ({"endpoint": "http://x/v1", "max_prompt_tokens": 64}, "needs the model's tokenizer"),
    ],
)
def test_bad_options(config, changes, message):
    for key, value in changes.items():
        setattr(config, key, value)
    with pytest.raises(AlignkitError, match=message):
        generate_pool(config, CountingGenerator())


@pytest.mark.skipif(vllm_available(), reason="checks the message without vllm")
def test_vllm_backend_without_vllm(config):
    config.backend = "vllm"
    with pytest.raises(AlignkitError, match="--backend vllm needs the vllm package"):
        generate_pool(config)


def test_max_prompt_tokens_drops_long_prompts(config, tiny_model):
    from alignkit.data.tokenize import tokenize_prompts
    from alignkit.models import load_tokenizer

    chat = [tuple(as_chat(p)) for p in PROMPTS]
    lengths = [len(ids) for ids in tokenize_prompts(chat, load_tokenizer(tiny_model))]
    config.max_prompt_tokens = sorted(lengths)[2]  # the 3 shortest prompts (and ties) fit
    kept = [p for p, n in zip(PROMPTS, lengths, strict=True) if n <= config.max_prompt_tokens]
    summary = generate_pool(config, CountingGenerator())
    assert summary.dropped_long == 5 - len(kept) > 0
    assert [r["prompt"] for r in read_lines(config.output)] == [as_chat(p) for p in kept]


# ------------------------------------------------------------------ endpoint backend


class StubHandler(JSONHandler):
    """An OpenAI-compatible stub; `server.mode`: multi (n choices), single (1 choice
    whatever n), refuse-n (HTTP 400 for n > 1); `server.fail_first` 500s come first."""

    server: Any

    def do_GET(self) -> None:  # noqa: N802
        self._reply(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stub = self.server
        with stub.lock:
            stub.bodies.append(body)
            stub.keys.append(self.headers.get("Authorization"))
            failing = stub.fail_first > 0
            stub.fail_first -= failing
        if failing:
            return self._reply(500, {"error": {"message": "overloaded"}})
        if stub.mode == "refuse-n" and body["n"] != 1:
            return self._reply(400, {"error": {"message": "only n=1 is supported"}})
        if stub.mode == "bad-request":
            return self._reply(400, {"error": {"message": "max_tokens is too large"}})
        n = 1 if stub.mode == "single" else body["n"]
        text = body["messages"][-1]["content"]
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"{text} seed {body['seed'] + i}"},
                "finish_reason": "length" if i == 1 else "stop",
            }
            for i in range(n)
        ]
        self._reply(200, {"object": "chat.completion", "choices": choices})


@pytest.fixture
def stub() -> Iterator[SimpleNamespace]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
    server.mode, server.fail_first = "multi", 0
    server.bodies, server.keys, server.lock = [], [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(server=server, url=f"http://127.0.0.1:{server.server_port}/v1")
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def endpoint_config(tmp_path, stub) -> GenerateConfig:
    return GenerateConfig(
        prompts=write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:4]),
        output=str(tmp_path / "pool.jsonl"),
        endpoint=stub.url,
        num_responses=3,
        max_new_tokens=7,
        temperature=0.8,
        top_p=0.9,
        top_k=5,
        concurrency=2,
        retry_wait=0.0,
    )


def test_endpoint_asks_n_per_prompt(endpoint_config, stub, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    summary = generate_pool(endpoint_config)
    bodies = stub.server.bodies
    assert len(bodies) == 4  # one request per prompt, n = 3 each
    for body in bodies:
        assert body["model"] == "stub"  # the only model /models lists
        assert (body["n"], body["max_tokens"], body["temperature"]) == (3, 7, 0.8)
        assert (body["top_p"], body["top_k"]) == (0.9, 5)
        assert isinstance(body["seed"], int)
    sent = sorted(json.dumps(b["messages"]) for b in bodies)
    assert sent == sorted(json.dumps(as_chat(p)) for p in PROMPTS[:4])
    assert stub.server.keys == ["Bearer sk-secret"] * 4
    rows = read_lines(endpoint_config.output)
    assert [r["prompt"] for r in rows] == [as_chat(p) for p in PROMPTS[:4]]
    assert all(r["finished"] == [True, False, True] for r in rows)  # finish_reason "length"
    assert rows[0]["model"] == f"stub @ {stub.url}"
    assert (summary.responses, summary.unfinished) == (12, 4)
    assert "sk-secret" not in meta_path(endpoint_config.output).read_text()


def test_endpoint_with_one_choice_per_reply(endpoint_config, stub):
    stub.server.mode = "single"
    endpoint_config.prompts = write_prompts(Path(endpoint_config.prompts), PROMPTS[:2])
    endpoint_config.concurrency = 1
    generate_pool(endpoint_config)
    # prompt 1: n=3 gives 1 choice, 2 more with n=1; prompt 2: 3 requests with n=1
    assert [b["n"] for b in stub.server.bodies] == [3, 1, 1, 1, 1, 1]
    for row in read_lines(endpoint_config.output):
        assert len(row["responses"]) == 3
        assert len(set(row["responses"])) == 3  # each request had its own seed


def test_endpoint_refusing_n(endpoint_config, stub):
    stub.server.mode = "refuse-n"
    endpoint_config.prompts = write_prompts(Path(endpoint_config.prompts), PROMPTS[:2])
    endpoint_config.concurrency, endpoint_config.num_responses = 1, 2
    generate_pool(endpoint_config)
    assert [b["n"] for b in stub.server.bodies] == [2, 1, 1, 1, 1]
    assert all(len(set(r["responses"])) == 2 for r in read_lines(endpoint_config.output))


def test_endpoint_refusing_a_request_stops_the_run(endpoint_config, stub):
    stub.server.mode = "bad-request"
    with pytest.raises(AlignkitError, match="refused a request: HTTP 400: max_tokens is too"):
        generate_pool(endpoint_config)


def test_endpoint_retries_a_500(endpoint_config, stub):
    stub.server.fail_first = 1
    endpoint_config.retries = 2
    generate_pool(endpoint_config)
    assert len(stub.server.bodies) == 5  # 4 prompts + the failed first attempt
    assert len(read_lines(endpoint_config.output)) == 4


def test_endpoint_down_stops_with_a_clear_error(endpoint_config, stub):
    stub.server.fail_first = 100
    endpoint_config.retries = 1
    with pytest.raises(AlignkitError, match="the endpoint at .* did not answer after 2"):
        generate_pool(endpoint_config)
    assert not Path(endpoint_config.output).exists()  # the first batch never finished


def test_endpoint_against_alignkit_serve(tiny_model, tmp_path):
    """The real server refuses n > 1: the pool is made with one request per response."""
    from alignkit.inference.server import ChatModel, make_server
    from alignkit.models import load_inference_model

    chat = ChatModel(load_inference_model(tiny_model), "tiny", max_new_tokens=6)
    server = make_server(chat, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = GenerateConfig(
            prompts=write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:2]),
            output=str(tmp_path / "pool.jsonl"),
            endpoint=server.url,
            num_responses=2,
            max_new_tokens=6,
            retry_wait=0.0,
        )
        summary = generate_pool(config)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    rows = read_lines(config.output)
    assert [len(r["responses"]) for r in rows] == [2, 2]
    assert rows[0]["model"] == f"tiny @ {server.url}"
    assert summary.responses == 4
