"""`alignkit judge`: win rate of one set of generations over another by an LLM judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.evaluation.config import JudgeConfig
from alignkit.options import add_config_verb

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


def register(subparsers: Any) -> None:
    add_config_verb(
        subparsers,
        "judge",
        JudgeConfig,
        run,
        help="win rate of generations A over B by an LLM judge (both orders)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        show_defaults=False,
    )


def _load(path: str, args: JudgeConfig, rejected: list[Any]) -> list[Any]:
    """The records of one data file (with --skip-invalid: the valid ones; the dropped ones
    are added to `rejected`)."""
    from alignkit.data import load_records

    records, summary = load_records([path], args.data_format, skip_invalid=args.skip_invalid)
    rejected.extend(summary.rejected)
    return records


def _subsets(args: JudgeConfig, rejected: list[Any]) -> dict[str, list[Any]]:
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


def _template(args: JudgeConfig, criteria: list[Any]) -> Any:
    from alignkit.evaluation.judges import CRITERION_TEMPLATE, DEFAULT_TEMPLATE, load_template

    if args.template:
        template = load_template(args.template)
    else:
        template = CRITERION_TEMPLATE if criteria else DEFAULT_TEMPLATE
    template.check(criteria=bool(criteria))
    return template


def run(args: JudgeConfig) -> int:
    """`args` has been validated (`JudgeConfig.validate`: the mode and its options)."""
    from alignkit.data.loading import write_rejected
    from alignkit.data.records import rejected_by_reason
    from alignkit.evaluation import win_rate as judging
    from alignkit.evaluation.judges import build_judge, parse_criterion
    from alignkit.io import atomic_write_text

    criteria = [parse_criterion(c) for c in args.criteria or []]
    template = _template(args, criteria)
    http, concurrency = args.http_judge_options(args.judge)
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
    judge = build_judge(args.judge, args.max_tokens, template, args.trust_remote_code, **http)
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
