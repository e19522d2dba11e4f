"""`alignkit label VERB`: the labelling loop after `alignkit generate`.

select (choose the pairs worth a label from a pool) -> export (jsonl or Label Studio) /
serve (a labelling page, `alignkit.labelling.server`) / auto (a judge or a reward model) ->
import (labels -> prompt/chosen/rejected data for `alignkit train --method dpo`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.commands.serving import serve_until_signal
from alignkit.labelling.choose import ChooseConfig, run_choose
from alignkit.labelling.config import (
    AutoLabelConfig,
    ExportConfig,
    ImportConfig,
    LabelServeConfig,
)
from alignkit.options import CONFIG_NOTE, add_config_verb, add_verb_group

_FORMATS_NOTE = """\
files:
  pool    (`alignkit generate`) one line per prompt:
          {"prompt": text or chat messages, "responses": [...], "finished": [...], ...}
  pairs   (`label select`) one line per pair:
          {"pair_id", "prompt", "a", "b", "score", "strategy"}
          pair_id = 16 hex of sha256 of [prompt, a, b] as JSON: it changes with any text
  verdicts (`label serve`, `label auto`) one line per verdict, appended:
          {"pair_id", "verdict": "a"|"b"|"tie"|"skip", "annotator", "shown_left", "time",
           "prompt", "a", "b"}; {"pair_id", "undo": true, "annotator"} cancels the
          annotator's latest verdict on the pair; the last one in force wins"""

_DESCRIPTION = f"""\
The labelling loop: choose which generated pairs are worth a label, label them (in a
browser page, in Label Studio, or by a judge / reward model), and import the labels as
preference data for `alignkit train --method dpo`.

{_FORMATS_NOTE}"""

_EPILOG = """\
walk-through:
  alignkit generate --model default --prompts prompts.jsonl --num-responses 4 --output pool.jsonl
  alignkit label select --pool pool.jsonl --strategy easy --budget 50 --output pairs.jsonl
  alignkit label serve --pairs pairs.jsonl --verdicts verdicts.jsonl --annotator me
  alignkit label import verdicts.jsonl --output prefs.jsonl
  alignkit train --method dpo --data prefs.jsonl --output runs/dpo"""

_SELECT_DESCRIPTION = f"""\
Choose --budget N pairs to label from an unlabelled pool (K >= 2 responses per prompt, no
scores). Each prompt gives at most one pair, made of two of its distinct non-blank responses;
the strategy picks the pair of each prompt and ranks the prompts, and the first N prompts of
the ranking give the N pairs:

  easy         REAL: the least similar pair (cosine of response embeddings of --model);
               prompts ranked by that similarity, lowest first
  hard         REAL: the most similar pair; prompts ranked by similarity, highest first
  centroid     REAL: the responses nearest the two 2-means centres of the prompt's
               responses; prompts in a seeded random order (--seed)
  random       a seeded random pair per prompt; prompts in a seeded random order
  uncertainty  the pair with the smallest |R(a) - R(b)| under --reward-model; prompts
               ranked by that gap, smallest first
  apl          APL (active preference learning): with --model, the policy trained on the
               labels so far, and its reference (--ref, default its base), the pair DPO's
               implicit preference is most certain about, |sigmoid(beta (r_a - r_b)) - 0.5|;
               prompts: the --entropy-keep x N of highest predictive entropy, ranked by that
               certainty (--apl-mode hybrid; or certainty / entropy alone)

Ties in a ranking keep pool order. When N is larger than the number of prompts with a pair,
every such prompt gives its one pair (fewer than N pairs; a note says so). Within a pair, a is
the response that comes first in the pool. The pairs file lists the pairs in rank order, each
with its pair_id, its score (cosine similarity, the reward gap, or APL's certainty) and the
strategy.
{CONFIG_NOTE}"""

_SELECT_EPILOG = """\
examples:
  alignkit label select --pool pool.jsonl --strategy easy --budget 50 --output pairs.jsonl
  alignkit label select --pool pool.jsonl --strategy uncertainty --reward-model runs/rm \\
      --budget 200 --output pairs.jsonl
  alignkit label select --pool pool.jsonl --strategy random --budget 50 --seed 1 \\
      --output pairs-random.jsonl
  round by round: label, `alignkit train ... --output runs/round-1`, then
  alignkit label select --pool pool-2.jsonl --strategy apl --model runs/round-1 \\
      --budget 50 --output pairs-2.jsonl"""

_EXPORT_DESCRIPTION = """\
Export a pairs file (`label select`) for labelling elsewhere.

  --format jsonl         the pairs file's lines with an empty "verdict" field: fill it with
                         a, b, tie or skip and give the file to `label import`
  --format label-studio  a JSON list of Label Studio tasks {"data": {"prompt", "answer1",
                         "answer2", "pair_id"}} (answer1 = a, answer2 = b; a chat prompt is
                         shown as "role: content" lines and kept in data.prompt_messages) and
                         the project's labeling config next to it (OUTPUT.json ->
                         OUTPUT.label_config.xml, a <Pairwise> over the two answers). In Label
                         Studio: create a project with that config, import the JSON, label,
                         then Export -> JSON and give that file to `label import`."""

