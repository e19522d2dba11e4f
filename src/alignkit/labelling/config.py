"""Options of `alignkit label export`, `import`, `auto` and `serve` (`label select`'s are
`choose.ChooseConfig`), torch-free: `--help` loads no model code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alignkit.errors import AlignkitError
from alignkit.evaluation.config import HttpJudgeOptions
from alignkit.options import opt


@dataclass
class ExportConfig:
    """Options of `alignkit label export`."""

    pairs: str | None = opt(None, "pairs file", metavar="PAIRS.jsonl", required=True)
    format: Literal["jsonl", "label-studio"] | None = opt(None, "export format", required=True)
    output: str | None = opt(
        None,
        "file to write (label-studio: FILE.json, plus FILE.label_config.xml next to it)",
        metavar="FILE",
        required=True,
    )
    seed: int = opt(
        0,
        "label-studio: seed of the per-pair coin that puts a or b on the left (recorded "
        "as answer1_is; the same coin as `label serve --seed`) (default: 0)",
    )


@dataclass
class ImportConfig:
    """Options of `alignkit label import`."""

    inputs: list[str] = opt(
        [], "verdict files or exports", metavar="FILE", positional=True, required=True
    )
    output: str | None = opt(None, "preference data to write", metavar="PREFS.jsonl", required=True)
    format: Literal["auto", "jsonl", "label-studio"] = opt(
        "auto", "format of the inputs (default: auto, per file)"
    )
    pairs: str | None = opt(
        None, "pairs file: the texts of verdicts that carry only a pair_id", metavar="PAIRS.jsonl"
    )
    strict: bool = opt(
        False,
        "stop (exit 2, nothing written) at the first refused verdict instead of "
        "listing it and going on",
        negatable=False,
    )


WHO = "who"


@dataclass
class AutoLabelConfig(HttpJudgeOptions):
    """Options of `alignkit label auto`."""

    pairs: str | None = opt(
        None, "pairs file (`label select`)", metavar="PAIRS.jsonl", required=True
    )
    judge: str | None = opt(
        None, "local:MODEL, http:BASE_URL or package.module:function", metavar="SPEC", one_of=WHO
    )
    reward_model: str | None = opt(
        None,
        "train-rm run dir, HF id, or package.module:function (prompts, responses) -> scores",
        metavar="SPEC",
        one_of=WHO,
    )
    output: str | None = opt(
        None, "verdicts file to write", metavar="VERDICTS.jsonl", required=True
    )
    human: str | None = opt(
        None,
        "people's verdicts on the same pairs (jsonl or Label Studio export): agreement",
        metavar="FILE",
    )
    report: str | None = opt(
        None,
        "agreement report (with --human; default: OUTPUT with .agreement.json)",
        metavar="FILE.json",
    )
    cache: str | None = opt(
        None, "judge reply cache (default: OUTPUT with .judge_cache.jsonl)", metavar="FILE.jsonl"
    )
    max_tokens: int = opt(16, "tokens per judge reply (16)", metavar="N")
    batch_size: int = opt(16, "reward model batch size (16)", metavar="N")


@dataclass
class LabelServeConfig:
    """Options of `alignkit label serve`."""

    pairs: str | None = opt(None, "pairs to label (`alignkit label select`)", required=True)
    verdicts: str | None = opt(None, "jsonl file verdicts are appended to", required=True)
    annotator: str = opt("", "name prefilled on the page")
    host: str = opt("127.0.0.1", "address to bind (default: 127.0.0.1)")
    port: int = opt(8080, "0 picks a free one (default: 8080)")
    token: str | None = opt(None, "required on every request; needed for a non-loopback --host")
    seed: int = opt(0, "seed of the left/right order (default: 0)")

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise AlignkitError("--port must be between 0 and 65535")
