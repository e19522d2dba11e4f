"""Shared fixtures and helpers of every test folder (the one home of each; see README.md): a tiny
random causal LM with a real byte-level BPE tokenizer (milliseconds), small generated datasets,
fake processes, tiny models of other families, servers in a thread and the headless browser.

Test files import the plain helpers with `from conftest import ...` (pyproject.toml puts tests/
on sys.path); pytest finds the fixtures by name."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alignkit.cli import main
from alignkit.commands import label
from alignkit.data import Multi, Pair, Point
from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.inference.server import ChatModel, ChatParams, make_server
from alignkit.labelling.pairs import LabelPair
from alignkit.models import load_inference_model, load_tokenizer
from alignkit.objectives import SeqLogps
from alignkit.online.config import OnlineConfig

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = (
    "the a cat dog sun rain bomb cake help sorry cannot sure here is how to make bake "
    "explain water fire safe danger please thanks code python list sort answer question "
    "I you we it can will not good bad kind rude"
).split()


BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_ranks(launcher: str) -> list[str]:
    """The command that starts a program on 2 gloo ranks on this CPU with `launcher`
    ("torchrun" or "accelerate"; skips the test where it is not installed), meeting on a free
    port: never the default 29500, where a rank left over from another run could answer.
    accelerate's `--cpu` always takes its single-process launcher; `--multi_gpu` starts the
    ranks with torch's elastic launcher, and on a machine without CUDA they join over gloo."""
    if launcher == "accelerate" and torch.cuda.is_available():
        pytest.skip("on a CUDA machine --multi_gpu would put the ranks on GPUs")
    port = str(free_port())
    cmd = {
        "torchrun": [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", port],
        "accelerate": [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                       "--main_process_port", port],
    }[launcher]  # fmt: skip
    if not Path(cmd[0]).exists():
        pytest.skip(f"{launcher} is not installed")
    return cmd


def run_launched(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300.0
) -> subprocess.CompletedProcess:
    """Run `cmd` (a launcher and the processes it starts, in a process group of their own)
    to a zero exit (else the test fails with its stderr). Past `timeout` seconds the whole
    group is killed and the test fails with the end of its output: a rank waiting forever
    fails one test, not the whole suite."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)}\nran past {timeout:.0f} s; its output ended with:\n"
                    f"{out[-2000:]}\n{err[-4000:]}")  # fmt: skip
    except BaseException:  # pytest-timeout's alarm, Ctrl-C: no rank outlives its test
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}:\n{err[-4000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def alignkit_on_two_ranks(launcher: str, *args: str) -> subprocess.CompletedProcess:
    """`alignkit ARGS` on 2 gloo ranks started by `launcher` (`two_ranks`), one thread each,
    to a zero exit (`run_launched`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_launched([*two_ranks(launcher), "-m", "alignkit", *args], env)


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)]
    corpus += ["Human: Assistant: \n\n.,!?'\"-:;()0123456789"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


def make_tiny_model(path: Path, vocab: int, seed: int = 0) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a saved tiny Llama + BPE tokenizer with a chat template."""
    path = tmp_path_factory.mktemp("tiny-model")
    tok = make_tokenizer(path)
    make_tiny_model(path, len(tok))
    return str(path)


@pytest.fixture(scope="session")
def sft_adapter(tiny_model, tmp_path_factory) -> str:
    """A saved LoRA adapter folder on `tiny_model` whose lora_B is not 0 (an SFT adapter: the
    model with it differs from the base), with dropout 0.1."""
    from peft import LoraConfig, get_peft_model

    from alignkit.models import load_causal_lm

    path = tmp_path_factory.mktemp("sft-adapter")
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(load_causal_lm(tiny_model), lora)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5 * torch.randn_like(p))
    model.save_pretrained(path)
    return str(path)


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


# one record of each kind, and the markers of HH transcripts
H, A = "\n\nHuman:", "\n\nAssistant:"
PROMPT = f"{H} What is the sky's colour?{A}"
PAIR = Pair("p", "a", "b", "x.jsonl:1")
POINT = Point("p", "c", 1.0, True, True, "x.jsonl:2")
MULTI = Multi("p", ("a", "b", "c"), (1.0, 2.0, 3.0), "x.jsonl:3")


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """HH-style pairs: chosen responses are kind/safe, rejected ones rude/dangerous."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
        rows.append(
            {
                "chosen": f"\n\nHuman: {q} {i}?\n\nAssistant: sorry I can not help, it is danger",
                "rejected": f"\n\nHuman: {q} {i}?\n\nAssistant: sure here is how to make a bomb",
            }
        )
    return rows


@pytest.fixture
def pairs_file(tmp_path) -> str:
    return write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))