_IMPORT_DESCRIPTION = """\
Turn labels into preference data: TRL-style jsonl {"prompt", "chosen", "rejected"}, trainable
by `alignkit train --method dpo`. Inputs (several files are merged; --format auto tells them
apart: a JSON list is a Label Studio export):

  jsonl verdicts        the verdicts of `label serve` / `label auto`, or the jsonl of
                        `label export --format jsonl` with its "verdict" fields filled
  Label Studio export   Export -> JSON of a project made from `label export --format
                        label-studio`: "left" (answer1) = a, "right" (answer2) = b; a skipped
                        (cancelled) annotation is a skip

Every verdict is checked: its pair_id is recomputed from the prompt and answers it carries
(a verdict without texts is looked up in --pairs). A verdict whose texts no longer match its
pair_id is refused and listed with its file:line (with --strict the import stops instead).
A verdict value other than a, b, tie, skip is an error naming its line. Each pair becomes
one row by the majority of its a/b verdicts over all annotators; ties, skips and pairs with
as many a as b votes are counted and not written. The summary prints written, ties, skips,
split votes, refused and lines without a verdict."""

_AUTO_DESCRIPTION = """\
Label the pairs of a pairs file automatically and write the verdicts (the verdicts format,
annotator "judge:SPEC" or "rm:SPEC"; the file is rewritten whole):

  --judge SPEC         local:MODEL, http:BASE_URL or package.module:function (as in
                       `alignkit judge`), asked in both orders: a preferred in both -> a, b in
                       both -> b, a verdict that flips with the order (or a tie reply) ->
                       tie; a reply naming no answer gives no verdict (counted unparseable).
                       Replies are cached (--cache), so a rerun asks only what is missing.
  --reward-model SPEC  a reward model (train-rm run dir, HF id, package.module:function):
                       the answer with the higher reward wins, equal rewards are a tie

With --human FILE (people's verdicts on the same pairs, jsonl or a Label Studio export), an
agreement report: common pairs, comparisons (one per pair and human annotator, skips left
out), agreement rate, Cohen's kappa over a / b / tie (kappa = (p_o - p_e) / (1 - p_e), p_o
the observed agreement, p_e the agreement expected from each side's label frequencies), and
the confusion counts; written as JSON (--report) and printed."""

_AUTO_EPILOG = """\
examples:
  alignkit label auto --pairs pairs.jsonl --judge local:default --output judge-verdicts.jsonl
  alignkit label auto --pairs pairs.jsonl --judge http:http://127.0.0.1:8000/v1 \\
      --human verdicts.jsonl --output judge-verdicts.jsonl
  alignkit label auto --pairs pairs.jsonl --reward-model runs/rm --output rm-verdicts.jsonl"""


_SERVE_EPILOG = """\
keys: a or left arrow = left is better, b or right arrow = right is better, t = tie, s = skip,
u = undo (the latest verdict; the page goes back to that pair)

examples:
  alignkit label serve --pairs pairs.jsonl --verdicts verdicts.jsonl --annotator ana
  alignkit label serve --pairs pairs.jsonl --verdicts verdicts.jsonl --host 0.0.0.0 \\
      --token "$(python -c 'import secrets; print(secrets.token_urlsafe())')"
  alignkit label import verdicts.jsonl --output prefs.jsonl   (then train on the labels)"""


def register(subparsers: Any) -> None:
    sub = add_verb_group(
        subparsers,
        "label",
        help="choose pairs to label, label them (browser, Label Studio, judge), import labels",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        metavar="VERB",
    )
    add_config_verb(
        sub,
        "select",
        ChooseConfig,
        run_choose,
        help="choose N pairs worth a label from a pool (REAL similarity, RM uncertainty, APL)",
        description=_SELECT_DESCRIPTION,
        epilog=_SELECT_EPILOG,
    )
    add_config_verb(
        sub,
        "export",
        ExportConfig,
        _run_export,
        help="export pairs as jsonl (verdict to fill in) or Label Studio tasks",
        description=_EXPORT_DESCRIPTION,
        show_defaults=False,
    )
    add_config_verb(
        sub,
        "import",
        ImportConfig,
        _run_import,
        help="labels (jsonl verdicts or a Label Studio export) -> prompt/chosen/rejected data",
        description=_IMPORT_DESCRIPTION,
        show_defaults=False,
    )
    add_config_verb(
        sub,
        "auto",
        AutoLabelConfig,
        _run_auto,
        help="label pairs with a judge (both orders) or a reward model; agreement with people",
        description=_AUTO_DESCRIPTION,
        epilog=_AUTO_EPILOG,
        show_defaults=False,
    )
    add_config_verb(
        sub,
        "serve",
        LabelServeConfig,
        run_serve,
        help="label pairs in a local web page (keys a / b / t / s / u)",
        description="Serve a web page where people label pairs; every verdict is appended to "
        "--verdicts at once, and a restarted server resumes at the first unlabelled pair.",
        epilog=_SERVE_EPILOG,
        show_defaults=False,
    )


