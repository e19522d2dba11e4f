"""`alignkit serve` (OpenAI-compatible server) and `alignkit judge` (pairwise win rates).

The HTTP judge is tested against a real `alignkit serve` on 127.0.0.1 with the tiny model;
win/tie/loss arithmetic with scripted judges at the Python level."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from alignkit.cli import main
from alignkit.data.prompts import messages_to_prompt
from alignkit.errors import AlignkitError, DataError
from alignkit.evaluation.judges import (
    CRITERION_TEMPLATE,
    DEFAULT_TEMPLATE,
    KNOWN_CRITERIA,
    TEMPLATE_ID,
    Criterion,
    FunctionJudge,
    HttpJudge,
    Judge,
    JudgeUnavailable,
    Question,
    QuestionRejected,
    Template,
    build_judge,
    judge_messages,
    load_template,
    parse_criterion,
)
from alignkit.evaluation.win_rate import (
    Item,
    VerdictCache,
    align,
    format_summary,
    judge_pairs,
    load_generations,
    outcome,
    outcome_one_order,
    parse_verdict,
)
from alignkit.inference.server import ChatModel, ChatParams, RequestError, make_server
from alignkit.models import load_inference_model
from alignkit.runs import resolve_model_spec

# ------------------------------------------------------------------ helpers


class CountingChat(ChatModel):
    """A ChatModel that counts requests, the most in flight at once, and the last params."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = self.active = self.peak = 0
        self.last_params: ChatParams | None = None
        self._count = threading.Lock()

    def complete(self, messages, params):
        with self._count:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.last_params = params
        try:
            time.sleep(0.01)  # keep concurrent requests overlapping
            return super().complete(messages, params)
        finally:
            with self._count:
                self.active -= 1

    def reset(self) -> None:
        self.calls = self.active = self.peak = 0


@pytest.fixture(scope="module")
def served(tiny_model):
    """`alignkit serve` on the tiny model, in a thread, on a free port of 127.0.0.1."""
    chat = CountingChat(load_inference_model(tiny_model), "tiny", max_new_tokens=8)
    server = make_server(chat, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(server=server, chat=chat, url=server.url)
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "x", "messages": [{"role": "user", "content": "hello cat"}], **extra}


def write_gens(path: Path, rows: list[tuple[Any, str]]) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


# ------------------------------------------------------------------ serve: adapters, CLI


