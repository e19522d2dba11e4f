"""Export pairs to label, import labels as training data (`alignkit label export/import`).

Export formats:
- `jsonl`: the pairs file's lines with an empty `"verdict"` field; fill it with a, b, tie or
  skip (a user's editor, a script) and import the file.
- `label-studio`: a JSON list of Label Studio tasks `{"data": {"prompt", "answer1",
  "answer2", "answer1_is", "pair_id"}}` (which of a and b is answer1, the left one, is a
  seeded coin per pair, `answer1_is`; a chat prompt is shown as "role: content" lines and
  kept as messages in `data.prompt_messages`), and next to it the labeling config for the
  project (`<Pairwise>` over the two answers, Label Studio's pairwise template):
  FILE.json -> FILE.label_config.xml.

Import reads Label Studio's JSON export (`annotations[].result[].value.selected` = "left" =
answer1, "right" = answer2, translated to a/b with `answer1_is`; a cancelled annotation is a
skip) or jsonl verdicts (the verdicts file of `label serve` / `label auto`, or the exported
jsonl with its verdicts filled). Every verdict is checked against its texts: the pair id is recomputed from the
prompt and answers the verdict carries (or, when it carries none, looked up in `--pairs`), and
a verdict whose id does not match is refused and listed with its file:line. Each pair becomes
one TRL row `{"prompt", "chosen", "rejected"}` by the majority of its a/b verdicts over all
annotators; ties, skips and pairs whose a and b votes are equal are counted, not written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.formats import parse_prompt, record_row
from alignkit.data.prompts import prompt_json, prompt_transcript
from alignkit.data.records import Pair, Prompt
from alignkit.errors import AlignkitError, DataError
from alignkit.io import atomic_write_jsonl, atomic_write_text, load_json
from alignkit.labelling.pairs import (
    LabelPair,
    Verdict,
    pair_id,
    read_verdict_lines,
    shown_left,
)

EXPORT_FORMATS = ("jsonl", "label-studio")
IMPORT_FORMATS = ("auto", "jsonl", "label-studio")

LABEL_CONFIG = """\
<View>
  <Header value="Which answer is better?"/>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="comparison" toName="answer1,answer2"
            selectionStyle="background-color: #27ae60; color: white;"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1;"><Header value="Answer 1 (left)" size="5"/>
      <Text name="answer1" value="$answer1"/></View>
    <View style="flex: 1;"><Header value="Answer 2 (right)" size="5"/>
      <Text name="answer2" value="$answer2"/></View>
  </View>
