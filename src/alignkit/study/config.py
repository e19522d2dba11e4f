"""The options of `alignkit study`, read from a YAML file (a grid does not fit in flags).

```yaml
data: prefs_train.jsonl            # the pool selectors choose from (pairs)
eval_data: prefs_heldout.jsonl     # held-out pairs every cell is evaluated on
output: runs/study
model: default                     # the model every cell trains (and selectors score with)
selectors:                         # one line per selector in the plots
  - {name: random}                 # the control: always add it
  - {name: real, label: real-easy, options: {strategy: easy}}
  - {name: real, label: real-hard, options: {strategy: hard}, keep: highest}
budgets: [0.1, 0.25, 0.5, 1.0]     # fractions of the pool (<= 1) or counts (> 1)
seeds: [0, 1, 2]
methods:                           # any `alignkit train` method with its options
  - {name: dpo, method: dpo}
  - {name: dpo+deft, method: dpo, options: {deft_lambda: 0.1}}
train: {lora: true, lr: 5.0e-4, epochs: 1, batch_size: 8, max_length: 128}
selection: {batch_size: 16, max_length: 256}   # options of the scorers
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

import alignkit.rewards.selection  # noqa: F401  (registers the rm-margin selector)
from alignkit.errors import AlignkitError
from alignkit.select.registry import get_selector
from alignkit.train.config import TrainConfig

Keep = Literal["lowest", "highest"]
METRICS = {  # study metric -> (held-out metric of the run, higher is better)
    "accuracy": ("eval/rewards/accuracies", True),
    "margin": ("eval/rewards/margins", True),
    "dpo_loss": ("eval/rewards/dpo_loss", False),
}
# TrainConfig options a study sets itself for every cell
_CELL_OWNED = ("data", "eval_data", "output", "method", "seed", "resume", "model", "skip_invalid")


@dataclass(frozen=True)
class SelectorEntry:
    """One selector of the grid: a registry name, its options, its keep rule, a label."""

    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    keep: Keep | None = None  # None: the selector's own default


@dataclass(frozen=True)
class MethodEntry:
    """One training method of the grid: a label, an `alignkit train` method, its options."""

    name: str
    method: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class StudyConfig:
    data: list[str]
    eval_data: list[str]
    output: str
    selectors: list[SelectorEntry]
    budgets: list[float]
    seeds: list[int]
    methods: list[MethodEntry]
    model: str = "default"
    train: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    skip_invalid: bool = False

    def train_config(self, method: MethodEntry, **cell: Any) -> TrainConfig:
        """The `TrainConfig` of one cell: the study's `train` options, the method's own, and
        the cell's data, output and seed."""
        values = {**self.train, **method.options, "method": method.method, "model": self.model}
        values.update(cell)
        try:
            config = TrainConfig(**values)
        except TypeError as exc:
            raise AlignkitError(f"study: invalid train option for {method.name}: {exc}") from exc
        return config


def load_study_config(path: str, overrides: dict[str, Any]) -> StudyConfig:
    """The study of a YAML file, with command-line `overrides` (data, eval_data, output)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise AlignkitError(f"study config {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise AlignkitError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise AlignkitError(f"{path}: a study config is a mapping (data:, selectors:, ...)")
    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    raw.update({k: v for k, v in overrides.items() if v})
    return parse_study(raw, path)


def parse_study(raw: dict[str, Any], where: str = "study config") -> StudyConfig:
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise AlignkitError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {sorted(known)}")
    for name in ("data", "eval_data", "output", "selectors", "budgets", "methods"):
        if not raw.get(name):
            raise AlignkitError(f"{where}: `{name}:` is required")
    config = StudyConfig(
        data=_paths(raw["data"]),
        eval_data=_paths(raw["eval_data"]),
        output=str(raw["output"]),
        selectors=[_selector(s, where) for s in _list(raw["selectors"], "selectors", where)],
        budgets=[float(b) for b in _list(raw["budgets"], "budgets", where)],
        seeds=[int(s) for s in _list(raw.get("seeds", [0]), "seeds", where)],
        methods=[_method(m, where) for m in _list(raw["methods"], "methods", where)],
        model=str(raw.get("model", "default")),
        train=dict(raw.get("train") or {}),
        selection=dict(raw.get("selection") or {}),
        metrics=[str(m) for m in raw.get("metrics", list(METRICS))],
        skip_invalid=bool(raw.get("skip_invalid", False)),
    )
    validate_study(config, where)
    return config


def validate_study(config: StudyConfig, where: str) -> None:
    for budget in config.budgets:
        if budget <= 0 or (budget > 1 and budget != int(budget)):
            raise AlignkitError(
                f"{where}: a budget is a fraction in (0, 1] or a count > 1: {budget}"
            )
    labels = [s.label for s in config.selectors]
    if len(set(labels)) != len(labels):
        raise AlignkitError(f"{where}: two selectors share a label; give each a `label:`")
    if len({m.name for m in config.methods}) != len(config.methods):
        raise AlignkitError(f"{where}: two methods share a name")
    bad = [m for m in config.metrics if m not in METRICS]
    if bad:
        raise AlignkitError(f"{where}: unknown metric(s) {bad}; choose from {list(METRICS)}")
    for what, options in [("train", config.train)] + [(m.name, m.options) for m in config.methods]:
        owned = sorted(set(options) & set(_CELL_OWNED))
        if owned:
            raise AlignkitError(
                f"{where}: options of {what} may not set {owned}: the study sets them per cell"
            )
    for method in config.methods:  # every option checked now, not after hours of other cells
        config.train_config(method, data=config.data, output=config.output).validate()
    if not any(s.name == "random" for s in config.selectors):
        raise AlignkitError(
            f"{where}: add the control `- {{name: random}}` to selectors: labels saved are "
            "measured against it"
        )


def _paths(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _list(value: Any, name: str, where: str) -> list:
    if not isinstance(value, list):
        raise AlignkitError(f"{where}: `{name}:` must be a list")
    return value


def _selector(value: Any, where: str) -> SelectorEntry:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise AlignkitError(f"{where}: a selector is {{name: ..., options: ..., keep: ...}}")
    extra = sorted(set(value) - {"name", "label", "options", "keep"})
    if extra:
        raise AlignkitError(f"{where}: selector {value['name']}: unknown key(s) {extra}")
    # unknown selectors and options fail now, listing what exists, not after hours of cells
    options = get_selector(str(value["name"])).resolve_options(dict(value.get("options") or {}))
    keep = value.get("keep")
    if keep not in (None, "lowest", "highest"):
        raise AlignkitError(f"{where}: selector {value['name']}: keep is lowest or highest")
    label = str(value.get("label") or value["name"])
    return SelectorEntry(str(value["name"]), label, options, keep)


def _method(value: Any, where: str) -> MethodEntry:
    if isinstance(value, str):
        value = {"name": value, "method": value}
    if not isinstance(value, dict) or "method" not in value:
        raise AlignkitError(f"{where}: a method is {{name: ..., method: dpo, options: {{...}}}}")
    options = dict(value.get("options") or {})
    return MethodEntry(str(value.get("name") or value["method"]), str(value["method"]), options)
