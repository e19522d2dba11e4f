"""The OpenAI wire format of `alignkit serve`: request parsing and response shaping.

Pure functions over JSON-like values (no model, no HTTP), so each rule is testable alone.
Two endpoints are parsed: `/v1/chat/completions` (`parse_chat_request`) and the legacy
`/v1/completions` (`parse_text_request`). Parameters that would change the output but are not
implemented (penalties, logprobs, tools, ...) are refused with a 400 naming the parameter, never
silently ignored; parameters that do not change the output (`model`, `user`, `metadata`, ...)
are accepted and ignored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant")
MAX_STOP_SEQUENCES = 4
MAX_CHOICES = 16  # n per prompt: each choice is a full generation, one after another
MAX_PROMPTS = 16  # prompts per /v1/completions request


class RequestError(Exception):
    """A bad request: answered with `status` and an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


# ------------------------------------------------------------------ requests and results


@dataclass
class ChatParams:
    """Decoding settings of one request (temperature 0 = greedy; top_k 0 = no top-k)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None  # choice i of a request samples with seed + i
    stop: list[str] = field(default_factory=list)
    n: int = 1


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    params: ChatParams
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with `usage`


@dataclass
class TextRequest:
    prompts: list[str]
    params: ChatParams
    stream: bool = False
    include_usage: bool = False


@dataclass
class Choice:
    """One generated answer."""

    text: str
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop sequence) or "length"


@dataclass
class ChatCompletion:
    """The `n` answers to one prompt, with the prompt's token count."""

    choices: list[Choice]
    prompt_tokens: int

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


# ------------------------------------------------------------------ parsing


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


def _parse_prompts(raw: Any) -> list[str]:
    prompts = [raw] if isinstance(raw, str) else raw
    if not isinstance(prompts, list) or not prompts:
        raise RequestError("'prompt' must be a string or a non-empty list of strings", "prompt")
    if not all(isinstance(p, str) for p in prompts):
        raise RequestError(
            "'prompt' must be text: token-id prompts are not supported by alignkit serve",
            "prompt",
        )
    if len(prompts) > MAX_PROMPTS:
        raise RequestError(f"'prompt' may hold at most {MAX_PROMPTS} prompts", "prompt")
    return prompts


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number between {low} and {high}", key)
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"'{key}' must be an integer between {low} and {high}", key)
    return value


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


SEED_RANGE = (-(2**63), 2**63 - 1)  # torch's seeds are 64-bit (choice i adds i)


def _seed(value: Any) -> int | None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not SEED_RANGE[0] <= value <= SEED_RANGE[1]
    ):
        raise RequestError("'seed' must be an integer between -2**63 and 2**63-1", "seed")
    return value


