"""An OpenAI-compatible chat server for one local model (`alignkit serve`).

`POST /v1/chat/completions` and `GET /v1/models`, enough for OpenAI clients (and for
`alignkit judge --judge http:...`). The server is threaded (a slow client never blocks
the others) but generation runs under one lock: the model is used by one request at a time.

Models: any model spec of `alignkit.runs` (`default`, a Hugging Face id, a model or adapter
folder, a run directory), loaded by `alignkit.models.load_inference_model` (adapters merged).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from alignkit.data.prompts import messages_to_prompt, render_prompt
from alignkit.errors import AlignkitError
from alignkit.models import LoadedModel

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
DRAIN_LIMIT_BYTES = 1 << 26  # larger bodies are cut off unread
ROLES = ("system", "developer", "user", "assistant")
MAX_STOP_SEQUENCES = 4


# ------------------------------------------------------------------ generation


@dataclass
class ChatParams:
    """Decoding settings of one request (temperature 0 = greedy)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class ChatCompletion:
    """The reply to one chat request, with the token counts of its `usage`."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop sequence) or "length"


def _text_content(content: Any) -> str | None:
    """A message's text: a string, or OpenAI content parts of type "text"."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def _truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


class ChatModel:
    """Answers chat requests with a loaded model, one request at a time."""

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
        self.lock = threading.Lock()

    def complete(self, messages: list[dict[str, str]], params: ChatParams) -> ChatCompletion:
        """The model's reply; the lock also covers the tokenizer (not thread-safe)."""
        prompt = messages_to_prompt(messages, self.tokenizer)
        with self.lock:
            try:
                text, templated = render_prompt(prompt, self.tokenizer)
            except Exception as exc:  # e.g. a template that allows no system message
                raise RequestError(
                    f"the model's chat template rejects these messages: {exc}"
                ) from exc
            enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=not templated)
            new = self._generate(enc, params)
            return self._completion(new, enc["input_ids"].shape[1], params)

    @torch.no_grad()
    def _generate(self, enc: Any, params: ChatParams) -> torch.Tensor:
        device = next(self.model.parameters()).device
        enc = enc.to(device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "do_sample": params.temperature > 0,
        }
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        dtype = self.autocast or torch.float32
        with torch.autocast(device.type, dtype=dtype, enabled=self.autocast is not None):
            ids = self.model.generate(**enc, **kwargs)
        return ids[0, enc["input_ids"].shape[1] :].cpu()

    def _completion(
        self, new: torch.Tensor, prompt_tokens: int, params: ChatParams
    ) -> ChatCompletion:
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        ended = len(new) > 0 and int(new[-1]) in eos_ids
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = _truncate_at_stop(text, params.stop)
        count = len(new)
        if stopped:
            count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        finish = "stop" if ended or stopped or len(new) < params.max_tokens else "length"
        return ChatCompletion(text.strip(), prompt_tokens, count, finish)


# ------------------------------------------------------------------ request parsing


class RequestError(Exception):
    """A bad request: answered with `status` and an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def _parse_messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of {role, content}", "messages")
    messages = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
        if m.get("role") not in ROLES:
            raise RequestError(f"{where}.role must be one of {', '.join(ROLES)}", f"{where}.role")
        content = _text_content(m.get("content"))
        if content is None:
            raise RequestError(
                f"{where}.content must be a string (or text parts)", f"{where}.content"
            )
        role = "system" if m["role"] == "developer" else m["role"]
        messages.append({"role": role, "content": content})
    return messages


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number between {low} and {high}", key)
    return float(value)


def _max_tokens(body: dict[str, Any], limit: int) -> int:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(key)
    if value is None:
        return limit
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"'{key}' must be a positive integer", key)
    return min(value, limit)


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise RequestError("'stop' must be a string or a list of up to 4 non-empty strings", "stop")
    return stops


def _seed(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise RequestError("'seed' must be an integer", "seed")
    return value


def parse_chat_request(body: Any, max_new_tokens: int) -> tuple[list[dict[str, str]], ChatParams]:
    """Validate a chat-completions body; `max_new_tokens` is the default and the upper limit."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if body.get("stream"):
        raise RequestError('streaming is not supported: send "stream": false', "stream")
    if body.get("n", 1) != 1:
        raise RequestError("only n=1 is supported", "n")
    messages = _parse_messages(body.get("messages"))
    params = ChatParams(
        max_tokens=_max_tokens(body, max_new_tokens),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        seed=_seed(body.get("seed")),
        stop=_stop(body.get("stop")),
    )
    return messages, params


def completion_response(completion: ChatCompletion, model: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` object."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }


def models_response(model: str, created: int) -> dict[str, Any]:
    """An OpenAI model list with the one served model."""
    entry = {"id": model, "object": "model", "created": created, "owned_by": "alignkit"}
    return {"object": "list", "data": [entry]}


# ------------------------------------------------------------------ HTTP


def _error_body(message: str, param: str | None, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    server_version = "alignkit-serve"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

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
        self._send(exc.status, _error_body(exc.message, exc.param, exc.status))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self._path() == "/models":
            self._send(200, models_response(self.server.chat.name, self.server.started))
        else:
            self._fail(RequestError(f"no such endpoint: GET {self.path}", status=404))

    def do_POST(self) -> None:  # noqa: N802
        try:
            if self._path() != "/chat/completions":
                raise RequestError(f"no such endpoint: POST {self.path}", status=404)
            messages, params = parse_chat_request(self._body(), self.server.chat.max_new_tokens)
            completion = self.server.chat.complete(messages, params)
        except RequestError as exc:
            self._fail(exc)
            return
        except AlignkitError as exc:
            self._fail(RequestError(str(exc)))
            return
        except Exception as exc:  # one failed request must not stop the server
            log.exception("generation failed")
            self._fail(RequestError(f"generation failed: {exc}", status=500))
            return
        self._send(200, completion_response(completion, self.server.chat.name))

    def _body(self) -> Any:
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
            return json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from exc

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)


class ChatServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the `ChatModel` its handlers use."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], chat: ChatModel) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.chat = chat
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


def make_server(chat: ChatModel, host: str = "127.0.0.1", port: int = 8000) -> ChatServer:
    """Bind (port 0 = any free port) without serving yet; call `serve_forever()`."""
    try:
        return ChatServer((host, port), chat)
    except OSError as exc:
        raise AlignkitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
