"""`alignkit serve`: chat with a local model through an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

_DESCRIPTION = """\
Serve one local model through an OpenAI-compatible HTTP API (POST /v1/chat/completions,
POST /v1/completions, GET /v1/models), with streaming ("stream": true, server-sent events) and
n choices per request. One generation runs at a time; other requests wait their turn (a
streamed reply never holds the model while its client reads). The server has no
authentication: keep the default host unless you mean to expose it. Stop it with Ctrl-C."""

_EPILOG = """\
endpoints:
  POST /v1/chat/completions   {messages, max_tokens | max_completion_tokens, temperature, top_p,
                               top_k, seed, stop, n, stream, stream_options.include_usage}
  POST /v1/completions        {prompt (a string or up to 16), max_tokens, temperature, top_p,
                               top_k, seed, stop, n, stream, stream_options.include_usage}
  GET  /v1/models             the one served model
  n <= 16 choices, each its own sample (choice i uses seed + i); top_k 0 or -1 = off.
  Parameters that would change the output but are not implemented (penalties, logprobs,
  tools, response_format other than text, echo, suffix, best_of > 1) are refused with 400.

examples:
  alignkit serve --model default
  alignkit serve --model runs/dpo --port 8001        # a run directory (its model/)
  alignkit serve --model runs/dpo-lora/model         # a LoRA adapter (base from summary.json)
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}'
  curl -N http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"prompt": "Once upon a time", "max_tokens": 32, "stream": true}'
  OpenAI clients: base_url="http://127.0.0.1:8000/v1" (any api_key, any model name)
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a local model through an OpenAI-compatible API (chat, completions, streaming)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        help="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id or model folder, "
        "a run directory of `alignkit train` (its model/), or a peft adapter folder written by "
        "`alignkit train --lora` (base model from the run's summary.json or adapter_config.json)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the "
        "unauthenticated server to the network)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on; 0 picks a free one (default: 8000)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        default=256,
        help="tokens generated per choice when a request gives no max_tokens, and the upper "
        "limit when it does (default: 256)",
    )
    parser.set_defaults(func=run)


def _stop_on_signals() -> None:
    """Ctrl-C (also when started in the background, where SIGINT is ignored) and SIGTERM
    stop the server."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    from alignkit.errors import AlignkitError
    from alignkit.inference.server import ChatModel, make_server
    from alignkit.models import generation_dtype, load_inference_model

    if args.max_new_tokens < 1:
        raise AlignkitError("--max-new-tokens must be at least 1")
    if not 0 <= args.port <= 65535:
        raise AlignkitError("--port must be between 0 and 65535")
    loaded = load_inference_model(args.model)
    device = next(loaded.model.parameters()).device
    chat = ChatModel(loaded, args.model, args.max_new_tokens, generation_dtype("auto", device))
    server = make_server(chat, args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host} without authentication", file=sys.stderr)
    _stop_on_signals()  # before announcing: a client may signal as soon as it reads the line
    print(f"serving {loaded.description} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("server stopped", flush=True)
    return 0