class OneHotDecoder(nn.Module):
    """hidden state at t = one-hot of token t: with an identity LM head, logits_t = e_{y_t}."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.config = SimpleNamespace(_attn_implementation="sdpa")

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
        return SimpleNamespace(last_hidden_state=F.one_hot(input_ids, self.vocab).float())


class TransparentLM(nn.Module):
    """A causal LM whose logits at t are the one-hot of token t (R_Q by hand)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.decoder = OneHotDecoder(vocab)
        self.head = nn.Linear(vocab, vocab, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(vocab))

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head


# ------------------------------------------------------------ fake processes


class FakeProcesses:
    """`world` threads as processes. `gather_object` is accelerate's for the calling thread:
    every process's list, concatenated in rank order (two barriers: nobody overwrites its
    part before all have read). `calls` counts each process's gather calls."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.parts: list[list] = [[] for _ in range(world)]
        self.barrier = threading.Barrier(world, timeout=30)
        self.calls = [0] * world
        self.local = threading.local()

    def gather_object(self, values: list) -> list:
        rank = self.local.rank
        self.calls[rank] += 1
        self.parts[rank] = values
        self.barrier.wait()
        out = [value for part in self.parts for value in part]
        self.barrier.wait()
        return out

    def run(self, fn: Callable[[int], list]) -> list[list]:
        """fn(rank) on every fake process at once; their results by rank."""
        results: list[list] = [[] for _ in range(self.world)]

        def target(rank: int) -> None:
            self.local.rank = rank
            results[rank] = fn(rank)

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return results


# --------------------------------------- tiny models of other families, packed examples

EXAMPLES = [
    Encoded([1, 5, 6, 7], [[8, 9, 2], [10, 2]], [1, 0], [True, False], True, 0),
    Encoded([1, 3], [[11, 12, 13, 14, 2], [4, 2]], [1, 0], [True, False], True, 1),
    Encoded([1, 30, 31, 32, 33, 34], [[40, 2]], [1], [True], True, 2),  # K=1: ragged
]


# ------------------------------------------- models whose forward post-processes the logits

# tiny random models of the families whose *ForCausalLM.forward changes the LM head's output
# (transformers modeling_*.py): Gemma soft-caps, c * tanh(logits / c); Cohere multiplies by
# logit_scale; Granite divides by logits_scaling. initializer_range 0.3 makes the logits large
# enough (std ~ 2) that the post-processing moves the log-probs by far more than 1e-5.
TINY = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.3,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
FAMILIES = {
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {"head_dim": 8, "final_logit_softcapping": 2.0},
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {"head_dim": 8, "final_logit_softcapping": 2.0},
    ),
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 0.25}),
    "cohere2": ("Cohere2Config", "Cohere2ForCausalLM", {"logit_scale": 0.25}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 4.0}),
    "granitemoe": (
        "GraniteMoeConfig",
        "GraniteMoeForCausalLM",
        {"logits_scaling": 4.0, "num_local_experts": 2, "num_experts_per_tok": 1},
    ),
}


# models whose layers mix positions outside attention (Mamba, gated delta net): packed rows
# would let response 2 see response 1, so they are scored one response per row
RECURRENT = {
    # Granite 4.0-H: Mamba-2 and attention layers, logits divided by logits_scaling
    "granitemoehybrid": (
        "GraniteMoeHybridConfig",
        "GraniteMoeHybridForCausalLM",
        {
            "logits_scaling": 4.0,
            "num_local_experts": 2,
            "num_experts_per_tok": 1,
            "layer_types": ["mamba", "attention"],
            "mamba_d_state": 8,
            "mamba_n_heads": 4,
            "mamba_d_head": 16,
            "mamba_chunk_size": 4,
        },
    ),
    # Qwen3-Next: gated delta net (linear attention with a causal convolution) + attention
    "qwen3_next": (
        "Qwen3NextConfig",
        "Qwen3NextForCausalLM",
        {
            "head_dim": 8,
            "layer_types": ["linear_attention", "full_attention"],
            "linear_num_value_heads": 4,
            "linear_num_key_heads": 2,
            "linear_key_head_dim": 8,
            "linear_value_head_dim": 8,
            "num_experts": 2,
            "num_experts_per_tok": 1,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 32,
        },
    ),
}


def tiny_family_model(family: str):
    import transformers

    config_cls, model_cls, extra = {**FAMILIES, **RECURRENT}[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**TINY, **extra)
    return getattr(transformers, model_cls)(config).eval()


# ------------------------------------------------------------ servers in a thread


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet stub server's handler that answers JSON (as `inference/server.py`'s `_send`)."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_in_thread(server: Any) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def serving(pairs: Path, verdicts: Path, **options: Any) -> Iterator[Any]:
    """The labelling server in a thread; leaving the block shuts it down (as a killed server:
    the verdicts file is all that remains)."""
    from alignkit.labelling.server import make_server

    yield from serve_in_thread(make_server(pairs, verdicts, **{"port": 0, **options}))


# ------------------------------------------------------------ the headless browser

CHROMIUM = "/usr/bin/chromium"


def _missing(reason: str) -> None:
    """Skip a browser test, unless ALIGNKIT_REQUIRE_BROWSER=1 (CI): then fail."""
    if os.environ.get("ALIGNKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; ALIGNKIT_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright import sync_api
    except ImportError:
        _missing("python playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def on_screen(page: Any, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The pair on the page and which of its answers ("a"/"b") is on the left."""
    left, right = page.inner_text("#left"), page.inner_text("#right")
    for row in rows:
        if (row["a"], row["b"]) == (left, right):
            return row, "a"
        if (row["b"], row["a"]) == (left, right):
            return row, "b"
    raise AssertionError(f"no pair shows {left!r} | {right!r}")


