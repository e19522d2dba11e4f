"""One HTTP client for OpenAI-compatible servers (vLLM, SGLang, `alignkit serve`, hosted APIs).

The judges (`HttpJudge`), `alignkit generate --endpoint` and the online loops'
`--endpoint URL` all talk to servers through `OpenAIClient`: JSON over HTTP with a timeout,
retries with exponential backoff (connection errors, timeouts, HTTP 408/409/425/429/5xx and
replies that are not JSON; a `Retry-After` header is honoured), and the API key sent as a
bearer token, never logged (it is in no repr, message or log line).

Two errors, both `AlignkitError`s that name the URL and the HTTP status:
- `EndpointUnavailable`: the server cannot be reached after every retry, refuses the key
  (401/403) or does not know the path or model (404/405); the run cannot go on.
- `RequestRefused`: the server refused this one request (another 4xx, e.g. a bad
  parameter); the caller decides (a judge counts the question as unparseable).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn

from alignkit.errors import AlignkitError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_WAIT = 60.0  # seconds between two attempts at most


URL_PATTERN = re.compile(r"https?://[^/\s]+\S*")


def is_url(text: str) -> bool:
    """An http(s)://HOST... URL."""
    return bool(URL_PATTERN.fullmatch(text))


class EndpointUnavailable(AlignkitError):
    """The server cannot be reached, refuses the key or does not know the path or model."""


class RequestRefused(AlignkitError):
    """The server refused one request (HTTP 4xx other than 401/403/404/405).

    `str()` names the URL; `reason` is the status and the server's message alone."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(f"{url} refused a request: {reason}")
        self.url, self.status, self.reason = url, status, reason


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def error_message(exc: urllib.error.HTTPError) -> str:
    """The server's own words: OpenAI's {"error": {"message": ...}}, else the body's start."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        return exc.reason or ""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.strip()[:300] or str(exc.reason)


class OpenAIClient:
    """JSON requests to an OpenAI-compatible server at `base_url` (as OpenAI clients take it,
    e.g. http://127.0.0.1:8000/v1; a trailing /chat/completions is dropped).

    `key_flag` and `model_flag` are the options a user of the calling verb fixes a refused
    key or an unknown model with; they only word the error messages.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        retry_wait: float = 1.0,
        key_flag: str = "--api-key",
        model_flag: str = "--model",
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/chat/completions")
        self._api_key = api_key
        self.timeout, self.retries, self.retry_wait = timeout, retries, retry_wait
        self.key_flag, self.model_flag = key_flag, model_flag

    def __repr__(self) -> str:  # no key in reprs, tracebacks or logs
        return f"OpenAIClient({self.base_url!r})"

    # ---------------------------------------------------------------- requests

    def request(self, path: str, body: dict[str, Any] | None = None) -> urllib.request.Request:
        """The HTTP request for `path` under the base URL, or for a full http(s) URL (GET
        without a body, POST with one)."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(url, data=data, headers=headers)

    def get(self, path: str) -> dict[str, Any]:
        return self.call(self.request(path))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call(self.request(path, body))

    def post_text(self, path: str, body: dict[str, Any]) -> str:
        """POST and return the reply as text (servers whose admin endpoints answer plain text,
        like vLLM's /v1/load_lora_adapter)."""
        return self.call(self.request(path, body), json_reply=False)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One /chat/completions request."""
        return self.post("/chat/completions", body)

    def models(self) -> list[str]:
        """The model names /models lists."""
        reply = self.get("/models")
        return [m["id"] for m in reply.get("data", []) if isinstance(m, dict) and "id" in m]

    def only_model(self) -> str:
        """The one model the server serves (an error names `model_flag` when there are more)."""
        ids = [i for i in self.models() if isinstance(i, str)]
        if len(ids) != 1:
            raise EndpointUnavailable(
                f"{self.base_url}/models lists {len(ids)} models: name the one to use with "
                f"{self.model_flag}"
            )
        return ids[0]

    # ---------------------------------------------------------------- transport

    def call(self, req: urllib.request.Request, json_reply: bool = True) -> Any:
        """Send with retries (exponential backoff from `retry_wait`, at most 60 s apart)."""
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return self._send(req, json_reply)
            except _Retryable as exc:
                last = str(exc)
                if attempt < self.retries:
                    delay = self.retry_wait * 2**attempt
                    time.sleep(min(max(delay, exc.wait or 0.0), MAX_WAIT))
                    log.warning(
                        "request to %s failed (%s); retry %d/%d",
                        req.full_url,
                        last,
                        attempt + 1,
                        self.retries,
                    )
        raise EndpointUnavailable(
            f"the endpoint at {req.full_url} did not answer after {self.retries + 1} "
            f"attempts: {last}"
        )

    def _send(self, req: urllib.request.Request, json_reply: bool) -> Any:
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            self._raise_for_status(exc, req.full_url)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Retryable(f"{type(reason).__name__}: {reason}") from None
        if not json_reply:
            return raw.decode("utf-8", "replace")
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable(f"the reply is not JSON: {raw[:100]!r}") from None
        if not isinstance(reply, dict):
            raise _Retryable("the reply is not a JSON object")
        return reply

    def _raise_for_status(self, exc: urllib.error.HTTPError, url: str) -> NoReturn:
        reason = f"HTTP {exc.code}: {error_message(exc)}"
        if exc.code in RETRY_STATUS:
            after = exc.headers.get("Retry-After") if exc.headers else None
            wait = float(after) if after and after.replace(".", "", 1).isdigit() else None
            raise _Retryable(reason, wait) from None
        if exc.code in (401, 403):
            raise EndpointUnavailable(
                f"the endpoint at {url} refused the request ({reason}); pass {self.key_flag}"
            ) from None
        if exc.code in (404, 405):
            raise EndpointUnavailable(
                f"{url}: {reason} (is the base URL right? it usually ends in /v1; "
                f"is {self.model_flag} a model the endpoint serves?)"
            ) from None
        raise RequestRefused(url, exc.code, reason) from None