def run_serve(args: LabelServeConfig) -> int:
    from alignkit.labelling.server import make_server

    server = make_server(
        args.pairs,
        args.verdicts,
        host=args.host,
        port=args.port,
        token=args.token,
        seed=args.seed,
        annotator=args.annotator,
    )
    total = len(server.session.pairs)
    started = f"labelling {total} pairs at {server.url} (Ctrl-C to stop)"
    serve_until_signal(server, started, f"server stopped; verdicts are in {args.verdicts}")
    return 0


def _run_export(args: ExportConfig) -> int:
    from alignkit.labelling.exchange import export_pairs
    from alignkit.labelling.pairs import read_pairs

    pairs = read_pairs(args.pairs)
    written = export_pairs(pairs, args.output, args.format, args.seed)
    print(f"label export: {len(pairs)} pairs as {args.format}")
    for path in written:
        print(f"  written: {path}")
    return 0


def _run_import(args: ImportConfig) -> int:
    from alignkit.labelling.exchange import format_import_summary, import_verdicts
    from alignkit.labelling.pairs import read_pairs

    pairs = read_pairs(args.pairs) if args.pairs else None
    summary = import_verdicts(
        args.inputs, args.output, fmt=args.format, pairs=pairs, strict=args.strict
    )
    print(format_import_summary(summary, args.output))
    return 0


def _sibling(path: str, suffix: str) -> Path:
    p = Path(path)
    return p.with_name(p.stem + suffix)


def _build_judge(args: AutoLabelConfig) -> tuple[Any, int]:
    """The judge of `--judge` with the http flags of `alignkit judge`, and its concurrency."""
    from alignkit.errors import AlignkitError
    from alignkit.evaluation.judges import build_judge

    if args.max_tokens < 1:
        raise AlignkitError("--max-tokens must be at least 1")
    http, concurrency = args.http_judge_options(args.judge)
    judge = build_judge(
        args.judge, args.max_tokens, trust_remote_code=args.trust_remote_code, **http
    )
    return judge, concurrency


def _run_auto(args: AutoLabelConfig) -> int:
    from alignkit.errors import AlignkitError
    from alignkit.io import atomic_write_jsonl, atomic_write_text
    from alignkit.labelling import auto
    from alignkit.labelling.exchange import read_any_verdicts, verdict_texts
    from alignkit.labelling.pairs import read_pairs

    if args.report and not args.human:
        raise AlignkitError("--report is the agreement report: give --human FILE too")
    if args.batch_size < 1:
        raise AlignkitError("--batch-size must be at least 1")
    pairs = read_pairs(args.pairs)
    human = read_any_verdicts(args.human)[0] if args.human else []  # fail before loading
    if args.judge:
        from alignkit.evaluation.win_rate import VerdictCache

        judge, concurrency = _build_judge(args)
        cache = VerdictCache(args.cache or _sibling(args.output, ".judge_cache.jsonl"))
        name = f"judge:{args.judge}"
        verdicts, counts = auto.judge_verdicts(pairs, judge, name, cache, concurrency)
    else:
        from alignkit.rewards.loading import check_reward_spec, load_reward_model

        if args.cache:
            raise AlignkitError("--cache is the judge reply cache: drop it with --reward-model")
        given = args.http_options_given()
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise AlignkitError(f"{flags}: options of judges, not of --reward-model")
        check_reward_spec(args.reward_model)
        reward = load_reward_model(
            args.reward_model,
            batch_size=args.batch_size,
            trust_remote_code=args.trust_remote_code,
        )
        name = f"rm:{args.reward_model}"
        verdicts, counts = auto.reward_verdicts(pairs, reward, name)
    atomic_write_jsonl(args.output, (v.to_json() for v in verdicts))
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"label auto ({name}): {len(pairs)} pairs: {shown}")
    print(f"  written: {args.output}")
    if args.human:
        by_id = {p.pair_id: p for p in pairs}
        refused = [
            f"{v.source}: {found}"
            for v in human
            if isinstance(found := verdict_texts(v, by_id), str)
        ]
        kept = [v for v in human if not isinstance(verdict_texts(v, by_id), str)]
        report = {"auto": name, "human": args.human, **auto.agreement(verdicts, kept, refused)}
        path = args.report or _sibling(args.output, ".agreement.json")
        atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(auto.format_agreement(report))
        print(f"  written: {path}")
    return 0
