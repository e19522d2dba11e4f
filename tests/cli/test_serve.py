"""`alignkit serve` end to end: a subprocess stopped with Ctrl-C, and the usage errors."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from conftest import chat_body, get, post

from alignkit.cli import main
from alignkit.inference.config import ServeConfig


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


def test_serve_cli_errors(tiny_model, capsys):
    assert main(["serve", "--model", tiny_model, "--max-new-tokens", "0"]) == 2
    assert main(["serve", "--model", tiny_model, "--port", "70000"]) == 2
    assert main(["serve", "--model", tiny_model, "--request-timeout", "-1"]) == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", tiny_model, "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_serve_off_loopback_needs_an_api_key(tiny_model, capsys, monkeypatch):
    monkeypatch.delenv("ALIGNKIT_API_KEY", raising=False)
    assert main(["serve", "--model", tiny_model, "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 exposes the server to the network: give --api-key" in err
    monkeypatch.setenv("ALIGNKIT_API_KEY", "from-the-environment")
    config = ServeConfig(model=tiny_model, host="0.0.0.0")
    config.validate()  # the key may come from $ALIGNKIT_API_KEY
    assert config.resolved_api_key() == "from-the-environment"
    assert "from-the-environment" not in repr(config)
