"""`alignkit generate`: sample K answers per prompt into a pool file (resumable)."""

from __future__ import annotations

from typing import Any

from alignkit.labelling.config import GenerateConfig
from alignkit.options import CONFIG_NOTE, add_config_verb

_DESCRIPTION = """\
A policy writes --num-responses answers to every prompt of --prompts into --output, the
pool that `alignkit label select` chooses pairs from. Backends: a local model with batched
Hugging Face generation (hf) or vLLM (when installed and a GPU is there; --backend auto
picks it), or any OpenAI-compatible server (--endpoint: `alignkit serve`, vLLM, SGLang).

Each batch of prompts is appended to the pool as soon as it is done: a killed run loses at
most the batch in flight, and running the same command again continues where it stopped.
OUTPUT.meta.json records the model and sampling settings; resuming with other settings is
refused (give a new --output, or --overwrite)."""

_EPILOG = f"""\
pool line (jsonl, one per prompt):
  {{"prompt": text or chat messages, "responses": [K texts], "finished": [K flags],
   "prompt_id": 16 hex digits, "model": spec or "MODEL @ ENDPOINT"}}
  finished is false for a response cut at --max-new-tokens.

{CONFIG_NOTE}

examples:
  alignkit generate --model default --prompts prompts.jsonl --num-responses 4 \\
      --output pool.jsonl
  alignkit serve --model runs/sft --port 8000 &
  alignkit generate --endpoint http://127.0.0.1:8000/v1 --prompts prompts.jsonl \\
      --num-responses 4 --concurrency 8 --output pool.jsonl
  then `alignkit label select` chooses the pairs to label from pool.jsonl"""


def run(config: GenerateConfig) -> int:
    from alignkit.distributed import distributed_state
    from alignkit.labelling.generate import generate_pool

    summary = generate_pool(config)
    if config.endpoint or distributed_state().is_main_process:  # N processes: print once
        print(summary.describe())
    return 0


def register(subparsers: Any) -> None:
    add_config_verb(
        subparsers,
        "generate",
        GenerateConfig,
        run,
        help="sample K answers per prompt into a pool to label (hf, vLLM or an endpoint)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