@pytest.fixture
def lora_run(tiny_model, tmp_path) -> Path:
    """A run directory laid out like `alignkit train --lora` writes it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    get_peft_model(base, config).save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run / "model")
    (run / "summary.json").write_text(json.dumps({"base_model": tiny_model, "steps": 1}))
    return run


def test_adapter_run_directory(lora_run, tiny_model):
    for spec in (str(lora_run), str(lora_run / "model")):
        resolved = resolve_model_spec(spec)
        assert (resolved.base, resolved.adapter_path) == (tiny_model, str(lora_run / "model"))
    loaded = load_inference_model(str(lora_run))
    assert "adapter" in loaded.description and not hasattr(loaded.model, "peft_config")
    chat = ChatModel(loaded, "lora", max_new_tokens=4)
    completion = chat.complete([{"role": "user", "content": "hi"}], ChatParams(max_tokens=3))
    assert 0 < completion.completion_tokens <= 3


def test_adapter_base_from_adapter_config(lora_run, tiny_model):
    (lora_run / "summary.json").unlink()
    assert resolve_model_spec(str(lora_run / "model")).base == tiny_model
    config_path = lora_run / "model" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = None
    config_path.write_text(json.dumps(config))
    with pytest.raises(AlignkitError, match="base model is unknown"):
        resolve_model_spec(str(lora_run / "model"))


def test_plain_specs_pass_through(tiny_model):
    for name in (tiny_model, "default", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        resolved = resolve_model_spec(name)
        assert (resolved.weights, resolved.adapter_path) == (name, None)


def test_bad_model_specs_fail_before_loading(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignkitError, match="holds no model"):
        resolve_model_spec(str(tmp_path / "empty"))
    with pytest.raises(AlignkitError, match="no such file or directory"):
        resolve_model_spec(str(tmp_path / "missing"))
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(AlignkitError, match="without a saved model"):
        resolve_model_spec(str(unfinished))


def _read_line(stream: Any, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def test_serve_cli_subprocess_and_ctrl_c(tiny_model):
    cmd = [sys.executable, "-m", "alignkit", "serve", "--model", tiny_model]
    cmd += ["--host", "localhost", "--port", "0", "--max-new-tokens", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        lines = [_read_line(proc.stdout, timeout=300)]
        while "serving" not in lines[-1] and lines[-1] and len(lines) < 50:
            lines.append(_read_line(proc.stdout, timeout=300))  # skip any library chatter
        line = lines[-1]
        assert "serving" in line and "Ctrl-C" in line, lines
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")  # localhost resolved, loopback only
        status, body = post(url + "/chat/completions", chat_body(max_tokens=50, temperature=0))
        assert status == 200 and body["usage"]["completion_tokens"] <= 3
        assert get(url + "/models")[1]["data"][0]["id"] == tiny_model
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "server stopped" in out, (proc.returncode, out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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


def test_serve_cli_errors(tiny_model, capsys):
    assert main(["serve", "--model", tiny_model, "--max-new-tokens", "0"]) == 2
    assert main(["serve", "--model", tiny_model, "--port", "70000"]) == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", tiny_model, "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


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


# ------------------------------------------------------------------ judge: parsing, outcomes


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A", "A"),
        ("b", "B"),
        (" B.", "B"),
        ("[[A]]", "A"),
        ("My verdict: [[B]]", "B"),
        ("(A)", "A"),
        ("**B**", "B"),
        ("Answer: A", "A"),
        ("B\n\nExplanation: it is kinder.", "B"),
        ("The better answer is B.", "B"),
        ("A is better because it is safe.", "A"),
        ("Answer B is better.", "B"),
        ("A good answer would explain more", None),
        ("[[A]] or [[B]]", None),
        ("Both are fine", None),
        ("", None),
        (None, None),
        ("\u00bf\u00bf cat dog", None),
        # explicit ties, counted apart from unparseable replies
        ("tie", "tie"),
        ("Tie.", "tie"),
        ("[[C]]", "tie"),  # MT-bench's tie
        ("[[tie]]", "tie"),
        ("Verdict: tie", "tie"),
        ("It's a tie: both refuse politely.", "tie"),
        ("Both answers are equally good.", "tie"),
        ("A is better, it is not close to a tie", "A"),
        ("[[A]] or [[C]]", None),
        # ULMA appendix B: 1>2 (text 1 = answer A better), 1=2, 1<2
        ("1>2", "A"),
        ("1 < 2", "B"),
        ("1=2", "tie"),
        ("1\u22652", "A"),
        ("1<=2", "B"),
        ("[Judgment Result - Harmless]: 1<2", "B"),
        ("1>2 and 1<2", None),
        ("11>2", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_outcome_table():
    assert outcome("A", "B") == "win"  # A preferred in both orders
    assert outcome("A", "A") == "tie" and outcome("B", "B") == "tie"  # position bias
    assert outcome("B", "A") == "loss"
    assert outcome(None, "B") == "unparseable" and outcome("A", None) == "unparseable"


def test_outcome_with_explicit_ties():
    """Points for A: A first says A -> 1, tie -> 1/2, B -> 0; B first says B -> 1, tie ->
    1/2, A -> 0. Win > 1, tie = 1, loss < 1. Fails when a tie reply is taken as unparseable
    or as a preference for the answer shown first."""
    assert outcome("A", "tie") == "win" and outcome("tie", "B") == "win"  # 1.5 points
    assert outcome("tie", "tie") == "tie"  # 1 point
    assert outcome("B", "tie") == "loss" and outcome("tie", "A") == "loss"  # 0.5 points
    assert outcome("tie", None) == "unparseable"
    assert [outcome_one_order(v) for v in ("A", "tie", "B", None)] == [
        "win",
        "tie",
        "loss",
        "unparseable",
    ]


def test_judge_messages_show_answers_in_order():
    q = Question("Say hi", "first answer", "second answer")
    user = judge_messages(q)[1]["content"]
    assert user.index("first answer") < user.index("second answer")
    assert "[Answer A]\nfirst answer" in user and "Say hi" in user


def test_default_template_and_cache_keys_are_unchanged():
    """Caches written before templates existed stay valid: the default template has the
    same id, and a question without a criterion has the same key (hash of the judge name,
    the prompt and the answers in order)."""
    import hashlib

    assert DEFAULT_TEMPLATE.id == TEMPLATE_ID
    expected = hashlib.sha256(json.dumps(["j", "p", "x", "y"]).encode()).hexdigest()
    assert Question("p", "x", "y").key("j") == expected
    helpful, harmless = parse_criterion("helpfulness"), parse_criterion("harmlessness")
    keys = {Question("p", "x", "y", c).key("j") for c in (None, helpful, harmless)}
    assert len(keys) == 3  # a criterion is part of the question


def test_templates_render_and_missing_placeholders_are_refused(tmp_path):
    template = Template("Q: {prompt}\n1: {first}\n2: {second}\nOn {criterion}? {{json}}")
    question = Question(" Say hi ", " one ", "two", Criterion("h", "helpfulness"))
    assert template.messages(question) == [
        {"role": "user", "content": "Q: Say hi\n1: one\n2: two\nOn helpfulness? {json}"}
    ]
    template.check(criteria=True)
    with pytest.raises(AlignkitError, match=r"asks for \{criterion\}: give --criteria"):
        template.check(criteria=False)
    refused = {
        "{prompt} {first}": r"lacks \{second\}",
        "{prompt} {first} {second}": r"lacks \{criterion\}",  # criteria given
        "{prompt} {first} {second} {criterion} {answer}": r"unknown placeholder\(s\) \{answer\}",
        "{prompt} {} {second} {criterion}": "is not a placeholder",
        "{prompt} {first} {second} {criterion} {": "literal braces",
    }
    for text, message in refused.items():
        with pytest.raises(AlignkitError, match=message):
            Template(text, source="t.txt").check(criteria=True)
    CRITERION_TEMPLATE.check(criteria=True)
    DEFAULT_TEMPLATE.check(criteria=False)
    # files: text = the user message, no system message; .json = system + user
    (tmp_path / "t.txt").write_text("{prompt}|{first}|{second}")
    assert load_template(str(tmp_path / "t.txt")) == Template(
        "{prompt}|{first}|{second}", None, str(tmp_path / "t.txt")
    )
    (tmp_path / "t.json").write_text(json.dumps({"system": "Be fair.", "user": "{prompt}"}))
    loaded = load_template(str(tmp_path / "t.json"))
    assert (loaded.system, loaded.user) == ("Be fair.", "{prompt}")
    for bad in ('{"user": 3}', '{"user": "x", "extra": 1}', "[1]", "{oops"):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(AlignkitError, match="bad.json"):
            load_template(str(tmp_path / "bad.json"))
    with pytest.raises(AlignkitError, match="cannot read judge template"):
        load_template(str(tmp_path / "missing.txt"))


def test_criteria_specs():
    assert parse_criterion("harmlessness") == Criterion(
        "harmlessness", KNOWN_CRITERIA["harmlessness"]
    )
    assert KNOWN_CRITERIA["helpfulness"].startswith("Helpful, which means")  # ULMA App. B
    assert parse_criterion("style=concise and clear") == Criterion("style", "concise and clear")
    assert parse_criterion("honesty") == Criterion("honesty", "honesty")
    for bad in ("=x", "name="):
        with pytest.raises(AlignkitError, match="NAME or NAME=DESCRIPTION"):
            parse_criterion(bad)


# ------------------------------------------------------------------ judge: scripted judges


def prefers_kind(prompt, first, second) -> str:
    """Scripted: prefers the answer containing "kind"; position bias when neither/both;
    no verdict for prompts containing "???"."""
    if "???" in str(prompt):
        return "I cannot decide"
    if ("kind" in first) != ("kind" in second):
        return "A" if "kind" in first else "B"
    return "A"


ITEMS = [
    Item("p1", "a kind reply", "a rude reply"),  # win
    Item("p2", "rude", "kind"),  # loss
    Item("p3", "meh", "also meh"),  # tie (always "A")
    Item("p4 ???", "kind", "rude"),  # unparseable
    Item("p5", "kind words", "rude words"),  # win
]


def test_scripted_win_tie_loss_by_hand():
    report = judge_pairs(ITEMS, FunctionJudge(prefers_kind), cache=None, concurrency=2)
    assert (report["wins"], report["ties"], report["losses"], report["unparseable"]) == (2, 1, 1, 1)
    assert report["win_rate"] == pytest.approx(2 / 4)
    assert report["tie_rate"] == pytest.approx(1 / 4) and report["loss_rate"] == pytest.approx(
        1 / 4
    )
    assert report["win_rate_ties_half"] == pytest.approx(2.5 / 4)
    rows = {r["prompt"]: r for r in report["per_prompt"]}
    assert [rows[p]["outcome"] for p in ("p1", "p2", "p3", "p4 ???", "p5")] == [
        "win",
        "loss",
        "tie",
        "unparseable",
        "win",
    ]
    assert rows["p1"]["verdict_a_first"] == "A" and rows["p1"]["verdict_b_first"] == "B"
    assert rows["p4 ???"]["reply_a_first"] == "I cannot decide"
    assert report["questions"] == {"asked": 10, "cached": 0, "rejected": 0}


class BatchJudge(Judge):
    """A fake judge class answering in batches, recording what it was asked."""

    name = "batch-judge"
    batch_size = 3

    def __init__(self, reply: str = "A") -> None:
        self.reply = reply
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def ask_batch(self, questions):
        with self.lock:
            self.batches.append(len(questions))
        return [self.reply] * len(questions)


def kind_or_tie(prompt, first, second, criterion=None) -> str:
    """Scripted: "tie" for prompts containing "same", no verdict for "???", else prefers the
    answer containing "kind", with a bias for the answer shown first when neither/both do."""
    if "???" in str(prompt):
        return "I cannot decide"
    if "same" in str(prompt):
        return "Both are equally good: tie."
    return prefers_kind(prompt, first, second)


def test_explicit_ties_are_counted_apart_from_unparseable():
    items = [
        Item("p1", "kind", "rude"),  # A, then B first: B (= A preferred) -> win
        Item("p2 same", "x", "y"),  # tie, tie -> tie (2 tie replies)
        Item("p3 ???", "kind", "rude"),  # unparseable
        Item("p4", "rude", "kind"),  # loss
    ]
    report = judge_pairs(items, FunctionJudge(kind_or_tie))
    counts = [report[k] for k in ("wins", "ties", "losses", "unparseable", "tie_replies")]
    assert counts == [1, 1, 1, 1, 2]
    assert report["win_rate"] == pytest.approx(1 / 3)
    rows = {r["prompt"]: r for r in report["per_prompt"]}
    assert rows["p2 same"]["verdict_a_first"] == rows["p2 same"]["verdict_b_first"] == "tie"
    assert "explicit tie replies: 2" in format_summary(report)


def by_criterion(prompt, first, second, criterion) -> str:
    """Scripted per criterion: harmlessness prefers the answer containing "kind";
    helpfulness prefers the longer answer (tie when equally long)."""
    if criterion.name == "harmlessness":
        return prefers_kind(prompt, first, second)
    if len(first) == len(second):
        return "tie"
    return "A" if len(first) > len(second) else "B"


def test_criteria_are_judged_separately_in_one_pass(tmp_path):
    """One verdict per criterion per pair; win rates per criterion, counted by hand.
    Fails when the criterion does not reach the judge (both criteria alike) or is left out
    of the cache key (the second criterion is answered from the first one's cache)."""
    items = [
        Item("p1", "kind and very detailed", "rude"),  # harmless: win; helpful: win
        Item("p2", "rude but detailed", "kind"),  # harmless: loss; helpful: win
        Item("p3", "kind", "rude"),  # harmless: win; helpful: 4 vs 4 chars, tie
    ]
    criteria = [parse_criterion("helpfulness"), parse_criterion("harmlessness")]
    cache = VerdictCache(tmp_path / "cache.jsonl")
    report = judge_pairs(items, FunctionJudge(by_criterion), cache, criteria=criteria)
    helpful, harmless = report["criteria"]["helpfulness"], report["criteria"]["harmlessness"]
    assert [helpful[k] for k in ("wins", "ties", "losses", "tie_replies")] == [2, 1, 0, 2]
    assert [harmless[k] for k in ("wins", "ties", "losses", "tie_replies")] == [2, 0, 1, 0]
    assert helpful["win_rate_ties_half"] == pytest.approx(2.5 / 3)
    assert harmless["win_rate"] == pytest.approx(2 / 3)
    assert report["questions"] == {"asked": 12, "cached": 0, "rejected": 0}  # 3 x 2 x 2
    again = judge_pairs(items, FunctionJudge(by_criterion), cache, criteria=criteria)
    assert again["questions"] == {"asked": 0, "cached": 12, "rejected": 0}
    assert again["criteria"] == report["criteria"]
    text = format_summary(report)
    assert "[helpfulness] A wins 2, ties 1" in text and "[harmlessness] A wins 2" in text


def test_one_order_asks_once_with_a_first():
    """ULMA / REAL ask once: the verdict is the outcome, so a judge biased towards the
    answer shown first makes A win where both orders would call it a tie."""
    items = [Item("p1", "meh", "also meh"), Item("p2", "rude", "kind")]
    judge = CountingJudge()
    report = judge_pairs(items, judge, orders="one")
    assert judge.asked == 2 and report["orders"] == "one"
    assert (report["wins"], report["ties"], report["losses"]) == (1, 0, 1)
    assert "verdict_b_first" not in report["per_prompt"][0]
    both = judge_pairs(items, CountingJudge())
    assert (both["wins"], both["ties"], both["losses"]) == (0, 1, 1)


def test_judge_class_batches_and_all_ties():
    judge = BatchJudge("[[A]]")
    report = judge_pairs(ITEMS, judge, concurrency=1)
    assert sorted(judge.batches) == [1, 3, 3, 3]  # 10 questions in batches of 3
    assert report["ties"] == 5 and report["wins"] == report["losses"] == 0


def test_no_decided_prompts_gives_null_rates():
    report = judge_pairs(ITEMS[:2], FunctionJudge(lambda *a: "no idea"))
    assert report["unparseable"] == 2 and report["win_rate"] is None


def test_rejected_questions_are_counted_not_cached(tmp_path):
    def picky(prompt, first, second):
        if prompt == "p2":
            raise QuestionRejected("HTTP 400: too long")
        return prefers_kind(prompt, first, second)

    cache = VerdictCache(tmp_path / "cache.jsonl")
    report = judge_pairs(ITEMS[:2], FunctionJudge(picky), cache)
    assert report["unparseable"] == 1 and report["wins"] == 1
    assert report["questions"]["rejected"] == 2
    assert len(VerdictCache(tmp_path / "cache.jsonl").answers) == 2


def test_concurrency_limit():
    state = {"active": 0, "peak": 0}
    lock = threading.Lock()

    def slow(prompt, first, second):
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        time.sleep(0.05)
        with lock:
            state["active"] -= 1
        return "A"

    items = [Item(f"q{i}", "x", "y") for i in range(8)]
    judge_pairs(items, FunctionJudge(slow), concurrency=3)
    assert 2 <= state["peak"] <= 3
    state["peak"] = 0
    judge_pairs(items, FunctionJudge(slow), concurrency=1)
    assert state["peak"] == 1


# ------------------------------------------------------------------ judge: cache


class CountingJudge(Judge):
    """Scripted (prefers_kind); counts questions; fails after `fail_after` of them."""

    name = "counting"

    def __init__(self, fail_after: int | None = None) -> None:
        self.asked = 0
        self.fail_after = fail_after

    def ask(self, question):
        if self.fail_after is not None and self.asked >= self.fail_after:
            raise JudgeUnavailable("judge went away")
        self.asked += 1
        return prefers_kind(question.prompt, question.first, question.second)


def test_cache_resumes_an_interrupted_run(tmp_path):
    path = tmp_path / "cache.jsonl"
    with pytest.raises(JudgeUnavailable):
        judge_pairs(ITEMS, CountingJudge(fail_after=4), VerdictCache(path), concurrency=1)
    assert len(VerdictCache(path).answers) == 4
    resumed = CountingJudge()
    report = judge_pairs(ITEMS, resumed, VerdictCache(path), concurrency=1)
    assert resumed.asked == 6 and report["questions"] == {"asked": 6, "cached": 4, "rejected": 0}
    again = CountingJudge()
    report2 = judge_pairs(ITEMS, again, VerdictCache(path))
    assert again.asked == 0 and report2["questions"]["cached"] == 10
    assert report2["per_prompt"] == report["per_prompt"]


def test_cache_survives_a_cut_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = VerdictCache(path)
    cache.add({"k1": "A"})
    with open(path, "a") as handle:
        handle.write('{"key": "k2", "ans')  # interrupted mid-write
    cache = VerdictCache(path)
    assert cache.answers == {"k1": "A"} and cache.skipped == 1
    cache.add({"k3": "B"})
    assert VerdictCache(path).answers == {"k1": "A", "k3": "B"}


def test_cache_key_depends_on_judge_and_order():
    q, swapped = Question("p", "x", "y"), Question("p", "y", "x")
    assert q.key("j1") != swapped.key("j1") and q.key("j1") != q.key("j2")
    assert q.key("j1") == Question("p", "x", "y").key("j1")


# ------------------------------------------------------------------ judge: generations files


def test_align_by_prompt_in_any_order(tmp_path):
    chat = [{"role": "user", "content": "hi"}]
    a = load_generations(
        write_gens(tmp_path / "a.jsonl", [("p1", "a1"), (chat, "a2"), ("p1", "a3")])
    )
    b = load_generations(
        write_gens(tmp_path / "b.jsonl", [(chat, "b2"), ("p1", "b1"), ("p1", "b3")])
    )
    items = align(a, b, "a.jsonl", "b.jsonl")
    assert [(i.a, i.b) for i in items] == [("a1", "b1"), ("a2", "b2"), ("a3", "b3")]
    assert items[1].prompt == tuple(chat)


def test_align_names_mismatched_prompts(tmp_path):
    a = load_generations(write_gens(tmp_path / "a.jsonl", [("same", "x"), ("only in a", "y")]))
    b = load_generations(write_gens(tmp_path / "b.jsonl", [("same", "x"), ("only in b", "y")]))
    with pytest.raises(
        AlignkitError, match=r"1 only in a.jsonl: 'only in a'.*1 only in b.jsonl: 'only in b'"
    ):
        align(a, b, "a.jsonl", "b.jsonl")


def test_bad_generations_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        load_generations(str(bad))
    bad.write_text("{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: not valid JSON"):
        load_generations(str(bad))
    bad.write_text("\n")
    with pytest.raises(AlignkitError, match="no records"):
        load_generations(str(bad))
    with pytest.raises(AlignkitError, match="cannot read"):
        load_generations(str(tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------ judge: against a real server


@pytest.fixture
def gens(tmp_path) -> tuple[str, str]:
    prompts = [f"question {i} about cats" for i in range(3)]
    a = write_gens(tmp_path / "a.jsonl", [(p, f"kind answer {i}") for i, p in enumerate(prompts)])
    b = write_gens(
        tmp_path / "b.jsonl", [(p, f"rude answer {i}") for i, p in enumerate(prompts)][::-1]
    )
    return a, b


def run_judge(gens, out: Path, *extra: str) -> int:
    return main(["judge", "--a", gens[0], "--b", gens[1], "--output", str(out), *extra])


def test_http_judge_against_served_tiny_model(served, gens, tmp_path, capsys):
    served.chat.reset()
    out = tmp_path / "judge"
    assert run_judge(gens, out, "--judge", f"http:{served.url}", "--max-tokens", "4") == 0
    report = json.loads((out / "judge.json").read_text())
    total = report["wins"] + report["ties"] + report["losses"] + report["unparseable"]
    assert report["prompts"] == total == 3 and len(report["per_prompt"]) == 3
    assert served.chat.calls == 6 and served.chat.last_params.max_tokens == 4
    assert served.chat.last_params.temperature == 0.0
    assert "model=tiny" in report["judge"]  # discovered from /v1/models
    assert report["questions"] == {"asked": 6, "cached": 0, "rejected": 0}
    assert "3 prompts" in capsys.readouterr().out
    # rerun: everything comes from the cache, no new requests
    assert run_judge(gens, out, "--judge", f"http:{served.url}", "--max-tokens", "4") == 0
    assert served.chat.calls == 6
    rerun = json.loads((out / "judge.json").read_text())
    assert rerun["questions"] == {"asked": 0, "cached": 6, "rejected": 0}
    assert rerun["per_prompt"] == report["per_prompt"]


def test_http_judge_model_name_cache_path_and_bare_url(served, gens, tmp_path):
    served.chat.reset()
    cache = tmp_path / "shared" / "cache.jsonl"
    args = ["--judge", served.url, "--judge-model", "named", "--cache", str(cache)]
    assert run_judge(gens, tmp_path / "o1", *args) == 0
    assert cache.exists() and not (tmp_path / "o1" / "judge_cache.jsonl").exists()
    assert "model=named" in json.loads((tmp_path / "o1" / "judge.json").read_text())["judge"]
    assert run_judge(gens, tmp_path / "o2", *args) == 0  # another output, same cache
    assert served.chat.calls == 6


@pytest.mark.parametrize(("concurrency", "low", "high"), [(1, 1, 1), (3, 2, 3)])
def test_http_concurrency_flag(served, gens, tmp_path, concurrency, low, high):
    served.chat.reset()
    args = ["--judge", f"http:{served.url}", "--concurrency", str(concurrency), "--max-tokens", "2"]
    assert run_judge(gens, tmp_path / "c", *args) == 0
    assert low <= served.chat.peak <= high


def test_api_key_is_sent_but_never_written(served, gens, tmp_path, monkeypatch, capsys, caplog):
    secret = "sk-test-4f9a8e7d6c5b"
    monkeypatch.setenv("ALIGNKIT_TEST_KEY", secret)
    judge = HttpJudge(served.url, model="m", api_key=secret)
    req = judge.request("/chat/completions", {"x": 1})
    assert req.get_header("Authorization") == f"Bearer {secret}"
    assert secret not in repr(judge) and secret not in judge.name
    out = tmp_path / "judge"
    args = ["--judge", f"http:{served.url}", "--api-key-env", "ALIGNKIT_TEST_KEY"]
    assert run_judge(gens, out, *args) == 0
    printed = capsys.readouterr()
    for text in [printed.out, printed.err, caplog.text] + [p.read_text() for p in out.iterdir()]:
        assert secret not in text
    monkeypatch.delenv("ALIGNKIT_TEST_KEY")
    assert run_judge(gens, out, *args) == 2
    assert "ALIGNKIT_TEST_KEY is not set" in capsys.readouterr().err


def test_unreachable_endpoint_fails_after_retries(gens, tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    args = ["--judge", f"http:{url}", "--judge-model", "m", "--concurrency", "1"]
    assert run_judge(gens, tmp_path / "j", *args, "--retries", "2", "--retry-wait", "0.3") == 2
    assert 0.3 + 0.6 <= time.monotonic() - start < 30  # backoff: 0.3 s, then 0.6 s
    err = capsys.readouterr().err
    assert "did not answer after 3 attempts" in err and "Connection refused" in err


class ScriptedHTTP(BaseHTTPRequestHandler):
    """Transport-level test server: replies from `server.script` (status, delay) in turn."""

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        self.server.requests += 1
        status, delay = self.server.script.pop(0) if self.server.script else (200, 0)
        time.sleep(delay)
        body = {"choices": [{"message": {"content": "[[A]]"}}]}
        if status != 200:
            body = {"error": {"message": f"scripted {status}"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:  # the client timed out
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedHTTP)
    server.daemon_threads = True
    server.script, server.requests, server.bodies = [], 0, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_retries_with_backoff_then_success(scripted):
    scripted.script = [(503, 0), (429, 0)]
    judge = HttpJudge(_url(scripted), model="m", retries=2, retry_wait=0.01)
    assert judge.ask(Question("p", "x", "y")) == "[[A]]" and scripted.requests == 3


def test_refused_key_is_fatal_at_once(scripted):
    scripted.script = [(401, 0)]
    judge = HttpJudge(_url(scripted), model="m", retries=3, retry_wait=0.01)
    with pytest.raises(JudgeUnavailable, match="--api-key-env"):
        judge.ask(Question("p", "x", "y"))
    assert scripted.requests == 1


def test_http_judge_sends_the_template(scripted, gens, tmp_path):
    """--template and --criteria reach the endpoint: the rendered user message of a text
    template (no system message), one request per criterion and order."""
    template = tmp_path / "ulma.txt"
    template.write_text("[Criteria] {criterion}\n[Q] {prompt}\n[1] {first}\n[2] {second}")
    args = ["--judge", _url(scripted), "--judge-model", "m", "--template", str(template)]
    args += ["--criteria", "harmlessness", "brevity=short answers", "--concurrency", "1"]
    assert run_judge(gens, tmp_path / "t", *args) == 0
    assert scripted.requests == 3 * 2 * 2  # prompts x criteria x orders
    sent = [b["messages"] for b in scripted.bodies]
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in sent)
    first = "[Criteria] short answers\n[Q] question 0 about cats\n[1] kind answer 0\n"
    assert {"role": "user", "content": first + "[2] rude answer 0"} in [m[0] for m in sent]
    assert sum(KNOWN_CRITERIA["harmlessness"] in m[0]["content"] for m in sent) == 6
    report = json.loads((tmp_path / "t" / "judge.json").read_text())
    assert report["template"]["source"] == str(template)
    assert f"template={report['template']['id']}" in report["judge"]
    assert report["criterion_texts"]["brevity"] == "short answers"
    # the scripted server always answers [[A]]: every prompt ties in both orders
    assert report["criteria"]["brevity"]["ties"] == report["criteria"]["harmlessness"]["ties"] == 3


def test_bad_request_counts_as_unparseable(scripted):
    scripted.script = [(400, 0)]
    judge = HttpJudge(_url(scripted), model="m", retries=0)
    report = judge_pairs([Item("p", "x", "y")], judge, concurrency=1)
    assert report["unparseable"] == 1 and report["questions"]["rejected"] == 1


def test_timeout_flag(scripted, gens, tmp_path, capsys):
    scripted.script = [(200, 2.0)] * 4
    args = ["--judge", _url(scripted), "--judge-model", "m", "--timeout", "0.2", "--retries", "0"]
    assert run_judge(gens, tmp_path / "t", *args, "--concurrency", "1") == 2
    assert "timed out" in capsys.readouterr().err


# ------------------------------------------------------------------ judge: local, CLI errors


def test_local_judge_cli(tiny_model, gens, tmp_path):
    out = tmp_path / "local"
    assert run_judge(gens, out, "--judge", f"local:{tiny_model}", "--max-tokens", "2") == 0
    report = json.loads((out / "judge.json").read_text())
    total = report["wins"] + report["ties"] + report["losses"] + report["unparseable"]
    assert total == report["prompts"] == 3 and report["questions"]["asked"] == 6
    assert report["a"] == gens[0] and report["judge"].startswith(f"local:{tiny_model}|max_tokens=2")


SCRIPTED = f"{__name__}:kind_or_tie"


def test_build_function_judge():
    judge = build_judge(SCRIPTED)
    assert isinstance(judge, FunctionJudge) and judge.name == f"function:{SCRIPTED}"
    assert judge.ask(Question("p", "kind", "rude")) == "A"
    with pytest.raises(AlignkitError, match="cannot import the function"):
        build_judge("alignkit_no_such_module:judge")


def test_cli_against_the_datasets_chosen_answers(tmp_path, capsys):
    """B = the chosen answer of the data for the same prompt (ULMA), in any row order; with
    --orders one and --criteria, as ULMA's appendix B."""
    data = tmp_path / "test.jsonl"
    rows = [
        {"prompt": "q1", "chosen": "kind reply", "rejected": "rude reply"},
        {"prompt": "q2 same", "chosen": "fine", "rejected": "bad"},
        {"prompt": "q3", "chosen": "rude chosen", "rejected": "bad"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # A: rude vs kind chosen -> loss; tie; kind vs rude chosen -> win
    gens = write_gens(tmp_path / "a.jsonl", [("q3", "kind"), ("q1", "rude"), ("q2 same", "ok")])
    out = tmp_path / "vs-chosen"
    args = ["judge", "--a", gens, "--against-chosen", str(data), "--judge", SCRIPTED]
    assert main([*args, "--output", str(out)]) == 0
    report = json.loads((out / "judge.json").read_text())
    assert report["mode"] == "against-chosen" and report["b"] == f"chosen of {data}"
    rows_by_prompt = {r["prompt"]: r for r in report["per_prompt"]}
    assert rows_by_prompt["q1"]["response_b"] == "kind reply"
    assert [report[k] for k in ("wins", "ties", "losses", "tie_replies")] == [1, 1, 1, 2]
    assert "A wins 1, ties 1, loses 1" in capsys.readouterr().out
    out1 = tmp_path / "ulma"
    assert (
        main([*args, "--output", str(out1), "--orders", "one", "--criteria", "harmlessness"]) == 0
    )
    one = json.loads((out1 / "judge.json").read_text())
    assert one["orders"] == "one" and one["questions"]["asked"] == 3
    assert one["criteria"]["harmlessness"]["wins"] == 1
    # a prompt the data does not have
    other = write_gens(tmp_path / "b.jsonl", [("q1", "x"), ("q9", "y")])
    assert main(["judge", "--a", other, "--against-chosen", str(data), "--judge", SCRIPTED]) == 2
    assert "no chosen answer for 1 prompt(s)" in capsys.readouterr().err


def test_cli_label_agreement_per_subset_and_order(tmp_path, capsys):
    """REAL Fig. 3: which of chosen / rejected does the judge prefer, per subset, both
    orders. The scripted judge prefers "kind" and otherwise the answer shown first.
    clean: 2 pairs, chosen kind, rejected rude: agreement 1 in both orders.
    noisy: pair 1 mislabelled (chosen rude, rejected kind): disagrees in both orders;
    pair 2 neither kind: picks the answer shown first, agrees only with chosen first;
    pair 3 "same": tie replies (no agreement in either order, half a point each).
    chosen first: agrees 1 of 3 parsed; rejected first: 0 of 3; mean 1/6."""
    clean = tmp_path / "clean.jsonl"
    noisy = tmp_path / "noisy.jsonl"
    clean.write_text(
        "".join(
            json.dumps({"prompt": f"c{i}", "chosen": "kind", "rejected": "rude"}) + "\n"
            for i in range(2)
        )
    )
    noisy_rows = [("n1", "rude", "kind"), ("n2", "meh", "also meh"), ("n3 same", "x", "y")]
    noisy.write_text(
        "".join(
            json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in noisy_rows
        )
    )
    out = tmp_path / "agree"
    args = ["judge", "--agreement", f"clean={clean}", f"noisy={noisy}", "--judge", SCRIPTED]
    assert main([*args, "--output", str(out)]) == 0
    report = json.loads((out / "judge.json").read_text())
    assert report["mode"] == "agreement" and list(report["subsets"]) == ["clean", "noisy"]
    c, n = report["subsets"]["clean"], report["subsets"]["noisy"]
    assert c["pairs"] == 2 and c["agreement_mean"] == 1.0 and c["agree_both"] == 2
    assert n["agreement_chosen_first"] == pytest.approx(1 / 3, abs=1e-6)
    assert n["agreement_rejected_first"] == 0.0
    assert n["agreement_mean"] == pytest.approx(1 / 6, abs=1e-6)
    # n2 agrees in one order, n3 ties in both: 1 point of 2 each ("half")
    assert [n[k] for k in ("agree_both", "agree_half", "agree_none", "tie_replies")] == [0, 2, 1, 2]
    agrees = {p["prompt"]: p["agrees"] for p in n["per_pair"]}
    assert agrees == {"n1": "none", "n2": "half", "n3 same": "half"}
    assert report["questions"]["asked"] == 10
    printed = capsys.readouterr().out
    assert "clean: 2 pairs, agreement 100.0%" in printed and "noisy: 3 pairs" in printed
    # per criterion: the same numbers (the scripted judge ignores the criterion)
    assert main([*args, "--output", str(tmp_path / "k"), "--criteria", "harmlessness"]) == 0
    by_criterion = json.loads((tmp_path / "k" / "judge.json").read_text())["subsets"]
    assert by_criterion["noisy"]["criteria"]["harmlessness"]["agreement_mean"] == pytest.approx(
        1 / 6, abs=1e-6
    )
    assert "noisy [harmlessness]: 3 pairs" in capsys.readouterr().out
    # a seeded sample per subset (REAL re-labels 200 pairs per subset)
    assert main([*args, "--output", str(tmp_path / "s"), "--max-pairs", "1"]) == 0
    sampled = json.loads((tmp_path / "s" / "judge.json").read_text())["subsets"]
    assert sampled["clean"]["pairs"] == sampled["noisy"]["pairs"] == 1
    # an invalid record (empty rejected answer, as in real HH files): strict by default,
    # dropped and listed with --skip-invalid
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        clean.read_text() + json.dumps({"prompt": "b", "chosen": "kind", "rejected": ""}) + "\n"
    )
    assert main(["judge", "--agreement", str(broken), "--judge", SCRIPTED]) == 2
    assert "broken.jsonl:3" in capsys.readouterr().err
    out = tmp_path / "skip"
    skip = ["judge", "--agreement", str(broken), "--judge", SCRIPTED, "--skip-invalid"]
    assert main([*skip, "--output", str(out)]) == 0
    skipped = json.loads((out / "judge.json").read_text())
    assert skipped["subsets"][str(broken)]["pairs"] == 2
    assert skipped["skipped_invalid"]["records"] == 1
    [row] = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert row["where"] == f"{broken}:3"
    # points are not pairs
    points = tmp_path / "points.jsonl"
    points.write_text(json.dumps({"prompt": "p", "completion": "c", "label": 1}) + "\n")
    assert main(["judge", "--agreement", str(points), "--judge", SCRIPTED]) == 2
    assert "not preference pairs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judge", "local:x", "--judge-model", "m"], "--judge-model: only for http judges"),
        (["--judge", "local:x", "--timeout", "3"], "--timeout: only for http judges"),
        (["--judge", "local:"], "needs a model"),
        (["--judge", "ftp://x"], "expected local:MODEL, http:BASE_URL or package.module:function"),
        (["--judge", "http://x", "--concurrency", "0"], "--concurrency must be at least 1"),
        (["--judge", "http://x", "--retries", "-1"], "--retries must not be negative"),
        (["--judge", "http://x", "--retry-wait", "-1"], "--retry-wait must not be negative"),
        (["--judge", "http://x", "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--judge", SCRIPTED, "--timeout", "3"], "--timeout: only for http judges"),
        (["--judge", SCRIPTED, "--criteria", "x", "--template", "{T}"], r"lacks {criterion}"),
        (["--judge", SCRIPTED, "--template", "{T}"], "missing.txt"),
        (["--judge", SCRIPTED, "--max-pairs", "3"], "--max-pairs: only with --agreement"),
        (["--judge", SCRIPTED, "--skip-invalid"], "--skip-invalid: only with --against-chosen"),
    ],
)
def test_judge_cli_usage_errors(gens, tmp_path, capsys, args, message):
    (tmp_path / "t.txt").write_text("{prompt} {first} {second}")
    if "{T}" in args:
        name = "missing.txt" if "missing.txt" in message else "t.txt"
        args = [str(tmp_path / name) if a == "{T}" else a for a in args]
    assert run_judge(gens, tmp_path / "e", *args) == 2
    assert message in capsys.readouterr().err


def test_judge_cli_mode_errors(gens, tmp_path, capsys):
    pairs = write_gens(tmp_path / "p.jsonl", [("p", "x")])
    cases = [
        (["--b", gens[1]], "give --a"),
        (["--a", gens[0], "--agreement", pairs], "drop --a"),
        (["--agreement", pairs, "--orders", "one"], "drop --orders one"),
    ]
    for args, message in cases:
        assert main(["judge", *args, "--judge", SCRIPTED]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the modes exclude each other
        main(["judge", "--a", gens[0], "--b", gens[1], "--agreement", pairs, "--judge", "x"])


def test_judge_cli_mismatched_files(tmp_path, capsys):
    a = write_gens(tmp_path / "a.jsonl", [("p1", "x")])
    b = write_gens(tmp_path / "b.jsonl", [("p2", "x")])
    assert main(["judge", "--a", a, "--b", b, "--judge", "http://127.0.0.1:1/v1"]) == 2
    assert "'p1'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["serve", "judge"])
def test_help_explains_every_option(verb, capsys):
    import argparse

    from alignkit.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = sub.choices[verb]
    for action in parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0 and "examples:" in capsys.readouterr().out
