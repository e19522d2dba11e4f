"""`alignkit judge`: win rate of one set of generations over another by an LLM judge."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from alignkit.data.formats import FORMATS

_DESCRIPTION = """\
Compare two generations files (jsonl {"prompt", "response"}, as `alignkit eval` writes) prompt
by prompt with an LLM judge, or one generations file against the chosen answers of a dataset
(--against-chosen), or ask which of the chosen and rejected answers of preference pairs is
better and report the agreement with the dataset labels per subset (--agreement, REAL).
By default each comparison is asked twice with the answers swapped: A wins when preferred in
both orders, ties when preferred once, loses when never (PLE protocol); an explicit tie
reply counts half a preference. Replies naming neither answer nor a tie are counted as
unparseable, apart from ties. Replies are cached, so an interrupted run resumes without
asking again."""

_EPILOG = """\
judges (--judge):
  local:MODEL       a local causal LM, greedy (MODEL as for `alignkit serve --model`)
  http:BASE_URL     an OpenAI-compatible endpoint, e.g. http:http://127.0.0.1:8000/v1
                    (a bare http:// or https:// URL works too)
  package.module:function
                    a Python function (prompt, first, second[, criterion]) -> reply text
                    (scripted judges, tests); it gets the parts, not the --template text

modes (one of):
  --b GENS_B.jsonl            A against another system's generations (same prompts)
  --against-chosen DATA       A against the dataset's chosen answer to each prompt
                              (ULMA; B = the chosen response of a pair, the best of a
                              ranked list, a high-quality point's completion)
  --agreement [NAME=]DATA ... for the pairs of each file (e.g. the subsets `alignkit select
                              real` writes), the judge picks chosen or rejected, in both
                              orders; reported: agreement with the labels per subset (REAL)

templates (--template FILE): a text file is the user message (no system message); a .json
file is {"system": text or null, "user": text}. Placeholders: {prompt}, {first} (answer A),
{second} (answer B), and {criterion} with --criteria; all but {criterion} are required, an
unknown one is refused; literal braces are {{ and }}. Default: the built-in template (asks
"A or B"); with --criteria a built-in one that asks one criterion at a time and allows "tie".
Verdicts understood: A / B / tie, [[A]] / [[B]] / [[C]] (tie), ULMA's 1>2 / 1=2 / 1<2
(answer 1 = A), "the better answer is A", "it's a tie", "equally good".

criteria (--criteria NAME[=DESCRIPTION] ...): each criterion is a separate question per pair
(and order), counted separately. helpfulness and harmlessness without a description get
ULMA's (appendix B); another NAME alone fills {criterion} with the name.

output: DIR/judge.json (counts, win rates or agreement, per-prompt verdicts),
DIR/judge_cache.jsonl

examples:
  alignkit judge --a runs/dpo/gens.jsonl --b runs/sft/gens.jsonl --judge local:default
  OPENAI_API_KEY=... alignkit judge --a a.jsonl --b b.jsonl \\
      --judge http:https://api.openai.com/v1 --judge-model gpt-4o-mini \\
      --api-key-env OPENAI_API_KEY --output runs/judge-dpo-vs-sft
  alignkit judge --a runs/ulma/report.generations.jsonl --against-chosen test.jsonl \\
      --criteria helpfulness harmlessness --orders one --judge http:... (ULMA, App. B)
  alignkit judge --agreement easy=runs/easy/subset.jsonl hard=runs/hard/subset.jsonl \\
      --max-pairs 200 --judge http:... (REAL, Fig. 3)
"""

# flags that only apply to http judges: name -> default
HTTP_JUDGE_DEFAULTS: dict[str, Any] = {
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
    add("--a", metavar="GENS_A.jsonl", help="generations of system A (all modes but --agreement)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--b", metavar="GENS_B.jsonl", help="generations of system B (same prompts as --a)"
    )
    mode.add_argument(
        "--against-chosen",
        metavar="DATA",
        help="B = the chosen answer of this data file to each prompt of --a (ULMA)",
    )
    mode.add_argument(
        "--agreement",
        nargs="+",
        metavar="[NAME=]DATA",
        help="preference-pair files (subsets): report how often the judge prefers the "
        "labelled chosen answer, per subset and order (REAL); NAME labels the subset "
        "(default: the path)",
    )
    add(
        "--judge",
        required=True,
        metavar="SPEC",
        help="local:MODEL, http:BASE_URL or module:function",
    )
    add(
        "--template",
        metavar="FILE",
        help="judge question with {prompt} {first} {second} (and {criterion}); .json: "
        '{"system", "user"}; default: built-in (see below)',
    )
    add(
        "--criteria",
        nargs="+",
        metavar="NAME[=DESCRIPTION]",
        help="judge each criterion separately, e.g. helpfulness harmlessness (ULMA); "
        "default: one overall question",
    )
    add(
        "--orders",
        choices=["both", "one"],
        default="both",
        help="ask each comparison in both orders (PLE, default) or once with A shown first "
        "(ULMA, REAL)",
    )
    add(
        "--max-pairs",
        type=int,
        default=0,
        metavar="N",
        help="--agreement: a seeded sample of N pairs per subset (REAL: 200; default 0 = all)",
    )
    add("--seed", type=int, default=0, help="seed of the --max-pairs sample (default: 0)")
    add(
        "--data-format",
        choices=["auto", *FORMATS],
        default="auto",
        help="format of the --against-chosen / --agreement files (default: auto)",
    )
    add(
        "--skip-invalid",
        action="store_true",
        help="drop invalid records of the --against-chosen / --agreement files instead of "
        "stopping; counted in judge.json, listed with file:line in DIR/rejected.jsonl",
    )
    add("--output", default="runs/judge", metavar="DIR", help="output folder (default: runs/judge)")
    add(
        "--cache",
        metavar="FILE.jsonl",
        help="reply cache, shareable between runs; keyed by the --judge spec, template, "
        "criterion and question, so delete it when the judge model changes under the same "
        "name (default: DIR/judge_cache.jsonl)",
    )
    add(
        "--max-tokens",
        type=int,
        default=16,
        metavar="N",
        help="tokens per judge reply (default: 16)",
    )
    add_http_judge_options(parser)
    parser.set_defaults(func=run)


def add_http_judge_options(parser: argparse.ArgumentParser) -> None:
    """The flags of http judges (`judge`, `label auto`): model name, key, concurrency,
    timeout, retries; read back with `http_judge_options`."""
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


def http_judge_options(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """(keyword options of `build_judge` for `args.judge`, concurrency): the http flags
    checked (refused for a judge of another kind) and the API key read from its variable."""
    from alignkit.evaluation.judges import judge_kind

    kind = judge_kind(args.judge)
    opts = _http_options(args, kind)
    http: dict[str, Any] = {}
    if kind == "http":
        http = {k: opts[k] for k in ("timeout", "retries", "retry_wait")}
        http.update(model=opts["judge_model"], api_key=_api_key(opts["api_key_env"]))
    return http, int(opts["concurrency"])


def _http_options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    from alignkit.errors import AlignkitError

    given = [k for k in HTTP_JUDGE_DEFAULTS if getattr(args, k) is not None]
    if kind == "function":  # a function judge takes --concurrency, nothing else of these
        given = [k for k in given if k != "concurrency"]
    if kind != "http" and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise AlignkitError(f"{flags}: only for http judges, not for --judge {args.judge}")
    opts = {
        k: v if getattr(args, k) is None else getattr(args, k)
        for k, v in HTTP_JUDGE_DEFAULTS.items()
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


def _check_mode(args: argparse.Namespace) -> None:
    from alignkit.errors import AlignkitError

    if args.max_tokens < 1:
        raise AlignkitError("--max-tokens must be at least 1")
    if args.max_pairs < 0:
        raise AlignkitError("--max-pairs must not be negative")
    if args.skip_invalid and args.b is not None:
        raise AlignkitError("--skip-invalid: only with --against-chosen or --agreement")
    if args.agreement is None:
        if args.a is None:
            raise AlignkitError("give --a GENS_A.jsonl (the generations to judge)")
        if args.max_pairs:
            raise AlignkitError("--max-pairs: only with --agreement")
    else:
        if args.a is not None:
            raise AlignkitError("--agreement judges the pairs of the data files: drop --a")
        if args.orders == "one":
            raise AlignkitError("--agreement asks both orders and reports each: drop --orders one")


def _load(path: str, args: argparse.Namespace, rejected: list[Any]) -> list[Any]:
    """The records of one data file (with --skip-invalid: the valid ones; the dropped ones
    are added to `rejected`)."""
    from alignkit.data import load_records

    records, summary = load_records([path], args.data_format, skip_invalid=args.skip_invalid)
    rejected.extend(summary.rejected)
    return records


def _subsets(args: argparse.Namespace, rejected: list[Any]) -> dict[str, list[Any]]:
    """NAME -> the pairs of each --agreement file (a seeded sample with --max-pairs)."""
    import random

    from alignkit.data import Pair
    from alignkit.errors import AlignkitError

    subsets: dict[str, list[Any]] = {}
    for spec in args.agreement:
        name, sep, path = spec.partition("=")
        name, path = (name, path) if sep and name and path else (spec, spec)
        if name in subsets:
            raise AlignkitError(f"--agreement: the subset name {name!r} is given twice")
        records = _load(path, args, rejected)
        others = [r for r in records if not isinstance(r, Pair)]
        if others:
            where = getattr(others[0], "source", "") or path
            raise AlignkitError(
                f"--agreement {path}: {len(others)} record(s) are not preference pairs "
                f"(first: {where}); the label check needs (prompt, chosen, rejected)"
            )
        if args.max_pairs and len(records) > args.max_pairs:
            keep = sorted(random.Random(args.seed).sample(range(len(records)), args.max_pairs))
            records = [records[i] for i in keep]
        subsets[name] = records
    return subsets


def _template(args: argparse.Namespace, criteria: list[Any]) -> Any:
    from alignkit.evaluation.judges import CRITERION_TEMPLATE, DEFAULT_TEMPLATE, load_template

    if args.template:
        template = load_template(args.template)
    else:
        template = CRITERION_TEMPLATE if criteria else DEFAULT_TEMPLATE
    template.check(criteria=bool(criteria))
    return template


def run(args: argparse.Namespace) -> int:
    from alignkit.data.loading import write_rejected
    from alignkit.data.records import rejected_by_reason
    from alignkit.evaluation import win_rate as judging
    from alignkit.evaluation.judges import build_judge, parse_criterion
    from alignkit.io import atomic_write_text

    _check_mode(args)
    criteria = [parse_criterion(c) for c in args.criteria or []]
    template = _template(args, criteria)
    http, concurrency = http_judge_options(args)
    # the data is read and checked before the judge is built (a local judge loads a model)
    head: dict[str, Any]
    rejected: list[Any] = []
    if args.agreement is not None:
        subsets = _subsets(args, rejected)
        head = {"mode": "agreement", "data": list(args.agreement)}
    else:
        a_rows = judging.load_generations(args.a)
        if args.b is not None:
            items = judging.align(a_rows, judging.load_generations(args.b), args.a, args.b)
            head = {"mode": "pairs", "a": args.a, "b": args.b}
        else:
            records = _load(args.against_chosen, args, rejected)
            items = judging.against_chosen(a_rows, records, args.a, args.against_chosen)
            head = {"mode": "against-chosen", "a": args.a, "b": f"chosen of {args.against_chosen}"}
    judge = build_judge(args.judge, max_tokens=args.max_tokens, template=template, **http)
    output = Path(args.output)
    cache = judging.VerdictCache(args.cache or output / "judge_cache.jsonl")
    if args.skip_invalid:
        write_rejected(output / "rejected.jsonl", rejected)
        head["skipped_invalid"] = {
            "records": len(rejected),
            "by_reason": rejected_by_reason(rejected),
            "listed_in": str(output / "rejected.jsonl"),
        }
    head["template"] = {"source": template.source, "id": template.id}
    if criteria:
        head["criterion_texts"] = {c.name: c.text for c in criteria}
    if args.agreement is not None:
        result = judging.label_agreement(
            subsets, judge, cache, concurrency=concurrency, criteria=criteria
        )
        text = judging.format_agreement(result)
    else:
        result = judging.judge_pairs(
            items, judge, cache, concurrency, criteria=criteria, orders=args.orders
        )
        text = judging.format_summary(result)
    report = {**head, **result}
    atomic_write_text(output / "judge.json", json.dumps(report, indent=2, ensure_ascii=False))
    print(text)
    print(f"  written: {output / 'judge.json'}")
    return 0