</View>
"""


# ------------------------------------------------------------------ export


def label_config_path(output: str | Path) -> Path:
    """Where the labeling config of a Label Studio export goes: FILE.json ->
    FILE.label_config.xml."""
    output = Path(output)
    return output.with_name(output.stem + ".label_config.xml")


def label_studio_task(pair: LabelPair, seed: int = 0) -> dict[str, Any]:
    """One Label Studio task of a pair. Which answer is answer1 (shown left) is a seeded
    coin per pair (`shown_left`, as `label serve` draws it), recorded as `answer1_is`: people
    favour one side, and a fixed order would turn that bias into a preference for a or b."""
    left = shown_left(seed, pair.pair_id)
    first, second = (pair.a, pair.b) if left == "a" else (pair.b, pair.a)
    data: dict[str, Any] = {
        "prompt": prompt_transcript(pair.prompt),
        "answer1": first,
        "answer2": second,
        "answer1_is": left,
        "pair_id": pair.pair_id,
    }
    if not isinstance(pair.prompt, str):
        data["prompt_messages"] = prompt_json(pair.prompt)
    return {"data": data}


def export_pairs(
    pairs: Sequence[LabelPair], output: str | Path, fmt: str, seed: int = 0
) -> list[Path]:
    """Write `pairs` in `fmt` ("jsonl" or "label-studio", sides drawn with `seed`); returns
    the files written."""
    if fmt == "jsonl":
        atomic_write_jsonl(output, ({**pair.to_json(), "verdict": ""} for pair in pairs))
        return [Path(output)]
    if fmt == "label-studio":
        tasks = [label_studio_task(pair, seed) for pair in pairs]
        atomic_write_text(output, json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
        config = label_config_path(output)
        atomic_write_text(config, LABEL_CONFIG)
        return [Path(output), config]
    raise AlignkitError(f"unknown --format {fmt!r}; choose {', '.join(EXPORT_FORMATS)}")


# ------------------------------------------------------------------ reading verdicts


def detect_import_format(path: str | Path) -> str:
    """ "label-studio" for a file whose first non-blank character is "[" (a JSON list),
    else "jsonl"."""
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096).lstrip()
    except OSError as exc:
        raise AlignkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return "label-studio" if head.startswith("[") else "jsonl"


def _selected(annotation: dict, where: str) -> str | None:
    """The side of one Label Studio annotation: "left" (answer1), "right", skip, or None when
    it has no pairwise result."""
    if annotation.get("was_cancelled"):
        return "skip"
    for result in annotation.get("result") or []:
        value = result.get("value") if isinstance(result, dict) else None
        if isinstance(value, dict) and "selected" in value:
            side = value["selected"]
            if side not in ("left", "right"):
                raise DataError(
                    where,
                    f"unknown pairwise selection {side!r}",
                    'Label Studio writes "left" or "right"',
                )
            return side
    return None


def _annotator(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"label-studio:{who}" if who is not None else "label-studio"


def read_label_studio(path: str | Path) -> tuple[list[Verdict], int]:
    """(the verdicts of a Label Studio JSON export, the number of tasks without any).
    Where = "path[task N]" (1-based)."""
    try:
        tasks = load_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlignkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}", f"not valid JSON: {exc.msg}") from exc
    if not isinstance(tasks, list):
        raise AlignkitError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
    verdicts: list[Verdict] = []
    unlabelled = 0
    for number, task in enumerate(tasks, 1):
        where = f"{path}[task {number}]"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("pair_id"), str):
            raise DataError(
                where,
                "a task needs data.pair_id, data.prompt, data.answer1 and data.answer2",
                "import the tasks `alignkit label export --format label-studio` wrote, exported "
                "from Label Studio as JSON (not JSON-MIN or CSV)",
            )
        prompt = parse_prompt(data.get("prompt_messages", data.get("prompt")), where)
        left = data.get("answer1_is", "a")  # exports without it put a on the left
        if left not in ("a", "b"):
            raise DataError(where, f"data.answer1_is must be 'a' or 'b', got {left!r}")
        right = "b" if left == "a" else "a"
        texts = {left: _answer(data, "answer1", where), right: _answer(data, "answer2", where)}
        found = 0
        for annotation in task.get("annotations", task.get("completions")) or []:
            value = _selected(annotation, where) if isinstance(annotation, dict) else None
            if value is None:
                continue
            found += 1
            verdicts.append(
                Verdict(
                    pair_id=data["pair_id"],
                    verdict={"left": left, "right": right}.get(value, value),
                    annotator=_annotator(annotation),
                    shown_left=left,
                    time=annotation.get("created_at"),
                    prompt=prompt,
                    a=texts["a"],
                    b=texts["b"],
                    source=where,
                )
            )
        unlabelled += found == 0
    return verdicts, unlabelled


def _answer(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise DataError(where, f"data.{key} must be a string")
    return value


# ------------------------------------------------------------------ import


@dataclass
class ImportSummary:
    """What `import_verdicts` found: `refused` lists "file:line: reason" of every verdict
    whose pair id does not match its texts (or that names no known pair)."""

    verdicts: int = 0
    written: int = 0
    ties: int = 0
    skips: int = 0
    split: int = 0  # pairs whose a and b votes are equal (annotators disagree)
    unlabelled: int = 0
    refused: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdicts": self.verdicts,
            "written": self.written,
            "ties": self.ties,
            "skips": self.skips,
            "split_votes": self.split,
            "unlabelled": self.unlabelled,
            "refused": len(self.refused),
            "refused_lines": self.refused,
        }


def verdict_texts(
    verdict: Verdict, pairs: dict[str, LabelPair] | None
) -> tuple[Prompt, str, str] | str:
    """The (prompt, a, b) the verdict was given for, or the reason it is refused."""
    if verdict.prompt is not None and verdict.a is not None and verdict.b is not None:
        actual = pair_id(verdict.prompt, verdict.a, verdict.b)
        if actual != verdict.pair_id:
            return (
                f"pair_id {verdict.pair_id} does not match its prompt and answers (their id is "
                f"{actual}): the texts were changed after the pair was chosen"
            )
        return verdict.prompt, verdict.a, verdict.b
    if pairs is None:
        return "the verdict carries no texts: give the pairs file with --pairs"
    pair = pairs.get(verdict.pair_id)
    if pair is None:
        return f"pair_id {verdict.pair_id} is not in the --pairs file"
    return pair.prompt, pair.a, pair.b


def read_any_verdicts(path: str | Path, fmt: str = "auto") -> tuple[list[Verdict], int]:
    """(verdicts in force, lines/tasks without a verdict) of a jsonl verdicts file or a
    Label Studio export (`fmt` "auto" detects it)."""
    if fmt not in IMPORT_FORMATS:
        raise AlignkitError(f"unknown --format {fmt!r}; choose {', '.join(IMPORT_FORMATS)}")
    if fmt == "auto":
        fmt = detect_import_format(path)
    return read_label_studio(path) if fmt == "label-studio" else read_verdict_lines(path)


def import_verdicts(
    paths: Sequence[str | Path],
    output: str | Path,
    *,
    fmt: str = "auto",
    pairs: Sequence[LabelPair] | None = None,
    strict: bool = False,
) -> ImportSummary:
    """Turn verdicts into TRL preference rows written atomically to `output` (see the module
    docstring for the rules). Unknown verdict values raise `DataError` at their line; with
    `strict`, so does the first refused verdict. Nothing is written (`AlignkitError`) when
    no pair is left."""
    by_id = {p.pair_id: p for p in pairs} if pairs is not None else None
    summary = ImportSummary()
    votes: dict[str, list[int]] = {}  # pair id -> [a votes, b votes]
    texts: dict[str, tuple[Prompt, str, str]] = {}
    for path in paths:
        verdicts, unlabelled = read_any_verdicts(path, fmt)
        summary.unlabelled += unlabelled
        for verdict in verdicts:
            summary.verdicts += 1
            found = verdict_texts(verdict, by_id)
            if isinstance(found, str):
                if strict:
                    raise AlignkitError(f"{verdict.source}: {found} (refused: --strict)")
                summary.refused.append(f"{verdict.source}: {found}")
                continue
            if verdict.verdict in ("tie", "skip"):
                summary.ties += verdict.verdict == "tie"
                summary.skips += verdict.verdict == "skip"
                continue
            texts.setdefault(verdict.pair_id, found)
            votes.setdefault(verdict.pair_id, [0, 0])[verdict.verdict == "b"] += 1
    rows = []
    for pid, (a_votes, b_votes) in votes.items():
        if a_votes == b_votes:
            summary.split += 1
            continue
        prompt, a, b = texts[pid]
        chosen, rejected = (a, b) if a_votes > b_votes else (b, a)
        rows.append(record_row(Pair(prompt, chosen, rejected)))
    summary.written = len(rows)
    if not rows:
        raise AlignkitError(
            format_import_summary(summary, output)
            + "\nno preference pair is left to write: nothing was written"
        )
    atomic_write_jsonl(output, rows)
    return summary


def format_import_summary(summary: ImportSummary, output: str | Path, shown: int = 20) -> str:
    """A few lines for people, listing up to `shown` refused verdicts with their lines."""
    lines = [
        f"label import: {summary.written} pairs written to {output} from {summary.verdicts} "
        f"verdicts; ties {summary.ties}, skips {summary.skips}, split votes {summary.split}, "
        f"refused {len(summary.refused)}, without a verdict {summary.unlabelled}"
    ]
    for line in summary.refused[:shown]:
        lines.append(f"  refused: {line}")
    if len(summary.refused) > shown:
        lines.append(f"  ... and {len(summary.refused) - shown} more refused")
    return "\n".join(lines)