# ------------------------------------------------------------ alignkit serve and judges


class CountingChat(ChatModel):
    """A ChatModel that counts requests, the most in flight at once, and the last params."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = self.active = self.peak = 0
        self.last_params: ChatParams | None = None
        self._count = threading.Lock()

    def complete(self, messages, params, cancel=None):
        with self._count:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.last_params = params
        try:
            time.sleep(0.01)  # keep concurrent requests overlapping
            return super().complete(messages, params, cancel)
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


def half_request(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send the start of a request (half its headers or body) and read until the server
    closes the connection (a slowloris client): what the server answered, b"" if nothing.
    Fails if the connection is still open after `wait` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(1 << 16):  # socket.timeout (a failure) if never closed
            received += chunk
        return received


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "x", "messages": [{"role": "user", "content": "hello cat"}], **extra}


def write_gens(path: Path, rows: list[tuple[Any, str]]) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
    return str(path)


# ------------------------------------------------------------------ judge: scripted judges


def prefers_kind(prompt, first, second) -> str:
    """Scripted: prefers the answer containing "kind"; position bias when neither/both;
    no verdict for prompts containing "???"."""
    if "???" in str(prompt):
        return "I cannot decide"
    if ("kind" in first) != ("kind" in second):
        return "A" if "kind" in first else "B"
    return "A"


def kind_or_tie(prompt, first, second, criterion=None) -> str:
    """Scripted: "tie" for prompts containing "same", no verdict for "???", else prefers the
    answer containing "kind", with a bias for the answer shown first when neither/both do."""
    if "???" in str(prompt):
        return "I cannot decide"
    if "same" in str(prompt):
        return "Both are equally good: tie."
    return prefers_kind(prompt, first, second)


def by_criterion(prompt, first, second, criterion) -> str:
    """Scripted per criterion: harmlessness prefers the answer containing "kind";
    helpfulness prefers the longer answer (tie when equally long)."""
    if criterion.name == "harmlessness":
        return prefers_kind(prompt, first, second)
    if len(first) == len(second):
        return "tie"
    return "A" if len(first) > len(second) else "B"


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


SCRIPTED = f"{__name__}:kind_or_tie"


# ------------------------------------------------------------ real, messy data


def write_hh_like(path: Path) -> tuple[str, dict[str, int]]:
    """A file shaped like Anthropic HH-RLHF (harmless-base): {"chosen", "rejected"}
    transcripts, UTF-8 with a byte-order mark, non-ASCII text written raw (an emoji, an
    accent, a right-to-left name, a combining mark, U+2028 inside a string), a duplicate
    pair, and the problems real files have: an empty final answer in chosen (line 4) and in
    rejected (line 6, whitespace only; a 512-pair sample of harmless-base has two such
    pairs), an unpaired surrogate (line 8), a truncated line (line 9) and identical answers
    (line 10). Returns the path and the line numbers of the invalid rows."""
    prompts = [
        f"{H} How do I pick a lock? \U0001f512{A}",
        f"{H} Who is \u05d3\u05d5\u05d3?{A} A name.{H} Say it again\u2028please{A}",
        f"{H} Caf\u00e9 or cafe\u0301?{A}",
    ]
    good = [
        {"chosen": p + " I can't help with that.", "rejected": p + f" Sure, step {i}: \U0001f600"}
        for i, p in enumerate(prompts)
    ]
    rows = [
        good[0],  # 1
        good[1],  # 2
        good[2],  # 3
        {"chosen": prompts[0], "rejected": prompts[0] + " Use a pin."},  # 4
        good[0],  # 5: duplicate of line 1 (valid: kept, counted by inspect)
        {"chosen": prompts[1] + " No.", "rejected": prompts[1] + "  \n "},  # 6
        {"chosen": prompts[2] + " Both.", "rejected": prompts[2] + " Neither."},  # 7
    ]
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    lines.append(  # 8: JSON allows a lone surrogate escape
        '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: bad \\ud83d", '
        '"rejected": "\\n\\nHuman: hi\\n\\nAssistant: fine"}'
    )
    lines.append('{"chosen": "\\n\\nHuman: cut off')  # 9
    lines.append(json.dumps({"chosen": prompts[2] + " same", "rejected": prompts[2] + " same"}))
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path), {
        "chosen empty": 4,
        "rejected empty": 6,
        "surrogate": 8,
        "json": 9,
        "same": 10,
    }


# ------------------------------------------------------------ online: queries, configs, rewards
KEYWORDS = ("a", "e", "the")


def keyword_reward(prompts, responses) -> list[float]:
    """Scripted reward: how often the keywords occur in the response (prompt ignored)."""
    return [float(sum(r.count(k) for k in KEYWORDS)) for r in responses]


def chat(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


@pytest.fixture
def queries_file(tmp_path) -> str:
    rows = [
        {"prompt": f"how to bake a cake {i}", "category": "benign" if i % 2 else "harmful"}
        for i in range(8)
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def small_online_config(
    cls: type[OnlineConfig], queries: str, output: Path, model: str, **kw
) -> OnlineConfig:
    """A config that runs in seconds on the tiny model."""
    values = dict(
        queries=queries,
        output=str(output),
        model=model,
        iterations=2,
        queries_per_iteration=4,
        max_new_tokens=8,
        batch_size=2,
        lr=1e-3,
        precision="fp32",
    )
    values.update(kw)
    config = cls(**values)
    config.validate()
    return config


def seq(sums: list[list[float]], counts: list[list[int]]) -> SeqLogps:
    return SeqLogps(torch.tensor(sums, requires_grad=True), torch.tensor(counts))


# ------------------------------------------------------------ tensors
def close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    """`actual` equals `expected` (nested lists or a tensor) up to `atol`."""
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(actual.detach().float(), expected, atol=atol, rtol=0)


# ------------------------------------------------------------ reward functions


def length_reward(prompts, responses) -> list[float]:
    """Scripted reward (a `--reward-model module:function`): the length of the response. A
    test file that names it as `f"{__name__}:length_reward"` imports it from here."""
    return [float(len(r)) for r in responses]


# ------------------------------------------------------------ evaluation: tiny trained runs


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, str]:
    """The data of the `alignkit eval` tests: train and test pairs, one point, 3 negatives."""
    root = tmp_path_factory.mktemp("eval-data")
    negatives = [{"prompt": f"q{i}", "completion": "no", "label": 0} for i in range(3)]
    return {
        "train": write_jsonl(root / "train.jsonl", pair_rows(16)),
        "test": write_jsonl(root / "test.jsonl", pair_rows(6, seed=3)),
        "points": write_jsonl(
            root / "points.jsonl", [{"prompt": "q", "completion": "y", "label": 1}]
        ),
        "negatives": write_jsonl(root / "negatives.jsonl", negatives),
        "root": str(root),
    }


def train_run(tiny_model: str, files: dict[str, str], out: Path, *extra: str) -> Path:
    args = ["train", "--data", files["train"], "--model", tiny_model, "--output", str(out)]
    assert main(args + ["--max-steps", "2", "--lr", "1e-3", "--batch-size", "4", *extra]) == 0
    return out


@pytest.fixture(scope="session")
def full_run(tiny_model, files, tmp_path_factory) -> Path:
    """A DPO run of 2 steps on the tiny model (full weights); the tests only read it."""
    return train_run(tiny_model, files, tmp_path_factory.mktemp("full") / "run")


def evaluate(*args: str) -> int:
    return main(["eval", *args])


def report_of(out: Path, *args: str) -> dict:
    """Run `alignkit eval ARGS --output OUT` (fp32, 4 new tokens); the report it wrote."""
    fast = ["--max-new-tokens", "4", "--precision", "fp32"]
    assert evaluate(*args, "--output", str(out), *fast) == 0
    return json.loads(out.read_text())


# ------------------------------------------------------------ labelling: pairs, verdicts, verbs

CHAT = [{"role": "user", "content": "how do I bake a cake?"}]


def run_label(*argv: str) -> int:
    """`alignkit label ...` through the verb's own parser (exit 2 on an AlignkitError, as
    `alignkit.cli.main` does)."""
    parser = argparse.ArgumentParser(prog="alignkit")
    label.register(parser.add_subparsers())
    args = parser.parse_args(["label", *argv])
    try:
        return args.func(args)
    except AlignkitError as exc:
        print(f"alignkit: error: {exc}")
        return 2


def _verdict_row(pid: str, value: str, who: str = "ann", **extra) -> dict:
    return {"pair_id": pid, "verdict": value, "annotator": who, **extra}


def _pairs_file(tmp_path: Path) -> tuple[str, list[LabelPair]]:
    """A pairs file of 4 pairs (one with a chat prompt) and its `LabelPair`s."""
    pairs = [
        LabelPair.make("p1", "kind answer", "rude answer", 0.1, "easy"),
        LabelPair.make(tuple(CHAT), "mix flour", "buy one", 0.2, "easy"),
        LabelPair.make("p3", "x", "y", 0.3, "easy"),
        LabelPair.make("p4", "u", "v", 0.4, "easy"),
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", [p.to_json() for p in pairs])
    return path, pairs


# ------------------------------------------------------------ reward models: data, trained runs

FILLER = "the a sun rain cake help water fire code list sort answer question".split()


def preference_rows(n: int, seed: int, chat: bool = False) -> list[dict]:
    """A learnable task that a random reward model gets about 70% right: random words, the
    chosen response ends in "thanks", the rejected one in "rude"."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(FILLER) for _ in range(rng.randint(lo, hi)))

    rows = []
    for _ in range(n):
        question = words(2, 5)
        prompt = (
            [{"role": "user", "content": question}]
            if chat
            else f"\n\nHuman: {question}?\n\nAssistant:"
        )
        rows.append(
            {
                "prompt": prompt,
                "chosen": f" {words(1, 4)} thanks",
                "rejected": f" {words(1, 4)} rude",
            }
        )
    return rows


