"""`alignkit label serve`: the labelling page driven in a real headless Chromium (keys, clicks,
undo, kill and restart, model text shown as text), and its HTTP API (token, errors, appends)."""

from __future__ import annotations

import argparse
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import expect, half_request, length_reward, on_screen, run_label, serving  # noqa: F401

from alignkit.errors import AlignkitError, DataError
from alignkit.labelling import server as label_server
from alignkit.labelling.pairs import pair_id, read_verdicts, shown_left
from alignkit.labelling.server import make_server

TOKEN = "s3cret-Token_1-of-21"

PAIRS = [
    ("How do I keep bread fresh?", "Wrap it in a cloth bag.", "Put it in the fridge."),
    ("Name a prime number.", "7", "9"),
    (
        [
            {"role": "system", "content": "You answer in one sentence."},
            {"role": "user", "content": "Why is the sky blue?"},
        ],
        "Air scatters blue light more than red light.",
        "Because it reflects the ocean.",
    ),
    ("Translate 'merci' to English.", "Thank you.", "Please."),
    ("Is 0.1 + 0.2 == 0.3 in Python?", "No, it is 0.30000000000000004.", "Yes."),
    ("Suggest a name for a cat.", "Miso", "Cat"),
]


def write_pairs(path: Path, pairs: list[tuple[Any, str, str]]) -> list[dict[str, Any]]:
    rows = [
        {
            "pair_id": pair_id(p, a, b),
            "prompt": p,
            "a": a,
            "b": b,
            "score": None,
            "strategy": "easy",
        }
        for p, a, b in pairs
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    pairs = tmp_path / "pairs.jsonl"
    return pairs, tmp_path / "verdicts.jsonl", write_pairs(pairs, PAIRS)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_orders_differ_between_pairs_and_stay_fixed(files: Any) -> None:
    ids = [row["pair_id"] for row in files[2]]
    orders = [shown_left(0, i) for i in ids]
    assert set(orders) == {"a", "b"}  # both orders occur, so the a/b translation is tested
    assert orders == [shown_left(0, i) for i in ids]
    assert [shown_left(1, i) for i in ids] != orders or [shown_left(2, i) for i in ids] != orders


def test_label_in_browser_with_keys_clicks_undo_and_restart(files: Any, browser: Any) -> None:
    pairs, verdicts, rows = files
    flip = {"a": "b", "b": "a"}
    expected: dict[str, str] = {}  # pair id -> the verdict the person meant, in a/b terms

    def act(page: Any, do: Any, meaning: str, progress: str) -> None:
        row, left = on_screen(page, rows)
        assert row["pair_id"] == rows[len(expected)]["pair_id"]  # pairs come in file order
        do()
        expect(page.locator("#progress-text")).to_have_text(progress)
        expected[row["pair_id"]] = {"left": left, "right": flip[left]}.get(meaning, meaning)

    with serving(pairs, verdicts) as server:
        port = server.server_address[1]
        page = browser.new_page()
        page.goto(server.url)
        expect(page.locator("#message")).to_contain_text("Type your name")
        page.click("#annotator")
        page.keyboard.type("ana")
        page.keyboard.press("Enter")
        expect(page.locator("#progress-text")).to_have_text("0 / 6 labelled")
        assert page.locator("#prompt .content").inner_text() == PAIRS[0][0]
        act(page, lambda: page.keyboard.press("a"), "left", "1 / 6 labelled")
        act(page, lambda: page.keyboard.press("b"), "right", "2 / 6 labelled")
        # pair 2 is a chat: one role-labelled block per message
        roles = page.locator("#prompt .role").all_inner_texts()
        assert [r.lower() for r in roles] == ["system", "user"]
        if os.environ.get("ALIGNKIT_SCREENSHOT_DIR"):
            shots = Path(os.environ["ALIGNKIT_SCREENSHOT_DIR"])
            shots.mkdir(parents=True, exist_ok=True)
            page.set_viewport_size({"width": 1100, "height": 640})
            page.screenshot(path=str(shots / "label_serve.png"), full_page=True)
        act(page, lambda: page.keyboard.press("t"), "tie", "3 / 6 labelled")
        act(page, lambda: page.keyboard.press("s"), "skip", "4 / 6 labelled")
        page.keyboard.press("u")  # undo the skip: pair 3 comes back
        expect(page.locator("#progress-text")).to_have_text("3 / 6 labelled")
        del expected[rows[3]["pair_id"]]
        act(page, lambda: page.click("#btn-right"), "right", "4 / 6 labelled")
        act(page, lambda: page.keyboard.press("ArrowLeft"), "left", "5 / 6 labelled")
        page.click("#btn-undo")
        expect(page.locator("#progress-text")).to_have_text("4 / 6 labelled")
        del expected[rows[4]["pair_id"]]
        act(page, lambda: page.click("#btn-left"), "left", "5 / 6 labelled")

    # the server is gone; the file holds every verdict, in a/b terms, with its shown order
    written = lines(verdicts)
    assert len(written) == 9  # 7 verdicts + 2 undo lines
    undo_lines = [w for w in written if w.get("undo")]
    assert [w["pair_id"] for w in undo_lines] == [rows[3]["pair_id"], rows[4]["pair_id"]]
    for w in written:
        assert w["annotator"] == "ana"
        if not w.get("undo"):
            assert w["shown_left"] == shown_left(0, w["pair_id"])
    assert written[3]["verdict"] == "skip"
    in_force = read_verdicts(verdicts)
    assert {v.pair_id: v.verdict for v in in_force} == expected
    assert len(expected) == 5
    assert {v.verdict for v in in_force} >= {"a", "b", "tie"}
    assert {v.shown_left for v in in_force} == {"a", "b"}

    # a new server on the same files (and port: the name stays in localStorage) resumes
    with serving(pairs, verdicts, port=port):
        page.reload()
        assert page.input_value("#annotator") == "ana"
        expect(page.locator("#progress-text")).to_have_text("5 / 6 labelled")
        assert on_screen(page, rows)[0]["pair_id"] == rows[5]["pair_id"]
        page.keyboard.press("t")
        expect(page.locator("#progress-text")).to_have_text("6 / 6 labelled")
        expect(page.locator("#finished")).to_be_visible()
        expect(page.locator("#answers")).to_be_hidden()
        assert page.get_attribute("#progress", "value") == "6"
    assert len(read_verdicts(verdicts)) == 6
    page.close()


def test_model_text_is_shown_as_text_not_run(tmp_path: Path, browser: Any) -> None:
    script, img = "<script>window.__pwned=1</script>", '<img src=x onerror="window.__pwned=2">'
    prompt = [{"role": "user", "content": "<b onmouseover=alert(1)>hi</b>"}]
    pairs, verdicts = tmp_path / "pairs.jsonl", tmp_path / "verdicts.jsonl"
    write_pairs(pairs, [(prompt, script, img)])
    with serving(pairs, verdicts, annotator="eve") as server:
        page = browser.new_page()
        page.goto(server.url)
        expect(page.locator("#progress-text")).to_have_text("0 / 1 labelled")
        assert page.input_value("#annotator") == "eve"  # prefilled from --annotator
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__pwned") is None
        assert {page.inner_text("#left"), page.inner_text("#right")} == {script, img}
        assert page.inner_text("#prompt .content") == prompt[0]["content"]
        assert page.locator("main img, main script, main b").count() == 0
        page.keyboard.press("b")
        expect(page.locator("#finished")).to_be_visible()
        assert page.evaluate("window.__pwned") is None
        page.close()
    (verdict,) = read_verdicts(verdicts)
    assert verdict.verdict == ("b" if verdict.shown_left == "a" else "a")
    assert (verdict.a, verdict.b) == (script, img)


def test_browser_with_token(files: Any, browser: Any) -> None:
    pairs, verdicts, rows = files
    with serving(pairs, verdicts, token=TOKEN, annotator="tom") as server:
        page = browser.new_page()
        refused = page.goto(server.url.split("?")[0])
        assert refused.status == 403
        assert "token" in page.inner_text("body")
        page.goto(server.url)
        expect(page.locator("#progress-text")).to_have_text("0 / 6 labelled")
        left = on_screen(page, rows)[1]
        page.keyboard.press("a")
        expect(page.locator("#progress-text")).to_have_text("1 / 6 labelled")
        page.close()
    (verdict,) = read_verdicts(verdicts)
    assert (verdict.annotator, verdict.verdict, verdict.shown_left) == ("tom", left, left)


# ------------------------------------------------------------------ HTTP


def call(
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, Any]:
    """(status, parsed JSON or text, headers) of a GET (no body) or POST."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=all_headers)
    try:
        with urllib.request.urlopen(request) as response:
            status, text, info = response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        status, text, info = exc.code, exc.read().decode(), exc.headers
    try:
        return status, json.loads(text), info
    except json.JSONDecodeError:
        return status, text, info


def base(server: label_server.LabelServer) -> str:
    return server.url.split("?")[0].rstrip("/")


def test_slow_clients_are_dropped(files: Any) -> None:
    pairs, verdicts, _ = files
    with serving(pairs, verdicts, token=TOKEN) as server:
        assert server.request_queue_size >= 128
        server.socket_timeout = 0.5
        port = server.server_address[1]
        head = f"POST /api/verdict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        assert half_request(port, head) == b""  # half the headers: closed, no answer
        head += f"X-Alignkit-Token: {TOKEN}\r\nContent-Type: application/json\r\n".encode()
        head += b"Content-Length: 100\r\n\r\n{"
        assert half_request(port, head).startswith(b"HTTP/1.0 408")  # half the body
        assert call(base(server) + "/api/config", headers={"X-Alignkit-Token": TOKEN})[0] == 200
        deep = call(f"{base(server)}/api/verdict?token={TOKEN}", raw=b"[" * 60_000)
        assert deep[0] == 400 and "nested too deeply" in deep[1]["error"]
    assert not verdicts.exists()


def test_token_is_required_on_every_request(files: Any) -> None:
    pairs, verdicts, rows = files
    verdict = {"annotator": "x", "pair_id": rows[0]["pair_id"], "choice": "left"}
    with serving(pairs, verdicts, token=TOKEN) as server:
        url = base(server)
        for path in ("/", "/label.js", "/api/config", "/api/state?annotator=x"):
            assert call(url + path)[0] == 403
            assert call(f"{url}{path}{'&' if '?' in path else '?'}token=wrong")[0] == 403
        assert call(url + "/api/verdict", verdict)[0] == 403
        assert call(url + "/api/verdict", verdict, {"X-Alignkit-Token": "wrong"})[0] == 403
        assert not verdicts.exists()
        status, page, headers = call(f"{url}/?token={TOKEN}")
        assert status == 200 and "<title>alignkit label</title>" in page
        # host-only (no Domain), named after the port: cookies ignore ports (A16)
        cookie, *attributes = headers["Set-Cookie"].split("; ")
        port = server.server_address[1]
        assert cookie == f"alignkit_token_{port}={TOKEN}"
        assert attributes == ["Path=/", "HttpOnly", "SameSite=Strict"]
        assert call(url + "/api/state?annotator=x", headers={"Cookie": cookie})[0] == 200
        other_port = {"Cookie": f"alignkit_token_{port + 1}={TOKEN}"}  # another label server's
        assert call(url + "/api/state?annotator=x", headers=other_port)[0] == 403
        assert call(url + "/api/verdict", verdict, {"X-Alignkit-Token": TOKEN})[0] == 200
    assert len(lines(verdicts)) == 1


def test_non_loopback_host_needs_a_token(files: Any) -> None:
    pairs, verdicts, _ = files
    with pytest.raises(AlignkitError, match="--token"):
        make_server(pairs, verdicts, host="0.0.0.0", port=0)
    with pytest.raises(AlignkitError, match="--token must be"):
        make_server(pairs, verdicts, port=0, token="has space but is long")
    with pytest.raises(AlignkitError, match="--token must be 16-256"):
        make_server(pairs, verdicts, host="0.0.0.0", port=0, token="a")  # guessable
    with serving(pairs, verdicts) as server:  # no token: only loopback Host names (rebinding)
        assert call(base(server) + "/api/config", headers={"Host": "evil.example"})[0] == 403
        assert call(base(server) + "/api/config")[0] == 200


def test_page_headers_forbid_inline_scripts(files: Any) -> None:
    pairs, verdicts, _ = files
    with serving(pairs, verdicts) as server:
        url = base(server)
        for path, kind in (("/", "text/html"), ("/label.js", "text/javascript")):
            status, text, headers = call(url + path)
            assert status == 200 and headers["Content-Type"].startswith(kind)
            assert headers["X-Content-Type-Options"] == "nosniff"
            csp = headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
        page = call(url + "/")[1]
        assert re.findall(r"<script[^>]*>", page) == ['<script src="/label.js">']
        script = call(url + "/label.js")[1]
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document.write", script)


def test_each_post_is_on_disk_when_answered(files: Any) -> None:
    pairs, verdicts, rows = files
    with serving(pairs, verdicts, seed=3) as server:
        url = base(server)
        state = call(url + "/api/state?annotator=bo")[1]
        first = rows[0]
        assert state["labelled"] == 0 and state["total"] == 6
        assert state["pair"]["pair_id"] == first["pair_id"]
        left = shown_left(3, first["pair_id"])
        assert state["pair"]["left"] == first[left]
        body = {"annotator": " bo ", "pair_id": first["pair_id"], "choice": "right"}
        status, state, _ = call(url + "/api/verdict", body)
        assert status == 200 and state["labelled"] == 1
        assert state["pair"]["pair_id"] == rows[1]["pair_id"]
        (line,) = lines(verdicts)
        assert line["verdict"] == {"a": "b", "b": "a"}[left] and line["shown_left"] == left
        assert (line["annotator"], line["prompt"], line["a"]) == ("bo", first["prompt"], first["a"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["time"])
        body = {"annotator": "bo", "pair_id": rows[1]["pair_id"], "choice": "tie"}
        assert call(url + "/api/verdict", body)[1]["labelled"] == 2
        assert lines(verdicts)[1]["verdict"] == "tie"
        status, state, _ = call(url + "/api/undo", {"annotator": "bo"})
        assert status == 200 and state["labelled"] == 1
        assert state["pair"]["pair_id"] == rows[1]["pair_id"]
        assert lines(verdicts)[2] == {
            "pair_id": rows[1]["pair_id"],
            "undo": True,
            "annotator": "bo",
            "time": lines(verdicts)[2]["time"],
        }
        assert call(url + "/api/undo", {"annotator": "bo"})[1]["labelled"] == 0
        assert len(lines(verdicts)) == 4
        assert call(url + "/api/state?annotator=other")[1]["labelled"] == 0
    assert read_verdicts(verdicts) == []


def test_bad_requests_are_refused_with_a_message(files: Any) -> None:
    pairs, verdicts, rows = files
    pid = rows[0]["pair_id"]
    with serving(pairs, verdicts) as server:
        url = base(server)
        good = {"annotator": "x", "pair_id": pid, "choice": "left"}
        cases = [
            ({**good, "pair_id": "0123456789abcdef"}, 400, "unknown pair id"),
            ({**good, "choice": "A"}, 400, "'choice' must be one of left, right, tie, skip"),
            ({**good, "annotator": ""}, 400, "'annotator'"),
            ({**good, "annotator": "x" * 101}, 400, "'annotator'"),
            ({"annotator": "x", "choice": "left"}, 400, "'pair_id'"),
            ([good], 400, "JSON object"),
        ]
        for body, status, message in cases:
            got = call(url + "/api/verdict", body)
            assert got[0] == status and message in got[1]["error"], (body, got)
        assert call(url + "/api/verdict", raw=b"{not json")[0] == 400
        text_plain = call(url + "/api/verdict", good, {"Content-Type": "text/plain"})
        assert text_plain[0] == 400 and "application/json" in text_plain[1]["error"]
        assert call(url + "/api/undo", {"annotator": "x"})[1]["error"] == "x has no verdict to undo"
        assert call(url + "/api/state")[0] == 400
        assert call(url + "/api/nothing")[0] == 404
        assert not verdicts.exists()  # nothing refused was written
        assert call(url + "/api/verdict", good)[0] == 200
        status, body, _ = call(url + "/api/verdict", good)
        assert status == 409 and "undo it first" in body["error"]
    assert len(lines(verdicts)) == 1


def test_restart_resumes_each_annotator_at_their_first_unlabelled_pair(files: Any) -> None:
    pairs, verdicts, rows = files
    ids = [r["pair_id"] for r in rows]
    written = [
        {"pair_id": ids[0], "verdict": "a", "annotator": "ana", "shown_left": "a"},
        {"pair_id": ids[2], "verdict": "skip", "annotator": "ana", "shown_left": "b"},
        {"pair_id": ids[1], "verdict": "b", "annotator": "ana", "shown_left": "a"},
        {"pair_id": ids[1], "undo": True, "annotator": "ana"},
        {"pair_id": ids[0], "verdict": "tie", "annotator": "bob", "shown_left": "a"},
    ]
    text = "".join(json.dumps(w) + "\n" for w in written)
    verdicts.write_text(text + '{"pair_id": "cut off by a ki', encoding="utf-8")
    with serving(pairs, verdicts) as server:
        url = base(server)
        ana = call(url + "/api/state?annotator=ana")[1]
        assert (ana["labelled"], ana["pair"]["pair_id"]) == (2, ids[1])
        bob = call(url + "/api/state?annotator=bob")[1]
        assert (bob["labelled"], bob["pair"]["pair_id"]) == (1, ids[1])
        assert call(url + "/api/state?annotator=cy")[1]["pair"]["pair_id"] == ids[0]
        body = {"annotator": "ana", "pair_id": ids[1], "choice": "skip"}
        assert call(url + "/api/verdict", body)[1]["pair"]["pair_id"] == ids[3]
    assert verdicts.read_text(encoding="utf-8").startswith(text)  # the torn line was cut
    assert len(lines(verdicts)) == 6


def test_pairs_file_errors_name_the_file_and_line(tmp_path: Path, files: Any) -> None:
    pairs, verdicts, rows = files
    with pytest.raises(AlignkitError, match="cannot read"):
        make_server(tmp_path / "missing.jsonl", verdicts, port=0)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(AlignkitError, match="no pairs"):
        make_server(empty, verdicts, port=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "a": "changed"}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{bad}:2")):
        make_server(bad, verdicts, port=0)


def test_cli_flags() -> None:
    from alignkit.commands import label
    from alignkit.labelling.config import LabelServeConfig
    from alignkit.options import build_config

    parser = argparse.ArgumentParser()
    label.register(parser.add_subparsers())
    args = parser.parse_args(["label", "serve", "--pairs", "p.jsonl", "--verdicts", "v.jsonl"])
    config = build_config(LabelServeConfig, args)
    assert (config.host, config.port, config.token, config.seed, config.annotator) == (
        "127.0.0.1",
        8080,
        None,
        0,
        "",
    )
    args = parser.parse_args(
        ["label", "serve", "--pairs", "p", "--verdicts", "v", "--port", "70000"]
    )
    with pytest.raises(AlignkitError, match="--port"):
        args.func(args)


def test_line_separators_in_answers_survive_select_serve_and_import(tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 in a model answer: the pool (as `generate` appends it, and as
    another tool writes it, raw) → `label select` → the pairs file → the server → the verdicts
    file → `label import`, every file read back with the characters intact."""
    from alignkit.io import read_jsonl
    from alignkit.labelling.generate import append_rows

    seps = ["\u2028", "\u2029", "\x85"]
    pool = tmp_path / "pool.jsonl"
    append_rows(
        str(pool), [{"prompt": f"q{sep}", "responses": [f"one{sep}two", "x"]} for sep in seps]
    )
    raw = {"prompt": "raw", "responses": ["a\u2028b", "c\x85d"]}  # not escaped: still read
    with open(pool, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(raw, ensure_ascii=False) + "\n")
    assert all(sep.encode() not in pool.read_bytes().split(b"\n")[0] for sep in seps)
    pairs, verdicts, prefs = (tmp_path / name for name in ("pairs.jsonl", "v.jsonl", "p.jsonl"))
    assert run_label("select", "--pool", str(pool), "--strategy", "uncertainty", "--budget", "4",
                     "--reward-model", f"{__name__}:length_reward",
                     "--output", str(pairs)) == 0  # fmt: skip
    assert len(read_jsonl(pairs)) == 4
    shown = set()
    with serving(pairs, verdicts) as server:
        url = base(server)
        for _ in range(4):
            pair = call(url + "/api/state?annotator=ann")[1]["pair"]
            shown |= {pair["left"], pair["right"]}
            body = {"annotator": "ann", "pair_id": pair["pair_id"], "choice": "left"}
            assert call(url + "/api/verdict", body)[0] == 200
    assert {f"one{sep}two" for sep in seps} | {"a\u2028b", "c\x85d"} <= shown
    assert len(read_verdicts(verdicts)) == 4
    assert run_label("import", str(verdicts), "--pairs", str(pairs), "--output", str(prefs)) == 0
    answers = {text for row in read_jsonl(prefs) for text in (row["chosen"], row["rejected"])}
    assert answers == {f"one{sep}two" for sep in seps} | {"x", "a\u2028b", "c\x85d"}
    for path in (pairs, verdicts, prefs):  # written escaped: `str.splitlines()` agrees
        assert len(path.read_text(encoding="utf-8").splitlines()) == len(read_jsonl(path))


def test_a_deeply_nested_body_is_a_400(files: Any) -> None:
    pairs, verdicts, _ = files
    with serving(pairs, verdicts) as server:
        status, body, _ = call(base(server) + "/api/verdict", raw=b"[" * 60_000)
    assert status == 400 and "not valid JSON" in body["error"]


def test_a_cross_site_origin_is_refused(files: Any) -> None:
    """A6: a page of another site (or a sandboxed one, Origin "null") cannot post verdicts,
    with or without the token; the page's own origin can."""
    pairs, verdicts, rows = files
    verdict = {"annotator": "x", "pair_id": rows[0]["pair_id"], "choice": "left"}
    for token in (None, TOKEN):
        with serving(pairs, verdicts, token=token) as server:
            url, host = base(server), base(server).split("//")[1]
            auth = {"X-Alignkit-Token": TOKEN} if token else {}
            for origin in ("http://evil.example", "null", f"http://{host}.evil.example"):
                got = call(url + "/api/verdict", verdict, {**auth, "Origin": origin})
                assert got[0] == 403 and "cross-origin" in got[1]["error"], (origin, got)
            assert (
                call(url + "/api/config", headers={**auth, "Origin": "http://evil.example"})[0]
                == 403
            )
            assert not verdicts.exists()
            same = call(url + "/api/verdict", verdict, {**auth, "Origin": f"http://{host}"})
            assert same[0] == 200
        verdicts.unlink()


def _raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers, body) of a raw request (the server closes the connection)."""
    answer = half_request(port, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


def test_http_servers_own_error_pages_carry_the_security_headers(files: Any) -> None:
    """A13: http.server's own answers (501 for OPTIONS and PUT, 400 for a bad request line)
    carry the same CSP, nosniff, no-referrer and no-store headers, as JSON."""
    pairs, verdicts, _ = files
    with serving(pairs, verdicts, token=TOKEN) as server:
        port = server.server_address[1]
        host = f"Host: 127.0.0.1:{port}\r\n\r\n".encode()
        for request, code in (
            (b"OPTIONS /api/verdict HTTP/1.1\r\n" + host, "501"),
            (b"PUT / HTTP/1.1\r\n" + host, "501"),
            (b"GET / / HTTP/1.1\r\n" + host, "400"),
            (b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000 + b"\r\n" + host, "431"),
        ):
            status, headers, body = _raw(port, request)
            assert status.split()[1] == code, status
            for name, value in label_server.SECURITY_HEADERS.items():
                assert headers[name] == value, (request[:20], name)
            assert headers["Content-Type"] == "application/json"
            assert "error" in json.loads(body)
