"""Serving until a signal arrives: the loop of `alignkit serve` and `alignkit label serve`."""

from __future__ import annotations

import signal
import threading
from typing import Any


def _stop_on_signals() -> None:
    """Ctrl-C (also when started in the background, where SIGINT is ignored) and SIGTERM
    stop the server."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)


def serve_until_signal(server: Any, started: str, stopped: str) -> None:
    """Run `server.serve_forever()` until Ctrl-C or SIGTERM, then close it. The handlers are
    set before `started` is printed: a client may signal as soon as it reads that line."""
    _stop_on_signals()
    print(started, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print(stopped, flush=True)