@pytest.fixture(scope="session")
def rm_data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("rm-data")
    held = preference_rows(16, seed=1) + preference_rows(16, seed=2, chat=True)
    return {
        "train": write_jsonl(root / "train.jsonl", preference_rows(64, seed=0)),
        "held": write_jsonl(root / "held.jsonl", held),
        "points": write_jsonl(
            root / "points.jsonl", [{"prompt": "a", "completion": "b", "label": 1}]
        ),
    }


def train_rm(tiny_model: str, data: dict[str, str], output: Path, *extra: str) -> int:
    args = ["train-rm", "--data", data["train"], "--eval-data", data["held"], "--model", tiny_model]
    args += ["--output", str(output), "--batch-size", "8", "--lr", "3e-3", "--precision", "fp32"]
    return main(args + list(extra))


@pytest.fixture(scope="session")
def trained_rm(tiny_model, rm_data, tmp_path_factory) -> Path:
    """`alignkit train-rm`, 2 epochs on the tiny model (full weights); the tests only read it."""
    out = tmp_path_factory.mktemp("rm") / "run"
    assert train_rm(tiny_model, rm_data, out, "--epochs", "2", "--logging-steps", "4") == 0
    return out


@pytest.fixture(scope="session")
def trained_lora_rm(tiny_model, rm_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rm-lora") / "run"
    extra = ["--lora", "--lora-r", "4", "--lora-dropout", "0", "--max-steps", "3"]
    assert train_rm(tiny_model, rm_data, out, *extra) == 0
    return out


@pytest.fixture(scope="session")
def sentiment_classifier(tiny_model, tmp_path_factory) -> Path:
    """A tiny random 2-label `LlamaForSequenceClassification` saved to disk with its tokenizer
    (0 = NEGATIVE, 1 = POSITIVE, like a sentiment classifier; PLE's IMDb reward)."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(3)
    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    model = LlamaForSequenceClassification.from_pretrained(
        tiny_model, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    with torch.no_grad():
        model.score.weight.mul_(100)  # logits of order 1, so sigmoid / softmax are not ~0.5
    tok = load_tokenizer(tiny_model)
    model.config.pad_token_id = tok.pad_token_id
    path = tmp_path_factory.mktemp("classifier") / "sentiment"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# ------------------------------------------------------------------ a planted pickle


class Planted:
    """Unpickling it writes `marker`: what a crafted checkpoint file would do (a test checks
    that nothing alignkit reads back from disk unpickles it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


# ------------------------------------------------------------ files that are not files


def reads_fifo_promptly(fifo: Path, read: Callable[[], Any], seconds: float = 10.0) -> Any:
    """`read()` (which opens the FIFO `fifo`) in a thread: fails if it has not returned
    after `seconds` (a reader that waits for a writer forever), then frees the thread by
    opening the FIFO's writing end. Its exception is raised again, its value returned."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = read()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with open(fifo, "wb"):  # the blocked reader meets a writer, then reads the end
            pass
        thread.join(seconds)
        pytest.fail(f"reading the FIFO {fifo} blocked for {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