def _top_k(body: dict[str, Any]) -> int:
    """vLLM's extension: a positive k keeps the k likeliest tokens; 0 or -1 turns it off."""
    value = body.get("top_k")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise RequestError("'top_k' must be a positive integer (or 0 or -1: no top-k)", "top_k")
    return max(value, 0)


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    """`stream` and `stream_options.include_usage`."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", "stream")
    options = body.get("stream_options")
    if options is None:
        return bool(stream), False
    if not stream:
        raise RequestError(
            "'stream_options' is only allowed with \"stream\": true", "stream_options"
        )
    usage = options.get("include_usage", False) if isinstance(options, dict) else None
    if not isinstance(usage, bool):
        raise RequestError(
            "'stream_options' must be an object like {\"include_usage\": true}", "stream_options"
        )
    return True, usage


def _absent(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


# parameters that would change the output and are not implemented: value -> is it harmless?
_NOT_IMPLEMENTED: dict[str, Callable[[Any], bool]] = {
    "frequency_penalty": lambda v: v is None or v == 0,
    "presence_penalty": lambda v: v is None or v == 0,
    "repetition_penalty": lambda v: v is None or v == 1,
    "min_p": lambda v: v is None or v == 0,
    "logit_bias": _absent,
    "logprobs": _absent,
    "top_logprobs": lambda v: v is None or v == 0,
    "tools": _absent,
    "functions": _absent,
    "tool_choice": lambda v: v is None or v == "none",
    "function_call": lambda v: v is None or v == "none",
    "response_format": lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"),
    "echo": _absent,
    "suffix": lambda v: v is None or v == "",
    "best_of": lambda v: v is None or v == 1,
    # vLLM's and Hugging Face's sampling extensions
    "min_tokens": lambda v: v is None or v == 0,
    "ignore_eos": _absent,
    "stop_token_ids": _absent,
    "bad_words": _absent,
    "allowed_token_ids": _absent,
    "include_stop_str_in_output": _absent,
    "skip_special_tokens": lambda v: v is None or v is True,
    "typical_p": lambda v: v is None or v == 1,
    "top_a": lambda v: v is None or v == 0,
    "tfs": lambda v: v is None or v == 1,
    "mirostat": lambda v: v is None or v == 0,
    "repeat_penalty": lambda v: v is None or v == 1,
    "length_penalty": lambda v: v is None or v == 1,
    "no_repeat_ngram_size": lambda v: v is None or v == 0,
    "num_beams": lambda v: v is None or v == 1,
    "use_beam_search": _absent,
    "do_sample": lambda v: v is None,
    "max_new_tokens": lambda v: v is None,  # a common slip for max_tokens
    "prompt_logprobs": lambda v: v is None,
    "truncate_prompt_tokens": lambda v: v is None,
    "logits_processors": _absent,
    "guided_json": lambda v: v is None,
    "guided_regex": lambda v: v is None,
    "guided_choice": lambda v: v is None,
    "guided_grammar": lambda v: v is None,
    "structured_outputs": lambda v: v is None,
}


def _refuse_not_implemented(body: dict[str, Any]) -> None:
    for key, harmless in _NOT_IMPLEMENTED.items():
        if key in body and not harmless(body[key]):
            raise RequestError(f"'{key}' is not supported by alignkit serve", key)


def _params(body: dict[str, Any], max_new_tokens: int) -> ChatParams:
    _refuse_not_implemented(body)
    return ChatParams(
        max_tokens=_max_tokens(body, max_new_tokens),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        top_k=_top_k(body),
        seed=_seed(body.get("seed")),
        stop=_stop(body.get("stop")),
        n=_integer(body, "n", 1, 1, MAX_CHOICES),
    )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def parse_chat_request(body: Any, max_new_tokens: int) -> ChatRequest:
    """Validate a chat-completions body; `max_new_tokens` is the default and the upper limit."""
    body = _object(body)
    messages = _parse_messages(body.get("messages"))
    stream, usage = _stream(body)
    return ChatRequest(messages, _params(body, max_new_tokens), stream, usage)


def parse_text_request(body: Any, max_new_tokens: int) -> TextRequest:
    """Validate a (legacy) completions body; `max_new_tokens` as in `parse_chat_request`."""
    body = _object(body)
    prompts = _parse_prompts(body.get("prompt"))
    if "max_completion_tokens" in body:
        raise RequestError("/v1/completions takes 'max_tokens'", "max_completion_tokens")
    stream, usage = _stream(body)
    return TextRequest(prompts, _params(body, max_new_tokens), stream, usage)


# ------------------------------------------------------------------ responses


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_response(completion: ChatCompletion, model: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` object."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(completion.choices)
    ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(completion.prompt_tokens, completion.completion_tokens),
    }


def text_response(completions: list[ChatCompletion], model: str) -> dict[str, Any]:
    """An OpenAI `text_completion` object: the n choices of prompt p have indices p*n ..."""
    choices = [
        {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
        for i, c in enumerate(c for completion in completions for c in completion.choices)
    ]
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(
            sum(c.prompt_tokens for c in completions),
            sum(c.completion_tokens for c in completions),
        ),
    }


class ChatChunks:
    """The `chat.completion.chunk` objects of one streamed reply (one id for all of them).

    Per choice: a first chunk with the role, chunks with content pieces, a last chunk with
    `finish_reason`; with `include_usage`, every chunk has `"usage": null` and a final chunk
    without choices carries the usage of the whole request (as OpenAI does)."""

    object = "chat.completion.chunk"
    id_prefix = "chatcmpl-"

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = f"{self.id_prefix}{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        chunk = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return chunk

    def _choice(self, index: int, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        delta = {} if text is None else {"content": text}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def start(self, index: int) -> dict[str, Any] | None:
        choice = self._choice(index, "", None)
        choice["delta"] = {"role": "assistant", "content": ""}
        return self._chunk([choice])

    def piece(self, index: int, text: str) -> dict[str, Any]:
        return self._chunk([self._choice(index, text, None)])

    def finish(self, index: int, finish_reason: str) -> dict[str, Any]:
        return self._chunk([self._choice(index, None, finish_reason)])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return self._chunk([], _usage(prompt_tokens, completion_tokens))


class TextChunks(ChatChunks):
    """The streamed `text_completion` objects of `/v1/completions` (no role chunk)."""

    object = "text_completion"
    id_prefix = "cmpl-"

    def _choice(self, index: int, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {
            "index": index,
            "text": text or "",
            "logprobs": None,
            "finish_reason": finish_reason,
        }

    def start(self, index: int) -> dict[str, Any] | None:
        return None


def models_response(model: str, created: int) -> dict[str, Any]:
    """An OpenAI model list with the one served model."""
    entry = {"id": model, "object": "model", "created": created, "owned_by": "alignkit"}
    return {"object": "list", "data": [entry]}


def error_body(message: str, param: str | None, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}
