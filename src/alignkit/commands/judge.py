"""`alignkit judge`: win rate of one set of generations over another by an LLM judge."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Compare two generations files (jsonl {"prompt", "response"}, as `alignkit eval` writes) prompt
by prompt with an LLM judge. Each comparison is asked twice with the answers swapped:
A wins when preferred in both orders, ties when preferred once, loses when never (PLE
protocol). Replies naming neither answer are counted as unparseable. Replies are cached,
so an interrupted run resumes without asking again."""

_EPILOG = """\
judges (--judge):
  local:MODEL       a local causal LM, greedy (MODEL as for `alignkit serve --model`)
  http:BASE_URL     an OpenAI-compatible endpoint, e.g. http:http://127.0.0.1:8000/v1
                    (a bare http:// or https:// URL works too)

output: DIR/judge.json (counts, win rates, per-prompt verdicts), DIR/judge_cache.jsonl

examples:
  alignkit judge --a runs/dpo/gens.jsonl --b runs/sft/gens.jsonl --judge local:default
  OPENAI_API_KEY=... alignkit judge --a a.jsonl --b b.jsonl \\
      --judge http:https://api.openai.com/v1 --judge-model gpt-4o-mini \\
      --api-key-env OPENAI_API_KEY --output runs/judge-dpo-vs-sft
"""

# flags that only apply to http judges: name -> default
_HTTP_DEFAULTS: dict[str, Any] = {
    "judge_model": None,
    "api_key_env": None,
    "concurrency": 4,
    "timeout": 60.0,
    "retries": 4,
    "retry_wait": 1.0,
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "judge",
        help="win rate of generations A over B by an LLM judge (both orders)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--a", required=True, metavar="GENS_A.jsonl", help="generations of system A")
    add("--b", required=True, metavar="GENS_B.jsonl", help="generations of system B (same prompts)")
    add("--judge", required=True, metavar="SPEC", help="local:MODEL or http:BASE_URL (see below)")
    add("--output", default="runs/judge", metavar="DIR", help="output folder (default: runs/judge)")
    add(
        "--cache",
        metavar="FILE.jsonl",
        help="reply cache, shareable between runs; keyed by the --judge spec, so delete it "
        "when the judge model changes under the same name (default: DIR/judge_cache.jsonl)",
    )
    add(
        "--max-tokens",
        type=int,
        default=16,
        metavar="N",
        help="tokens per judge reply (default: 16)",
    )
    http = parser.add_argument_group("http judges only")
    http.add_argument(
        "--judge-model",
        metavar="NAME",
        help="model name sent to the endpoint (default: the only one its /models lists)",
    )
    http.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (sent as a bearer token, never "
        "logged or written); default: no key",
    )
    http.add_argument(
        "--concurrency", type=int, metavar="N", help="requests in flight at once (default: 4)"
    )
    http.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="seconds to wait for a reply (default: 60)"
    )
    http.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="retries of a failed request (connection errors, timeouts, HTTP 429/5xx); "
        "then the run stops with exit code 2 (default: 4)",
    )
    http.add_argument(
        "--retry-wait",
        type=float,
        metavar="SECONDS",
        help="wait before the first retry, doubled at each next one (default: 1)",
    )
    parser.set_defaults(func=run)


def _http_options(args: argparse.Namespace, local: bool) -> dict[str, Any]:
    from alignkit.errors import AlignkitError

    given = [k for k in _HTTP_DEFAULTS if getattr(args, k) is not None]
    if local and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise AlignkitError(f"{flags}: only for http judges, not for --judge {args.judge}")
    opts = {
        k: v if getattr(args, k) is None else getattr(args, k) for k, v in _HTTP_DEFAULTS.items()
    }
    limits = {
        "--concurrency must be at least 1": opts["concurrency"] < 1,
        "--retries must not be negative": opts["retries"] < 0,
        "--timeout must be positive": opts["timeout"] <= 0,
        "--retry-wait must not be negative": opts["retry_wait"] < 0,
    }
    for message, broken in limits.items():
        if broken:
            raise AlignkitError(message)
    return opts


def _api_key(var: str | None) -> str | None:
    from alignkit.errors import AlignkitError

    if var is None:
        return None
    key = os.environ.get(var)
    if not key:
        raise AlignkitError(f"--api-key-env {var}: the environment variable {var} is not set")
    return key


def run(args: argparse.Namespace) -> int:
    from alignkit.errors import AlignkitError
    from alignkit.evaluation import win_rate as judging
    from alignkit.evaluation.judges import build_judge
    from alignkit.io import atomic_write_text

    if args.max_tokens < 1:
        raise AlignkitError("--max-tokens must be at least 1")
    local = args.judge.startswith("local:")
    opts = _http_options(args, local)
    a_rows, b_rows = judging.load_generations(args.a), judging.load_generations(args.b)
    items = judging.align(a_rows, b_rows, args.a, args.b)
    http: dict[str, Any] = {}
    if not local:
        http = {k: opts[k] for k in ("timeout", "retries", "retry_wait")}
        http.update(model=opts["judge_model"], api_key=_api_key(opts["api_key_env"]))
    judge = build_judge(args.judge, max_tokens=args.max_tokens, **http)
    output = Path(args.output)
    cache = judging.VerdictCache(args.cache or output / "judge_cache.jsonl")
    report = judging.judge_pairs(items, judge, cache, concurrency=opts["concurrency"])
    report = {"a": args.a, "b": args.b, **report}
    atomic_write_text(output / "judge.json", json.dumps(report, indent=2, ensure_ascii=False))
    print(judging.format_summary(report))
    print(f"  written: {output / 'judge.json'}")
    return 0
