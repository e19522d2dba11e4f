"""An OpenAI-compatible server for one local model (`alignkit serve`).

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (legacy text completions),
`GET /v1/models`; each POST may ask for `n` choices and for server-sent events
(`"stream": true`). The wire format (parsing, response objects) is `openai_api`; this module
generates and speaks HTTP.

Concurrency: the HTTP server is threaded (a slow client never blocks the others) but the model
and tokenizer are used under one lock: one generation at a time, the others wait their turn
(in no guaranteed order). The lock is taken per choice, so the `n` choices of one request may
interleave with other requests. A streamed reply is generated in a worker thread that never
waits for the client: pieces queue up (at most `max_tokens` of them) while the handler writes
them out, so a slow reader holds only its own connection, never the lock. A client that
disconnects stops its generation at the next token (streamed or not), and a non-streamed
request stops at its time limit (408).

Access: on loopback, only loopback Host names are answered (DNS rebinding); with an API key
(required for any other address) every request must carry `Authorization: Bearer KEY`. A
browser's cross-origin request and a body other than `application/json` are refused, and a
client that takes over `socket_timeout` seconds to send its request is dropped (slowloris).

Models: any model spec of `alignkit.runs` (`default`, a Hugging Face id, a model or adapter
folder, a run directory), loaded by `alignkit.models.load_inference_model` (adapters merged).
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from alignkit.data.prompts import messages_to_prompt, render_prompt
from alignkit.errors import AlignkitError
from alignkit.inference.openai_api import (
    ChatChunks,
    ChatCompletion,
    ChatParams,
    Choice,
    RequestError,
    TextChunks,
    chat_response,
    error_body,
    models_response,
    parse_chat_request,
    parse_text_request,
    text_response,
)
from alignkit.io import load_json
from alignkit.models import LoadedModel

__all__ = ["ChatCompletion", "ChatModel", "ChatParams", "ChatServer", "Choice", "RequestError"]
__all__ += ["make_server"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
DRAIN_LIMIT_BYTES = 1 << 26  # larger bodies are cut off unread
LOOPBACK = ("127.0.0.1", "::1", "localhost")
SOCKET_TIMEOUT = 30.0  # seconds a client may take to send its request (slowloris)
LISTEN_BACKLOG = 128
REQUEST_TIMEOUT = 600.0  # seconds a non-streamed request may generate (0 = no limit)


# ------------------------------------------------------------------ text as it is generated


def _truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def _settled(text: str, stop: list[str], strip: bool) -> str:
    """The part of a reply decoded so far that later tokens cannot change: without a trailing
    half character (U+FFFD), trailing whitespace when replies are stripped (it may be the
    end), or a tail that may begin a stop sequence."""
    text, stopped = _truncate_at_stop(text, stop)
    if strip:
        text = text.strip()
    if stopped:
        return text
    text = text.rstrip("\ufffd")
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return text[: len(text) - hold]


class _PieceStreamer(BaseStreamer):
    """Given to `generate`: decodes the new tokens as they come and hands each settled new
    piece of text to `on_text`, so that the pieces add up to the final reply."""

    def __init__(self, tokenizer: Any, stop: list[str], strip: bool, on_text: Callable) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.strip = strip
        self.on_text = on_text
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self.advance(_settled(text, self.stop, self.strip))

    def end(self) -> None:
        pass

    def advance(self, text: str) -> None:
        """Send what `text` adds to the text sent so far (nothing if it does not extend it:
        a decoding that changed earlier characters waits for the final text)."""
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.on_text(text[len(self.sent) :])
            self.sent = text


class Cancel(Protocol):
    """What stops a generation at its next token: a `threading.Event` or a `_Watch`."""

    def is_set(self) -> bool: ...


class _Cancelled(StoppingCriteria):
    """Stops generation once `event` is set (the client went away, or its time is up)."""

    def __init__(self, event: Cancel) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


# ------------------------------------------------------------------ the model


class ChatModel:
    """Answers requests with a loaded model, one generation at a time (`lock`)."""

    def __init__(
        self,
        loaded: LoadedModel,
        name: str,
        max_new_tokens: int = 256,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.autocast = autocast
        self.lock = threading.Lock()  # also covers the tokenizer (not thread-safe)
        config = getattr(self.model, "config", None)
        self.context: int | None = getattr(config, "max_position_embeddings", None)

    def check_fits(self, enc: Any, params: ChatParams, param: str) -> None:
        """Refuse (400) a prompt that leaves no room for `max_tokens` in the model's context."""
        length = enc["input_ids"].shape[1]
        if self.context is not None and length + params.max_tokens > self.context:
            raise RequestError(
                f"the prompt is {length} tokens; with max_tokens {params.max_tokens} it exceeds "
                f"the model's context of {self.context} tokens",
                param,
            )

    def complete(
        self, messages: list[dict[str, str]], params: ChatParams, cancel: Cancel | None = None
    ) -> ChatCompletion:
        """The model's `params.n` replies to chat messages (stripped of outer whitespace);
        once `cancel` is set, the remaining choices are cut short or left out."""
        enc = self.encode_messages(messages)
        self.check_fits(enc, params, "messages")
        return self.answer(enc, params, strip=True, cancel=cancel)

    def complete_text(
        self, prompts: list[str], params: ChatParams, cancel: Cancel | None = None
    ) -> list[ChatCompletion]:
        """`params.n` continuations of each plain-text prompt (no chat template)."""
        encodings = [self.encode_text(p) for p in prompts]
        for enc in encodings:
            self.check_fits(enc, params, "prompt")
        return [self.answer(enc, params, strip=False, cancel=cancel) for enc in encodings]

    def encode_messages(self, messages: list[dict[str, str]]) -> Any:
        """Chat messages as model input: rendered by the chat template (if any), tokenized."""
        prompt = messages_to_prompt(messages, self.tokenizer)
        with self.lock:
            try:
                text, templated = render_prompt(prompt, self.tokenizer)
            except Exception as exc:  # e.g. a template that allows no system message
                raise RequestError(
                    f"the model's chat template rejects these messages: {exc}"
                ) from exc
            return self.tokenizer(text, return_tensors="pt", add_special_tokens=not templated)

    def encode_text(self, prompt: str) -> Any:
        """A plain-text prompt as model input (with the tokenizer's special tokens)."""
        with self.lock:
            enc = self.tokenizer(prompt, return_tensors="pt")
        if enc["input_ids"].shape[1] == 0:
            raise RequestError("a prompt is empty (this tokenizer adds no start token)", "prompt")
        return enc

    def answer(
        self, enc: Any, params: ChatParams, strip: bool, cancel: Cancel | None = None
    ) -> ChatCompletion:
        choices = []
        for i in range(params.n):
            if cancel is not None and cancel.is_set():
                break
            choices.append(self.generate_choice(enc, params, i, strip, cancel=cancel))
        return ChatCompletion(choices, enc["input_ids"].shape[1])

    def generate_choice(
        self,
        enc: Any,
        params: ChatParams,
        index: int = 0,
        strip: bool = True,
        on_text: Callable[[str], None] | None = None,
        cancel: Cancel | None = None,
    ) -> Choice:
        """Choice `index` of a request, sampled with seed + index. `on_text` receives the
        reply piece by piece as it is generated (the pieces add up to `Choice.text`);
        setting `cancel` stops generation at the next token."""
        streamer = None
        if on_text is not None:
            streamer = _PieceStreamer(self.tokenizer, params.stop, strip, on_text)
        with self.lock:
            if params.seed is not None and params.temperature > 0:
                torch.manual_seed(params.seed + index)
            new = self._generate(enc, params, streamer, cancel)
            choice = self._choice(new, params, strip)
        if streamer is not None:
            streamer.advance(choice.text)
        return choice

    @torch.no_grad()
    def _generate(
        self,
        enc: Any,
        params: ChatParams,
        streamer: BaseStreamer | None,
        cancel: Cancel | None,
    ) -> torch.Tensor:
        device = next(self.model.parameters()).device
        enc = enc.to(device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "do_sample": params.temperature > 0,
            "streamer": streamer,
        }
        if params.temperature > 0:  # top_k 0 also overrides a model's default top-k (often 50)
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        if cancel is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancelled(cancel)])
        dtype = self.autocast or torch.float32
        with torch.autocast(device.type, dtype=dtype, enabled=self.autocast is not None):
            ids = self.model.generate(**enc, **kwargs)
        return ids[0, enc["input_ids"].shape[1] :].cpu()

    def _choice(self, new: torch.Tensor, params: ChatParams, strip: bool) -> Choice:
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        ended = len(new) > 0 and int(new[-1]) in eos_ids
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = _truncate_at_stop(text, params.stop)
        count = len(new)
        if stopped:
            count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        finish = "stop" if ended or stopped or len(new) < params.max_tokens else "length"
        return Choice(text.strip() if strip else text, count, finish)


