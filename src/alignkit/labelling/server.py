"""The web page of `alignkit label serve` (its CLI: `commands/label.py`): people label pairs.

The page (static/label.html, label.js, label.css) shows a pair's prompt and its two answers side
by side. Which answer is on the left is drawn per pair from `--seed` and the pair id (a reload
shows the same order) and recorded as `shown_left`; the server translates the person's
left/right into the pair's a/b. Every verdict (and every undo) is appended to the verdicts file
at once (flush + fsync, under a lock): a killed server loses nothing, and a restarted one resumes
each annotator at their first pair without a verdict (`read_verdicts` semantics, undo included).

JSON API: GET /api/config, GET /api/state?annotator=NAME, POST /api/verdict
{annotator, pair_id, choice: left|right|tie|skip}, POST /api/undo {annotator}. With a token,
every request must carry it (`?token=`, the X-Alignkit-Token header, or the cookie the page sets).

Defences: without a token only loopback Host names are answered (DNS rebinding); a request
whose Origin header is not the served host (a cross-site page) is refused with 403; POST bodies
must be `application/json` (no cross-site "simple" request); every answer, http.server's own
error pages included (400 for a bad request line, 501 for OPTIONS or PUT), carries
`SECURITY_HEADERS`. The token cookie is host-only (no Domain), `Path=/; HttpOnly;
SameSite=Strict`, and named after the port (`alignkit_token_8080`): browsers send cookies to
every port of a host, so the name keeps two label servers on one host apart; another local
web app on another port still receives it, which is why the page also works without it
(`?token=` in the URL and the header).
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import os
import re
import socket
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from alignkit.data.prompts import prompt_json
from alignkit.errors import AlignkitError
from alignkit.io import jsonl_line, load_json
from alignkit.labelling.pairs import LabelPair, Verdict, read_pairs, read_verdicts, shown_left

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
SOCKET_TIMEOUT = 30.0  # seconds a client may take to send its request (slowloris)
LISTEN_BACKLOG = 128
CHOICES = ("left", "right", "tie", "skip")
TOKEN_HEADER = "X-Alignkit-Token"
TOKEN_COOKIE = "alignkit_token"
MAX_BODY_BYTES = 1 << 16
MAX_NAME_CHARS = 100
STATIC = {  # path -> (file in static/, content type)
    "/": ("label.html", "text/html; charset=utf-8"),
    "/label.js": ("label.js", "text/javascript; charset=utf-8"),
    "/label.css": ("label.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class RequestError(Exception):
    """A refused request: answered with `status` and `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line without its newline (a writer killed mid-line, never acknowledged),
    so the next append starts on a line of its own. True when something was cut."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
        os.fsync(f.fileno())
    return True


class LabelSession:
    """The pairs, each annotator's verdicts in force, and the append-only verdicts file."""

    def __init__(self, pairs: list[LabelPair], verdicts: Path, seed: int, annotator: str = ""):
        self.pairs = pairs
        self.index = {pair.pair_id: i for i, pair in enumerate(pairs)}
        self.path = verdicts
        self.seed = seed
        self.default_annotator = annotator
        self.lock = threading.RLock()
        self.done: dict[str, dict[str, int]] = {}  # annotator -> {pair id: order of its line}
        self.clock = itertools.count()
        self._load()

    def _load(self) -> None:
        verdicts = read_verdicts(self.path) if self.path.exists() else []
        self.done = {}
        self.clock = itertools.count(len(verdicts))
        for order, verdict in enumerate(verdicts):  # file order of the winning lines
            if verdict.pair_id in self.index:
                self.done.setdefault(verdict.annotator, {})[verdict.pair_id] = order

    def _append(self, row: dict[str, Any]) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(jsonl_line(row))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise RequestError(f"cannot write {self.path}: {exc.strerror or exc}", 500) from exc

    def state(self, annotator: str, focus: str | None = None) -> dict[str, Any]:
        """The annotator's progress and the pair to show: `focus` (the pair just undone)
        when it has no verdict, else their first pair without one (None when all have)."""
        with self.lock:
            done = dict(self.done.get(annotator, {}))
        if focus is None or focus in done:
            focus = next((p.pair_id for p in self.pairs if p.pair_id not in done), None)
        shown = None
        if focus is not None:
            pair = self.pairs[self.index[focus]]
            a_left = shown_left(self.seed, focus) == "a"
            left, right = (pair.a, pair.b) if a_left else (pair.b, pair.a)
            shown = {
                "pair_id": focus,
                "prompt": prompt_json(pair.prompt),
                "left": left,
                "right": right,
            }
        total = len(self.pairs)
        return {"annotator": annotator, "labelled": len(done), "total": total, "pair": shown}

    def verdict(self, annotator: str, pair_id: str, choice: str) -> dict[str, Any]:
        """Record `choice` (left/right/tie/skip) translated to a/b; the annotator's next state."""
        with self.lock:
            if pair_id not in self.index:
                raise RequestError(f"unknown pair id {pair_id!r}: it is not in the pairs file")
            done = self.done.setdefault(annotator, {})
            if pair_id in done:
                raise RequestError(
                    f"pair {pair_id} already has a verdict from {annotator}: undo it first", 409
                )
            pair = self.pairs[self.index[pair_id]]
            left = shown_left(self.seed, pair_id)
            value = {"left": left, "right": "b" if left == "a" else "a"}.get(choice, choice)
            verdict = Verdict(pair_id, value, annotator, left, _now(), pair.prompt, pair.a, pair.b)
            self._append(verdict.to_json())
            done[pair_id] = next(self.clock)
            return self.state(annotator)

    def undo(self, annotator: str) -> dict[str, Any]:
        """Cancel the annotator's latest verdict in force; the state shows that pair again."""
        with self.lock:
            done = self.done.get(annotator)
            if not done:
                raise RequestError(f"{annotator} has no verdict to undo")
            pair_id = max(done, key=done.__getitem__)
            self._append({"pair_id": pair_id, "undo": True, "annotator": annotator, "time": _now()})
            self._load()  # the file decides what holds now (an earlier verdict may be back)
            return self.state(annotator, focus=pair_id)


# ------------------------------------------------------------------ request parsing


def _annotator(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise RequestError(
            f"'annotator' must be a name of 1 to {MAX_NAME_CHARS} printable characters"
        )
    return name


def _field(body: dict[str, Any], key: str, allowed: tuple[str, ...] | None = None) -> str:
    value = body.get(key)
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        expected = f"one of {', '.join(allowed)}" if allowed else "a string"
        raise RequestError(f"'{key}' must be {expected}")
    return value


def _host_name(host: str) -> str:
    return host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]


# ------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    server: LabelServer
    server_version = "alignkit-label"

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout  # each read or write of the socket
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, data: bytes, content_type: str, cookie: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode(), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, an unsupported method such as
        OPTIONS or PUT, over-long headers) as a JSON error with the `SECURITY_HEADERS` of
        every other answer; the connection is closed after it."""
        self.close_connection = True
        short = self.responses.get(code, ("error",))[0]
        body = json.dumps({"error": message or short}).encode()
        self._send(code, b"" if self.command == "HEAD" else body, "application/json")

    def _check_access(self, query: dict[str, list[str]]) -> None:
        token = self.server.token
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            # a browser names the page that sent the request: another site's page (CSRF) or
            # a sandboxed one ("null") is refused, whatever it sends
            raise RequestError(f"cross-origin requests are refused (Origin {origin})", 403)
        if token is None:  # loopback only: refuse other Host names (DNS rebinding)
            if _host_name(host) not in LOOPBACK:
                raise RequestError("this server answers loopback host names only", 403)
            return
        cookies = dict(
            part.strip().split("=", 1)
            for part in self.headers.get("Cookie", "").split(";")
            if "=" in part
        )
        cookie = cookies.get(self.server.cookie_name)
        given = [*query.get("token", []), self.headers.get(TOKEN_HEADER), cookie]
        if not any(g and hmac.compare_digest(g.encode(), token.encode()) for g in given):
            raise RequestError(
                "missing or wrong token: open the URL `alignkit label serve` printed", 403
            )

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            self._check_access(query)
            if method == "GET" and url.path in STATIC:
                name, content_type = STATIC[url.path]
                cookie = ""
                if self.server.token and url.path == "/":
                    # host-only (no Domain), not readable by scripts, never sent cross-site
                    cookie = (
                        f"{self.server.cookie_name}={self.server.token}; Path=/; HttpOnly; "
                        "SameSite=Strict"
                    )
                self._send(200, self.server.static[name], content_type, cookie)
                return
            session = self.server.session
            if method == "GET" and url.path == "/api/config":
                body = {"annotator": session.default_annotator, "total": len(session.pairs)}
            elif method == "GET" and url.path == "/api/state":
                body = session.state(_annotator(query.get("annotator", [""])[0]))
            elif method == "POST" and url.path == "/api/verdict":
                data = self._body()
                body = session.verdict(
                    _annotator(data.get("annotator")),
                    _field(data, "pair_id"),
                    _field(data, "choice", CHOICES),
                )
            elif method == "POST" and url.path == "/api/undo":
                body = session.undo(_annotator(self._body().get("annotator")))
            else:
                raise RequestError(f"no such endpoint: {method} {url.path}", 404)
        except RequestError as exc:
            self._json(exc.status, {"error": exc.message})
            return
        except AlignkitError as exc:  # e.g. the verdicts file was edited into an invalid one
            self._json(500, {"error": str(exc)})
            return
        self._json(200, body)

    def _body(self) -> dict[str, Any]:
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise RequestError("send the body as JSON with Content-Type: application/json")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise RequestError("invalid Content-Length header") from exc
        if not 0 < length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(f"the body must be a JSON object of 1 to {MAX_BODY_BYTES} bytes")
        try:
            data = self.rfile.read(length)
        except TimeoutError as exc:
            self.close_connection = True
            raise RequestError("the request body did not arrive in time", 408) from exc
        try:
            body = load_json(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


class LabelServer(ThreadingHTTPServer):
    """A threaded HTTP server for one `LabelSession` (and its optional access token)."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    socket_timeout = SOCKET_TIMEOUT

    def __init__(self, address: tuple[str, int], session: LabelSession, token: str | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.session = session
        self.token = token
        folder = resources.files("alignkit.labelling") / "static"
        self.static = {name: (folder / name).read_bytes() for name, _ in STATIC.values()}
        super().__init__(address, _Handler)

    @property
    def cookie_name(self) -> str:
        """The token cookie's name: `alignkit_token_PORT` (cookies ignore ports; the port in
        the name keeps two label servers on one host from overwriting each other's)."""
        return f"{TOKEN_COOKIE}_{self.server_address[1]}"

    @property
    def url(self) -> str:
        """The page's URL (with `?token=` when there is a token)."""
        host, port = self.server_address[:2]
        base = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        return f"{base}?token={self.token}" if self.token else base


def make_server(
    pairs: str | Path,
    verdicts: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    seed: int = 0,
    annotator: str = "",
) -> LabelServer:
    """Read the pairs and verdicts and bind (port 0 = any free port); call `serve_forever()`.

    A host other than loopback needs a token (16 or more letters, digits, `-`, `_`, `.`, `~`).
    """
    if token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,256}", token):
        raise AlignkitError("--token must be 16-256 letters, digits, '-', '_', '.' or '~'")
    if host not in LOOPBACK and not token:
        raise AlignkitError(
            f"--host {host} exposes the page to the network: give --token too, e.g. "
            "--token \"$(python -c 'import secrets; print(secrets.token_urlsafe())')\""
        )
    pair_list = read_pairs(pairs)
    path = Path(verdicts)
    path.parent.mkdir(parents=True, exist_ok=True)
    if repair_torn_tail(path):
        print(f"warning: {path} ended in a half-written line; it was cut", file=sys.stderr)
    session = LabelSession(pair_list, path, seed, annotator)
    try:
        return LabelServer((host, port), session, token)
    except OSError as exc:
        raise AlignkitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
