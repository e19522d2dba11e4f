"""One selection interface: every selector is a scorer plus a keep rule, behind one registry.

A `Selector` gives one float per record (`score(ScoreRequest) -> (n,)`, in record order) and
a default keep rule (keep the `lowest`, the `highest` or the `near-zero` scores, smallest
|score| first); a selector may also name the rules by what they keep of its score
(`keep_names`: reward-gap and rm-margin, whose score is a signed margin, call them
`uncertain`, `misranked` and `confident`). `budget_count` turns a fraction or a count into
the number kept and `keep_indices` picks them (ties in a seeded order). `score_records` checks the options and the record kinds and, with
`request.cache_dir`, caches the scores by content, so the cells of a study that need the
same scores compute them once.

Built in (`alignkit.select.scorers`): `random`, `deft`, `real` (pairs), `reward-gap`,
`perplexity`, `length`. The registry is open: `register(Selector(...))` adds one.
`rm-margin` (reward-model margin) needs `alignkit.rewards`, a higher layer than this one, so
`alignkit.rewards.selection` registers it when imported (the CLI imports it).

The keep rule of `real` depends on its options (easy = lowest similarity, hard = highest):
`Selector.default_keep` may be a function of the options; `Selector.keep_for(options)` (or
`resolve_keep`) always gives the rule.

What a selector needs: every selector declares `reads_labels` (a bool, or a function of its
options, as for `length`) with the reason in `label_use`. A label-free selector picks its
subset without knowing which answer of a pair is chosen (swapping chosen and rejected in the
pool leaves its subset unchanged), so it can pick pairs before anyone labels them: a study
credits it with *labels saved*. A label-reading one needs the preference label of every pool
pair first, so it can only save training (*training pairs saved*). `register` refuses a
selector that does not declare it.

Under a launcher (`accelerate launch`, `torchrun`) every process calls `score_records` and
gets every score back. The model scorers split their forward passes themselves; a selector
with `split_records=True` (its score of a record depends on that record alone) is split
here: each process scores a contiguous slice of the records, and the slices are gathered
back in record order. Only the main process writes the cache.

`alignkit select NAME` (`alignkit.select.pipeline.run_selection`, the one path) runs a
selector with a `config` (its CLI options, `alignkit.select.configs`). By default it scores
every record (`score_records`), keeps the budget by the keep rule and writes the kept records
with their original columns. A selector with more to show gives a `select` hook that builds
the `Selection` itself (`alignkit.select.outputs`): `deft` writes R_Q per response, the
Q_diff it filtered with and its tokens; `real` every strategy's subset and, on
multi-response data, one pair per prompt (`alignkit.select.reports`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit.data.formats import kind_of
from alignkit.distributed import distributed_state
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write, atomic_write_text
from alignkit.runs import spec_fingerprint
from alignkit.scoring.forms import R_Q_FORMS
from alignkit.select.common import (
    KEEPS,
    MARGIN_KEEPS,
    Keep,
    ScoreRequest,
    budget_count,
    keep_indices,
    keep_order,
    resolve_options,
)
from alignkit.select.configs import (
    DeftSelectConfig,
    LengthConfig,
    ModelSelectConfig,
    RealSelectConfig,
    RewardGapConfig,
    SelectConfig,
)

if TYPE_CHECKING:
    from alignkit.select.outputs import Selection

__all__ = [
    "SELECTORS",
    "Keep",
    "ScoreRequest",
    "SelectConfig",
    "Selector",
    "budget_count",
    "get_selector",
    "keep_indices",
    "keep_order",
    "register",
    "resolve_keep",
    "score_records",
]

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when a built-in score changes its definition (invalidates caches)
REQUEST_INPUTS = ("model", "seed", "max_length", "precision")
KeepRule = Keep | Callable[[Mapping[str, Any]], Keep]
SelectHook = Callable[[list, Any], "Selection"]


@dataclass(frozen=True)
class Selector:
    """A scorer plus a keep rule.

    `default_keep`: "lowest" / "highest" / "near-zero", or a function of the (user's) options
    giving one; `keep_names`: names of keep rules that say what they keep of this score (e.g.
    `misranked` = lowest), accepted wherever a keep rule is (`--keep`, a study's `keep:`);
    `needs_model`: scores with the causal LM `request.model`; `score`: request -> (n,)
    float64, one per record in record order; `options`: option name -> default (other names
    are refused); `choices`: option name -> allowed values; `depends_on`: the request fields
    the scores depend on (the cache key; `batch_size` never is); `rule_options`: options
    that only choose the keep rule (not in the cache key); `kinds`: record kinds it scores
    ("pair", "point", "multi"); `config`: the options dataclass of `alignkit select NAME`
    (`alignkit.select.configs`; None: no CLI verb); `split_records`: a record's score depends
    on that record alone, so under a launcher each process may score a slice of the records
    (leave it False for a score of the whole set, such as a seeded draw over all records, or
    for a scorer that splits its own work over the processes).

    `reads_labels`: whether the scores use which answer of a pair is chosen (True / False, or
    a function of the options giving one; None = undeclared, refused by `register`);
    `label_use`: why, in one sentence (the study report prints it).

    `check`: `(model, options) -> None`, raising `AlignkitError` for a model the selector
    cannot score with (a study runs it when it reads its grid, before any work).

    `select`: the hook of a selector whose CLI run shows more than one score per record:
    `(records, config) -> Selection` (`alignkit.select.outputs`: the rows of subset.jsonl,
    scores.jsonl and dropped.jsonl, the report and its own files), called on every process
    (scoring is collective), written by the main one. None: `run_selection`'s default, which
    scores with `score` and keeps the budget by the keep rule.
    """

    name: str
    default_keep: KeepRule
    needs_model: bool
    score: Callable[[ScoreRequest], np.ndarray]
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    depends_on: tuple[str, ...] = REQUEST_INPUTS
    rule_options: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("pair",)
    config: type | None = None
    split_records: bool = False
    select: SelectHook | None = None
    keep_names: Mapping[str, Keep] = field(default_factory=dict)
    reads_labels: bool | Callable[[Mapping[str, Any]], bool] | None = None
    label_use: str = ""
    check: Callable[[str, Mapping[str, Any]], None] | None = None

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated with `options`; an error for an unknown name or a value
        outside its choices."""
        return resolve_options(f"selector {self.name}", self.options, self.choices, options)

    def keep_for(self, options: Mapping[str, Any] | None = None) -> Keep:
        """The default keep rule for these options."""
        rule = self.default_keep
        return rule(self.resolve_options(options)) if callable(rule) else rule

    def rule(self, keep: str) -> Keep:
        """The keep rule `keep` stands for: one of `KEEPS`, or one of this selector's
        `keep_names`; an error listing both otherwise."""
        if keep in KEEPS:
            return keep  # type: ignore[return-value]
        if keep in self.keep_names:
            return self.keep_names[keep]
        named = ", ".join(f"{k} (= {v})" for k, v in self.keep_names.items())
        raise AlignkitError(
            f"selector {self.name}: keep must be {', '.join(KEEPS)}"
            + (f" or {named}" if named else "")
            + f", got {keep!r}"
        )

    def reads_labels_for(self, options: Mapping[str, Any] | None = None) -> bool:
        """Whether this selector, with these options, reads the pool's preference labels."""
        rule = self.reads_labels
        if rule is None:
            raise AlignkitError(f"selector {self.name} does not declare reads_labels")
        return bool(rule(self.resolve_options(options)) if callable(rule) else rule)


SELECTORS: dict[str, Selector] = {}


def register(selector: Selector) -> None:
    """Add `selector` to `SELECTORS` (a later registration of the same name replaces it)."""
    unknown = sorted(set(selector.depends_on) - set(REQUEST_INPUTS))
    if unknown:
        raise AlignkitError(f"selector {selector.name}: unknown depends_on {unknown}")
    if not callable(selector.default_keep) and selector.default_keep not in KEEPS:
        raise AlignkitError(f"selector {selector.name}: default_keep must be one of {KEEPS}")
    bad = sorted(name for name, rule in selector.keep_names.items() if rule not in KEEPS)
    if bad:
        raise AlignkitError(f"selector {selector.name}: keep_names {bad} name no rule of {KEEPS}")
    if selector.reads_labels is None or not selector.label_use:
        raise AlignkitError(
            f"selector {selector.name}: declare reads_labels (True if its scores use which "
            "answer of a pair is chosen) and label_use (why, one sentence): a study credits "
            "label-free selectors with labels saved, label-reading ones with training saved"
        )
    SELECTORS[selector.name] = selector


def get_selector(name: str) -> Selector:
    """The registered selector `name`; an error listing the names when there is none."""
    if name not in SELECTORS:
        hint = (
            " (rm-margin is registered by alignkit.rewards.selection: import it first)"
            if name == "rm-margin"
            else ""
        )
        raise AlignkitError(f"unknown selector {name!r}; choose {', '.join(SELECTORS)}{hint}")
    return SELECTORS[name]


def resolve_keep(
    name: str, options: Mapping[str, Any] | None = None, keep: str | None = None
) -> Keep:
    """The rule `keep` stands for when given (a rule of `KEEPS` or one of the selector's
    `keep_names`), else the selector's default keep rule for `options`."""
    selector = get_selector(name)
    return selector.rule(keep) if keep else selector.keep_for(options)


def score_records(name: str, request: ScoreRequest) -> np.ndarray:
    """(n,) float64 scores of `request.records` by selector `name`, in record order.

    Options are checked and completed with the selector's defaults first; with
    `request.cache_dir`, scores computed before for the same content (records, selector,
    options, and the request fields the selector depends on) are read back instead.
    """
    selector = get_selector(name)
    options = selector.resolve_options(request.options)
    records = list(request.records)
    if not records:
        raise AlignkitError(f"selector {name}: no records to score")
    bad = [r for r in records if kind_of(r) not in selector.kinds]
    if bad:
        raise AlignkitError(
            f"selector {name} scores {' / '.join(selector.kinds)} records, but {len(bad)} of "
            f"{len(records)} are not, e.g. {bad[0].source or 'a record'} is a {kind_of(bad[0])}"
        )
    request = dataclasses.replace(request, records=records, options=options)
    path = cache_path(selector, request)
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape == (len(records),):
            log.info("selector %s: scores read from the cache %s", name, path)
            return cached.astype(np.float64)
    # Every process reads the cache before it scores. A scorer that splits its work over
    # processes gathers before the main process can write the file, so no process finds a
    # file the others did not (which would leave them waiting in a collective call).
    scores = _score_split(selector, request) if selector.split_records else None
    if scores is None:
        scores = np.asarray(selector.score(request), dtype=np.float64)
    if scores.shape != (len(records),):
        raise AlignkitError(
            f"selector {name} returned scores of shape {scores.shape} for {len(records)} records"
        )
    if path is not None and distributed_state().is_main_process:
        _save(path, scores, selector, request)
    return scores


def record_slice(n: int, rank: int, world: int) -> range:
    """The contiguous records of process `rank` of `world` (the first n % world processes take
    one more): every record exactly once, in order."""
    per, extra = divmod(n, world)
    start = rank * per + min(rank, extra)
    return range(start, start + per + (rank < extra))


def _score_split(selector: Selector, request: ScoreRequest) -> np.ndarray | None:
    """The scores of a `split_records` selector computed by slices over the processes and
    gathered in record order; None in a single process (the caller scores everything).

    Every process makes one gather call, with its scores or its error: an error in one
    slice (a bad record) stops every process instead of leaving the others waiting.
    """
    from accelerate.utils import gather_object

    state = distributed_state()
    if state.num_processes == 1:
        return None
    mine = record_slice(len(request.records), state.process_index, state.num_processes)
    values, error = np.zeros(0), None
    if len(mine):
        try:
            sliced = dataclasses.replace(request, records=request.records[mine.start : mine.stop])
            values = np.asarray(selector.score(sliced), dtype=np.float64)
        except Exception as exc:  # raised below, after every process has gathered
            error = exc
    parts = gather_object([(values, None if error is None else f"{type(error).__name__}: {error}")])
    if error is not None:
        raise error
    failed = [(rank, why) for rank, (_, why) in enumerate(parts) if why]
    if failed:
        raise AlignkitError(f"selector {selector.name}, process {failed[0][0]}: {failed[0][1]}")
    sizes = [len(part) for part, _ in parts]
    expected = [len(record_slice(len(request.records), r, len(parts))) for r in range(len(parts))]
    if sizes != expected:
        raise AlignkitError(
            f"selector {selector.name} returned {sizes} scores for slices of {expected} records"
        )
    return np.concatenate([part for part, _ in parts])


# ------------------------------------------------------------------ the score cache


def records_digest(records: Sequence[Any]) -> str:
    """sha256 of the records' content (kind and fields; not where they were read from)."""
    h = hashlib.sha256()
    for r in records:
        fields = {k: v for k, v in dataclasses.asdict(r).items() if k != "source"}
        h.update(json.dumps([type(r).__name__, fields], sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def cache_key(selector: Selector, request: ScoreRequest) -> str:
    """sha256 of everything the scores depend on (`request.options` already resolved)."""
    key: dict[str, Any] = {
        "version": CACHE_VERSION,
        "selector": selector.name,
        "options": {
            k: spec_fingerprint(v)
            for k, v in sorted(request.options.items())
            if k not in selector.rule_options
        },
        "records": records_digest(request.records),
        "n": len(request.records),
    }
    for name in selector.depends_on:
        value = getattr(request, name)
        key[name] = spec_fingerprint(value) if name == "model" else value
    if "precision" in selector.depends_on:
        import torch

        key["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(selector: Selector, request: ScoreRequest) -> Path | None:
    """CACHE_DIR/<selector>-<key>.npy, or None without a cache directory."""
    if not request.cache_dir:
        return None
    return Path(request.cache_dir) / f"{selector.name}-{cache_key(selector, request)[:40]}.npy"


def _save(path: Path, scores: np.ndarray, selector: Selector, request: ScoreRequest) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, scores)

    atomic_write(path, write)
    meta = {
        "selector": selector.name,
        "options": request.options,
        "model": request.model if "model" in selector.depends_on else None,
        "records": len(request.records),
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")


def _later(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, imported at its first call: the built-in scorers and hooks import
    torch, and reading this table (`alignkit select --help`) must not."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


_SCORERS = "alignkit.select.scorers"
_HOOKS = "alignkit.select.reports"


def _length_reads_labels(options: Mapping[str, Any]) -> bool:
    return options.get("what") != "pair"


def _real_keep(options: Mapping[str, Any]) -> Keep:
    return "highest" if options.get("strategy") == "hard" else "lowest"


_BUILT_IN = (
    Selector(
        "random",
        "lowest",
        False,
        _later(_SCORERS, "random_scores"),
        "the control: a seeded random subset (scores: a seeded uniform draw)",
        depends_on=("seed",),
        kinds=("pair", "point", "multi"),
        config=SelectConfig,
        reads_labels=False,
        label_use=("a seeded uniform draw over the records: it never looks at a pair"),
    ),
    Selector(
        "deft",
        "lowest",
        True,
        _later(_SCORERS, "deft_scores"),
        "DEFT: R_Q of the chosen answer or the margin (logprob or bounded prob form); keep "
        "the lowest",
        options={"form": "logprob", "score": "chosen"},
        choices={"form": R_Q_FORMS, "score": ("chosen", "margin")},
        depends_on=("model", "max_length", "precision"),
        config=DeftSelectConfig,
        select=_later(_HOOKS, "deft_selection"),
        reads_labels=True,
        label_use=(
            "R_Q scores the chosen answer (or chosen minus rejected) and Q_pos / Q_neg "
            "are counted from every pool pair's label"
        ),
    ),
    Selector(
        "real",
        _real_keep,
        True,
        _later(_SCORERS, "real_scores"),
        "REAL on pairs: cosine similarity of the chosen and rejected embeddings; easy = keep "
        "the lowest, hard = the highest",
        options={"strategy": "easy"},
        choices={"strategy": ("easy", "hard")},
        depends_on=("model", "precision"),
        rule_options=("strategy",),
        config=RealSelectConfig,
        select=_later(_HOOKS, "real_selection"),
        reads_labels=False,
        label_use=(
            "the cosine similarity of the two answers' embeddings is symmetric: each "
            "answer is embedded alone, without knowing which one is chosen"
        ),
    ),
    Selector(
        "reward-gap",
        "near-zero",
        True,
        _later(_SCORERS, "reward_gap_scores"),
        "implicit-reward gap [log pi(c) - log pi_ref(c)] - [log pi(r) - log pi_ref(r)] of "
        "--model against --ref; keep near-zero = uncertain (the pairs the model barely "
        "separates, the default), lowest = misranked (the model prefers the rejected answer "
        "most: label noise gathers there), highest = confident",
        options={"ref": ""},
        depends_on=("model", "max_length", "precision"),
        config=RewardGapConfig,
        check=_later(_SCORERS, "check_reward_gap"),
        keep_names=MARGIN_KEEPS,
        reads_labels=True,
        label_use=(
            "the signed implicit-reward gap chosen minus rejected uses which answer is chosen"
        ),
    ),
    Selector(
        "perplexity",
        "lowest",
        True,
        _later(_SCORERS, "perplexity_scores"),
        "per-token perplexity of the chosen answer under --model; keep the lowest",
        depends_on=("model", "max_length", "precision"),
        kinds=("pair", "point"),
        config=ModelSelectConfig,
        reads_labels=True,
        label_use=("it scores the chosen answer, which only a label names"),
    ),
    Selector(
        "length",
        "highest",
        False,
        _later(_SCORERS, "length_scores"),
        "tokens of the chosen answer (or chosen + rejected); keep the highest = the longest",
        options={"what": "chosen"},
        choices={"what": ("chosen", "pair")},
        depends_on=("model",),
        kinds=("pair", "point"),
        config=LengthConfig,
        split_records=True,
        reads_labels=_length_reads_labels,
        label_use=(
            "what=chosen counts the chosen answer's tokens (a label names it); "
            "what=pair counts both answers, the same whichever is chosen"
        ),
    ),
)
for _selector in _BUILT_IN:
    register(_selector)
