"""`alignkit serve`: chat with a local model through an OpenAI-compatible HTTP API."""

from __future__ import annotations

from typing import Any

from alignkit.commands.serving import serve_until_signal
from alignkit.inference.config import ServeConfig
from alignkit.options import add_config_verb

_DESCRIPTION = """\
Serve one local model through an OpenAI-compatible HTTP API (POST /v1/chat/completions,
POST /v1/completions, GET /v1/models), with streaming ("stream": true, server-sent events) and
n choices per request. One generation runs at a time; other requests wait their turn (a
streamed reply never holds the model while its client reads). On loopback (the default) it
answers loopback Host names only; another --host needs --api-key (or $ALIGNKIT_API_KEY), which
every request must then send as `Authorization: Bearer KEY`. Bodies must be application/json;
cross-origin browser requests are refused. Stop it with Ctrl-C."""

_EPILOG = """\
endpoints:
  POST /v1/chat/completions   {messages, max_tokens | max_completion_tokens, temperature, top_p,
                               top_k, seed, stop, n, stream, stream_options.include_usage}
  POST /v1/completions        {prompt (a string or up to 16), max_tokens, temperature, top_p,
                               top_k, seed, stop, n, stream, stream_options.include_usage}
  GET  /v1/models             the one served model
  n <= 16 choices, each its own sample (choice i uses seed + i); top_k 0 or -1 = off.
  Parameters that would change the output but are not implemented (penalties, logprobs,
  tools, response_format other than text, echo, suffix, best_of > 1, vLLM's min_tokens,
  ignore_eos, stop_token_ids, guided_*, typical_p, ...) are refused with 400, as is a prompt
  that leaves no room for max_tokens in the model's context.
  A client that disconnects stops its generation; --request-timeout (600 s) bounds a
  non-streamed request (408).

examples:
  alignkit serve --model default
  alignkit serve --model runs/dpo --port 8001        # a run directory (its model/)
  alignkit serve --model runs/dpo-lora/model         # a LoRA adapter (base from summary.json)
  ALIGNKIT_API_KEY=KEY alignkit serve --model default --host 0.0.0.0   # on the network
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}'
  curl -N http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"prompt": "Once upon a time", "max_tokens": 32, "stream": true}'
  OpenAI clients: base_url="http://127.0.0.1:8000/v1" (api_key: the --api-key if any; any
  model name)
"""


def register(subparsers: Any) -> None:
    add_config_verb(
        subparsers,
        "serve",
        ServeConfig,
        run,
        help="serve a local model through an OpenAI-compatible API (chat, completions, streaming)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        show_defaults=False,
    )


def run(config: ServeConfig) -> int:
    from alignkit.inference.server import ChatModel, make_server
    from alignkit.models import generation_dtype, load_inference_model

    assert config.model is not None  # required
    loaded = load_inference_model(config.model, config.trust_remote_code)
    device = next(loaded.model.parameters()).device
    dtype = generation_dtype(config.precision, device)
    chat = ChatModel(loaded, config.model, config.max_new_tokens, dtype)
    key = config.resolved_api_key()
    server = make_server(
        chat, config.host, config.port, key, request_timeout=config.request_timeout
    )
    started = f"serving {loaded.description} at {server.url} (Ctrl-C to stop)"
    serve_until_signal(server, started, "server stopped")
    return 0
