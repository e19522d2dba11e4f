"""The options of `alignkit select NAME` (field help texts are the CLI's --help).

Every registry selector with a CLI verb has an options dataclass here (`Selector.config`):
`SelectConfig` (the budget, the keep rule, the data and the output) and its subclasses for
the selectors that score with a model (`ModelSelectConfig`), `reward-gap` and `length`;
`MarginKeep` is --keep with the names of the keep rules for a signed margin (reward-gap,
rm-margin: uncertain, misranked, confident).
`deft` and `real` keep the flags they always had (`--strategy`, `--truncation`,
`--top-tokens`, ...; deft's `--keep-fraction`/`--keep-count` are deprecated aliases of the
common `--fraction`/`--count`), so their options are `DeftSelectConfig` and
`RealSelectConfig`. Every config composes `DataOptions`; those that load a causal LM,
`ModelOptions` (--model, --trust-remote-code, --precision).

What `alignkit.select.pipeline.run_selection` needs of an options object: `validate()`,
`data`, `data_format`, `skip_invalid` and `output`; the default selection (no
`Selector.select` hook) also `fraction`, `count`, `keep`, `seed`, `options()` and
`request(records)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from alignkit.data.config import DataOptions
from alignkit.data.tokenize import Truncation
from alignkit.errors import AlignkitError
from alignkit.model_options import TRUST_REMOTE_CODE_HELP, ModelOptions
from alignkit.options import opt
from alignkit.scoring.forms import RQForm
from alignkit.select.common import (
    KEEPS,
    MARGIN_KEEPS,
    STRATEGIES,
    Keep,
    ScoreRequest,
    fraction_count,
    require_data_and_output,
)

Form = RQForm  # the R_Q form (alignkit.scoring.forms)
ScoreOn = Literal["chosen", "margin"]  # R_Q of the chosen answer, or the margin


class SelectorOptions:
    """What every `alignkit select NAME` config gives the registry: `options()` (the fields
    named in `OPTIONS`, the selector's own options) and `request(records)`, the
    `ScoreRequest` of these options (inputs a config lacks take `ScoreRequest`'s defaults)."""

    OPTIONS: ClassVar[tuple[str, ...]] = ()

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.OPTIONS}

    def request(self, records: list) -> ScoreRequest:
        """The `ScoreRequest` of these options for `records`."""
        return ScoreRequest(
            records=records,
            options=self.options(),
            model=getattr(self, "model", "default"),
            seed=self.seed,
            batch_size=getattr(self, "batch_size", 8),
            max_length=getattr(self, "max_length", 512),
            precision=getattr(self, "precision", "auto"),
            trust_remote_code=getattr(self, "trust_remote_code", False),
            cache_dir=getattr(self, "cache_dir", "") or None,
        )


@dataclass
class SelectConfig(DataOptions, SelectorOptions):
    """Options of `alignkit select NAME` shared by every registry selector (field help texts
    are the CLI's --help). `OPTIONS`: the fields that are the selector's options;
    `KEEP_NAMES`: the selector's names of keep rules (`Selector.keep_names`) --keep accepts."""

    KEEP_NAMES: ClassVar[Mapping[str, Keep]] = {}

    data: list[str] = opt([], "data files to select from", metavar="PATH")
    output: str = opt(
        "",
        "output directory: subset.jsonl (the kept records, with their original columns), "
        "scores.jsonl, dropped.jsonl, report.json/.md, scores_hist.png",
    )
    fraction: float | None = opt(None, "budget: the fraction of the records to keep, in (0, 1]")
    count: int | None = opt(None, "budget: the number of records to keep")
    keep: Keep | None = opt(
        None,
        "keep the lowest, the highest or the near-zero scores (smallest |score| first) "
        "(default: the selector's)",
    )
    seed: int = opt(0, "seed of the random draw, and of the order of tied scores at the cut")
    cache_dir: str = opt(
        "",
        "cache the scores here, by content: a run with the same records, selector, options "
        "and model reads them back (default: no cache)",
    )

    def validate(self) -> None:
        require_data_and_output(self.data, self.output)
        if (self.fraction is None) == (self.count is None):
            raise AlignkitError("give one budget: --fraction F or --count N")
        if self.fraction is not None:
            fraction_count(1, self.fraction, "--fraction")  # the range check
        if self.count is not None and self.count < 1:
            raise AlignkitError(f"--count must be >= 1, got {self.count}")
        if self.keep is not None and self.keep not in (*KEEPS, *self.KEEP_NAMES):
            raise AlignkitError(
                f"--keep must be one of {', '.join([*KEEPS, *self.KEEP_NAMES])}, got {self.keep!r}"
            )


@dataclass
class MarginKeep:
    """--keep of a selector whose score is a signed margin, chosen minus rejected (reward-gap,
    rm-margin): the keep rules, or their names for a margin (`MARGIN_KEEPS`). A base listed
    before `SelectConfig`, so that its `keep` replaces the common one."""

    KEEP_NAMES: ClassVar[Mapping[str, Keep]] = MARGIN_KEEPS

    keep: str | None = opt(
        None,
        "which pairs to keep: uncertain (= near-zero: the smallest |margin|, the pairs the "
        "scorer barely separates), misranked (= lowest: the scorer prefers the rejected answer "
        "most; label noise gathers there) or confident (= highest) (default: the selector's)",
        choices=[*KEEPS, *MARGIN_KEEPS],
    )


@dataclass
class ModelSelectConfig(SelectConfig, ModelOptions):
    """`SelectConfig` + the causal LM that scores."""

    model: str = opt(
        "default", "scoring model: run directory, folder, HF id or 'default' (embedded SmolLM2)"
    )
    batch_size: int = opt(8, "examples per forward pass")
    max_length: int = opt(512, "max tokens of prompt + one response (longer: truncated)")

    def validate(self) -> None:
        super().validate()
        from alignkit.models import check_model_spec

        check_model_spec(self.model)
        if self.batch_size <= 0 or self.max_length < 8:
            raise AlignkitError("--batch-size must be > 0 and --max-length >= 8")


@dataclass
class RewardGapConfig(MarginKeep, ModelSelectConfig):
    """Options of `alignkit select reward-gap`."""

    OPTIONS: ClassVar[tuple[str, ...]] = ("ref",)

    ref: str = opt(
        "",
        "reference model spec; default: the model's base (its adapter disabled for a LoRA run, "
        "the base_model of a full fine-tuning run), refused where it has none; 'none': no "
        "reference (with a warning), the gap is then log pi(chosen) - log pi(rejected), a "
        "difference of summed log-probs that the answers' lengths dominate",
    )

    def validate(self) -> None:
        super().validate()
        if self.ref not in ("", "none"):
            from alignkit.models import check_model_spec

            check_model_spec(self.ref)


@dataclass
class LengthConfig(SelectConfig):
    """Options of `alignkit select length`."""

    OPTIONS: ClassVar[tuple[str, ...]] = ("what",)

    model: str = opt("default", "the model whose tokenizer counts the tokens")
    trust_remote_code: bool = opt(False, TRUST_REMOTE_CODE_HELP)
    what: str = opt(
        "chosen", "count the chosen answer, or chosen + rejected", choices=["chosen", "pair"]
    )

    def validate(self) -> None:
        super().validate()
        from alignkit.models import check_model_spec

        check_model_spec(self.model)


# ------------------------------------------------------------------ deft and real


@dataclass
class DeftSelectConfig(DataOptions, ModelOptions, SelectorOptions):
    """Options of `alignkit select deft`."""

    OPTIONS: ClassVar[tuple[str, ...]] = ("form", "score")

    data: list[str] = opt([], "pair data files to select from", metavar="PATH")
    output: str = opt(
        "",
        "output directory: subset.jsonl, scores.jsonl, dropped.jsonl, q_diff.safetensors "
        "(for train --q-diff), report.json/.md, r_q_hist.png",
    )
    model: str = opt(
        "default", "starting model: HF id, local path, or 'default' (embedded SmolLM2-135M)"
    )
    # the budget as `budget()` reads it: --fraction / --count (or their old spellings
    # --keep-fraction / --keep-count, deprecated aliases) folded in by `validate`
    keep_fraction: float | None = opt(None, "fraction of examples to keep", cli=False)
    keep_count: int = opt(0, "keep exactly this many examples (0 = the fraction)", cli=False)
    fraction: float | None = opt(
        None, "fraction of examples to keep (default: 0.05)", aliases=("--keep-fraction",)
    )
    count: int | None = opt(
        None, "keep exactly this many examples instead of --fraction", aliases=("--keep-count",)
    )
    keep: Keep = opt(
        "lowest",
        "keep the lowest R_Q (DEFT), the highest, or the near-zero (smallest |R_Q|; with "
        "--score margin: the pairs R_Q barely separates)",
    )
    seed: int = opt(0, "seed of the order of tied scores at the cut")
    score: ScoreOn = opt(
        "chosen", "what is filtered on: R_Q of the chosen response, or chosen minus rejected"
    )
    form: Form = opt(
        "logprob",
        "R_Q form: logprob = mean_t <Q_diff, log p_t> (no softmax), prob = mean_t "
        "<Q_diff, p_t> (bounded)",
    )
    batch_size: int = opt(8, "examples per forward pass")
    max_length: int = opt(1024, "max tokens of prompt + one response")
    truncation: Truncation = opt("truncate", "over-long examples: truncate or drop")
    top_tokens: int = opt(20, "tokens listed in the report per Q_diff sign")

    def validate(self) -> None:
        require_data_and_output(self.data, self.output)
        self._fold_aliases()
        if self.keep not in KEEPS:
            raise AlignkitError(f"--keep must be lowest or highest, got {self.keep!r}")
        if self.keep_count and self.keep_fraction is not None:
            raise AlignkitError("give --keep-fraction or --keep-count, not both")
        if self.keep_count < 0:
            raise AlignkitError(f"--keep-count must be >= 0, got {self.keep_count}")
        self.budget(1, fraction_only=True)  # the range check of the fraction
        if self.batch_size <= 0 or self.top_tokens < 0:
            raise AlignkitError("--batch-size must be > 0 and --top-tokens >= 0")

    def _fold_aliases(self) -> None:
        """--fraction / --count are --keep-fraction / --keep-count under their common names."""
        if self.fraction is not None:
            if self.keep_fraction is not None and self.keep_fraction != self.fraction:
                raise AlignkitError("--fraction and --keep-fraction are one option; give one")
            self.keep_fraction = self.fraction
        if self.count is not None:
            if self.count < 1:
                raise AlignkitError(f"--count must be >= 1, got {self.count}")
            if self.keep_count and self.keep_count != self.count:
                raise AlignkitError("--count and --keep-count are one option; give one")
            self.keep_count = self.count

    def budget(self, n: int, fraction_only: bool = False) -> int:
        """How many of `n` scored examples to keep: --keep-count, else round(--keep-fraction
        * n) (default 5%, halves round up, at least 1)."""
        if self.keep_count and not fraction_only:
            if self.keep_count > n:
                raise AlignkitError(
                    f"--keep-count {self.keep_count} is more than the {n} examples scored"
                )
            return self.keep_count
        fraction = 0.05 if self.keep_fraction is None else self.keep_fraction
        return fraction_count(n, fraction, "--keep-fraction")


@dataclass
class RealSelectConfig(DataOptions, ModelOptions):
    """Options of `alignkit select real`."""

    data: list[str] = opt([], "pair or multi-response data files", metavar="PATH")
    output: str = opt("", "output directory: subset.jsonl, scores.jsonl, report.json/.md, PNG")
    model: str = opt(
        "default", "base model: HF id, local path, or 'default' (embedded SmolLM2-135M)"
    )
    strategy: str = opt(
        "",
        "which pairs to keep (default: easy; hard with --keep highest)",
        choices=list(STRATEGIES),
    )
    fraction: float | None = opt(
        None,
        "pair data: fraction of pairs to keep (default: 0.5); multi-response data "
        "keeps one pair per prompt",
    )
    count: int | None = opt(None, "pair data: the number of pairs to keep (instead of --fraction)")
    keep: Keep | None = opt(
        None,
        "pair data: keep the lowest similarity (the same as --strategy easy) or the highest "
        "(--strategy hard)",
        choices=["lowest", "highest"],
    )
    seed: int = opt(0, "seed of the random strategy")
    min_score_ratio: float = opt(
        0.0,
        "multi-response data: keep a pair only if high score >= ratio * low score "
        "(scores must be > 0; the paper used 1.5; 0 = off)",
    )
    max_length: int = opt(0, "drop responses longer than this many tokens (0 = no limit)")
    batch_size: int = opt(16, "responses per forward pass")
    cache_dir: str = opt("", "embedding cache (default: $ALIGNKIT_CACHE/embeddings)")

    def validate(self) -> None:
        require_data_and_output(self.data, self.output)
        if not self.strategy:
            self.strategy = "hard" if self.keep == "highest" else "easy"
        if self.strategy not in STRATEGIES:
            raise AlignkitError(
                f"unknown --strategy {self.strategy!r}; choose {', '.join(STRATEGIES)}"
            )
        self._check_keep()
        if self.fraction is not None:
            fraction_count(1, self.fraction, "--fraction")  # range check
        if self.count is not None:
            if self.fraction is not None:
                raise AlignkitError("give --fraction or --count, not both")
            if self.count < 1:
                raise AlignkitError(f"--count must be >= 1, got {self.count}")
        if self.min_score_ratio and self.min_score_ratio < 1:
            raise AlignkitError(
                f"--min-score-ratio must be >= 1 (or 0 = off), got {self.min_score_ratio}"
            )
        if self.max_length < 0 or self.batch_size <= 0:
            raise AlignkitError("--max-length must be >= 0 and --batch-size > 0")

    def _check_keep(self) -> None:
        """--keep is the keep rule of easy (lowest similarity) / hard (highest)."""
        if self.keep is None:
            return
        if self.keep not in KEEPS:
            raise AlignkitError(f"--keep must be lowest or highest, got {self.keep!r}")
        implied = {"easy": "lowest", "hard": "highest"}.get(self.strategy)
        if implied is None:
            raise AlignkitError(
                f"--keep applies to --strategy easy (lowest similarity) or hard (highest); "
                f"{self.strategy} has no keep rule"
            )
        if implied != self.keep:
            raise AlignkitError(
                f"--keep {self.keep} contradicts --strategy {self.strategy} (easy keeps the "
                "lowest similarity, hard the highest): give one of them"
            )

    def check_data(self, mode: str, records: Sequence[Any]) -> None:
        """The options that apply to one kind of data only (`mode`: pair or multi)."""
        if mode == "pair" and self.min_score_ratio:
            raise AlignkitError(
                "--min-score-ratio needs multi-response data with scores; pairs have none"
            )
        if mode == "multi" and (self.fraction is not None or self.count is not None):
            flag = "--fraction" if self.fraction is not None else "--count"
            raise AlignkitError(
                f"{flag} applies to pair data; multi-response data yields one pair per prompt"
            )
        if (
            mode == "multi"
            and self.min_score_ratio
            and any(s <= 0 for r in records for s in r.scores)
        ):
            raise AlignkitError(
                "--min-score-ratio needs scores > 0 (a ratio of votes); some are <= 0"
            )

    def embedding_cache(self) -> Path:
        from alignkit.models import cache_dir

        return Path(self.cache_dir) if self.cache_dir else cache_dir() / "embeddings"

    def request(self, records: list) -> ScoreRequest:
        return ScoreRequest(
            records=records,
            model=self.model,
            seed=self.seed,
            batch_size=self.batch_size,
            precision=self.precision,
            trust_remote_code=self.trust_remote_code,
        )