class _Worker:
    """Generates the choices of one streamed request in its own thread, so that generation
    never waits for the client. Iterating yields ("text", index, piece), ("done", index,
    Choice) and, if generation fails, ("error", None, message)."""

    def __init__(self, chat: ChatModel, encodings: list[Any], params: ChatParams, strip: bool):
        self.events: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        args = (chat, encodings, params, strip)
        threading.Thread(target=self._run, args=args, daemon=True).start()

    def _run(self, chat: ChatModel, encodings: list[Any], params: ChatParams, strip: bool) -> None:
        try:
            for p, enc in enumerate(encodings):
                for j in range(params.n):
                    if self.cancel.is_set():
                        return
                    index = p * params.n + j

                    def on_text(piece: str, index: int = index) -> None:
                        self.events.put(("text", index, piece))

                    choice = chat.generate_choice(enc, params, j, strip, on_text, self.cancel)
                    self.events.put(("done", index, choice))
        except Exception as exc:  # reported to the client inside the stream
            log.exception("generation failed")
            self.events.put(("error", None, f"generation failed: {exc}"))
        finally:
            self.events.put(None)

    def __iter__(self) -> Iterator[tuple[str, int | None, Any]]:
        while (event := self.events.get()) is not None:
            yield event


class _Watch:
    """The `cancel` of a non-streamed request: set once its client has closed the connection
    (nobody will read the reply) or its `seconds` are up (0 = no limit). Polled at every
    generated token: one `select` on the socket, no thread."""

    def __init__(self, connection: socket.socket, seconds: float) -> None:
        self.connection = connection
        self.deadline = time.monotonic() + seconds if seconds > 0 else None
        self.gone = self.expired = False

    def is_set(self) -> bool:
        if not (self.gone or self.expired):
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.expired = True
            else:
                self.gone = _closed(self.connection)
        return self.gone or self.expired


def _closed(connection: socket.socket) -> bool:
    """Whether the client closed its end (readable, yet nothing to read)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed
        return True


# ------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    server_version = "alignkit-serve"

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout  # each read or write of the socket
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _check_access(self) -> None:
        """The API key (Bearer) when there is one; otherwise loopback Host names only (DNS
        rebinding). A browser's cross-site request (an Origin other than the Host) is refused."""
        host = self.headers.get("Host", "")
        key = self.server.api_key
        if key is None:
            name, _, port = _split_host(host)
            if name not in LOOPBACK or port not in ("", str(self.server.server_address[1])):
                raise RequestError("this server answers loopback host names only", status=403)
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            raise RequestError(f"cross-origin requests are refused (Origin {origin})", status=403)
        if key is not None:
            given = self.headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), key.encode()
            ):
                raise RequestError(
                    "missing or wrong API key (Authorization: Bearer KEY)", None, 401
                )

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, exc: RequestError) -> None:
        self._send(exc.status, error_body(exc.message, exc.param, exc.status))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            self._check_access()
        except RequestError as exc:
            self._fail(exc)
            return
        if self._path() == "/models":
            self._send(200, models_response(self.server.chat.name, self.server.started))
        else:
            self._fail(RequestError(f"no such endpoint: GET {self.path}", status=404))

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._check_access()
            path = self._path()
            if path == "/chat/completions":
                self._chat(self._body())
            elif path == "/completions":
                self._text(self._body())
            else:
                raise RequestError(f"no such endpoint: POST {self.path}", status=404)
        except RequestError as exc:
            self._fail(exc)
        except AlignkitError as exc:
            self._fail(RequestError(str(exc)))
        except Exception as exc:  # one failed request must not stop the server
            log.exception("generation failed")
            self._fail(RequestError(f"generation failed: {exc}", status=500))

    def _chat(self, body: Any) -> None:
        chat = self.server.chat
        request = parse_chat_request(body, chat.max_new_tokens)
        if not request.stream:
            watch = self._watch()
            completion = chat.complete(request.messages, request.params, watch)
            self._reply(watch, lambda: chat_response(completion, chat.name))
            return
        encodings = [chat.encode_messages(request.messages)]  # a bad prompt is still a 400
        chat.check_fits(encodings[0], request.params, "messages")
        chunks = ChatChunks(chat.name, request.include_usage)
        self._stream(chunks, encodings, request.params, strip=True)

    def _text(self, body: Any) -> None:
        chat = self.server.chat
        request = parse_text_request(body, chat.max_new_tokens)
        if not request.stream:
            watch = self._watch()
            completions = chat.complete_text(request.prompts, request.params, watch)
            self._reply(watch, lambda: text_response(completions, chat.name))
            return
        encodings = [chat.encode_text(p) for p in request.prompts]
        for enc in encodings:
            chat.check_fits(enc, request.params, "prompt")
        chunks = TextChunks(chat.name, request.include_usage)
        self._stream(chunks, encodings, request.params, strip=False)

    def _watch(self) -> _Watch:
        return _Watch(self.connection, self.server.request_timeout)

    def _reply(self, watch: _Watch, body: Callable[[], dict[str, Any]]) -> None:
        """The reply of a non-streamed request, unless it was cut short (`watch`)."""
        if watch.gone:
            self.close_connection = True
            log.info("%s left before its reply: its generation stopped", self.address_string())
        elif watch.expired:
            limit = self.server.request_timeout
            raise RequestError(
                f"the request ran over its {limit:g} seconds (--request-timeout, counted from "
                "its arrival): ask for fewer tokens or choices",
                status=408,
            )
        else:
            self._send(200, body())

    def _stream(
        self, chunks: ChatChunks, encodings: list[Any], params: ChatParams, strip: bool
    ) -> None:
        """Server-sent events: `data: {chunk}` per piece, then `data: [DONE]`; the body ends
        with the connection (HTTP/1.0, no length)."""
        worker = _Worker(self.server.chat, encodings, params, strip)
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for index in range(len(encodings) * params.n):  # at once, before waiting for the lock
                self._event(chunks.start(index))
            failed, used = False, 0
            for kind, index, value in worker:
                if kind == "text":
                    self._event(chunks.piece(index, value))
                elif kind == "done":
                    used += value.completion_tokens
                    self._event(chunks.finish(index, value.finish_reason))
                else:
                    failed = True
                    self._event(error_body(value, None, 500))
            if chunks.include_usage and not failed:
                prompt_tokens = sum(enc["input_ids"].shape[1] for enc in encodings)
                self._event(chunks.usage(prompt_tokens, used))
            self.wfile.write(b"data: [DONE]\n\n")
        except OSError:  # the client went away (ConnectionError) or closed the socket
            log.info("%s left mid-stream: its generation stops", self.address_string())
        finally:
            worker.cancel.set()

    def _event(self, chunk: dict[str, Any] | None) -> None:
        if chunk is not None:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def _body(self) -> Any:
        if self.headers.get_content_type() != "application/json":
            self.close_connection = True  # its body is left unread
            raise RequestError(
                "send the body as JSON with Content-Type: application/json", None, 415
            )
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise RequestError("invalid Content-Length header") from exc
        if length <= 0:
            raise RequestError("the request has no body: send a JSON object", status=400)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._discard(min(length, DRAIN_LIMIT_BYTES))  # so the client reads the 413
            raise RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", status=413)
        try:
            data = self.rfile.read(length)
        except TimeoutError as exc:
            self.close_connection = True
            raise RequestError("the request body did not arrive in time", status=408) from exc
        try:
            return load_json(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from exc

    def _discard(self, length: int) -> None:
        """Read past up to `length` bytes of a refused body (so the client reads the answer);
        a client that sends no more is given up at the socket timeout."""
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    return
                length -= len(chunk)
        except TimeoutError:
            return


def _split_host(host: str) -> tuple[str, str, str]:
    """A Host header as (name, ":", port), the name lower-case and without IPv6 brackets."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name.lower(), ":", rest[1:] if rest.startswith(":") else ""
    name, sep, port = host.rpartition(":")
    return (name.lower(), sep, port) if sep else (host.lower(), "", "")


class ChatServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the `ChatModel` its handlers use, and the API key every
    request must carry (None: loopback Host names only)."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        chat: ChatModel,
        api_key: str | None = None,
        socket_timeout: float = SOCKET_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.chat = chat
        self.api_key = api_key
        self.socket_timeout = socket_timeout
        self.request_timeout = request_timeout
        self.started = int(time.time())
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # e.g. a client that timed out
            log.info("%s disconnected before its reply", client_address[0])
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The base URL OpenAI clients take (ending in /v1)."""
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"


def make_server(
    chat: ChatModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    socket_timeout: float = SOCKET_TIMEOUT,
    request_timeout: float = REQUEST_TIMEOUT,
) -> ChatServer:
    """Bind (port 0 = any free port) without serving yet; call `serve_forever()`. A host other
    than loopback needs an API key."""
    if host not in LOOPBACK and not api_key:
        raise AlignkitError(
            f"--host {host} exposes the server to the network: give --api-key too (or set "
            "$ALIGNKIT_API_KEY), e.g. --api-key \"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe())')\""
        )
    try:
        return ChatServer((host, port), chat, api_key or None, socket_timeout, request_timeout)
    except OSError as exc:
        raise AlignkitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
