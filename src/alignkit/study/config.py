"""The options of `alignkit study`, read from a YAML file (a grid does not fit in flags).

Input paths (data, eval_data, model, reward_model and its data) are read relative to the
file when they name something there (else from the working directory); `output:` is relative
to the working directory. `recipe:NAME` names a recipe shipped with alignkit.

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
eval_limit: 200                    # evaluate on the first 200 held-out pairs (0 = all)
```

Optional, for a reward-model score of every cell and for the online methods (`ple`, `raft`,
`rrhf-online`, which sample from the prompts of the cell's subset):

```yaml
reward_model: runs/rm              # a spec (folder, HF id, module:function), or
reward_model: {data: prefs.jsonl, max_steps: 40, lora: true}   # `alignkit train-rm`
                                   # options: trained once into OUTPUT/reward_model
reward_prompts: 32                 # greedy answers to the first 32 held-out prompts,
reward_max_new_tokens: 64          # scored by the reward model: metric `reward`
online: {iterations: 3, queries_per_iteration: 8}   # options of every online method
judge: local:default               # win rate of each cell's answers to those prompts
baseline: {method: dpo, selector: random, budget: 1.0}  # against this cell (same seed)
```

`detect: 0.02` (or `--detect 0.02`) adds to the report's power table the seeds a paired design
needs to detect a difference of 0.02 to the control (from this study as a pilot).

Optional, active preference learning (`alignkit.study.active`): each cell spends its budget
in rounds; after each round the model trained on the labels so far picks the next pairs
from the unlabelled pool, and only those pairs' labels are revealed. The selectors are then
acquisition functions (`alignkit.select.acquisition`: random, real, apl, dopt):

```yaml
rounds: 4                          # 4 equal rounds, or the sizes: [16, 16, 32, 64]
retrain: false                     # true: each round trains the study model from the start
flip_rate: 0.0                     # the simulated annotator flips a revealed label with this
candidates: 256                    # unlabelled pairs scored per round (0: all of them)
```

Optional, where the cells run (`alignkit.study.executors`; the results are the same):

```yaml
workers: 4                         # 4 cell processes on this machine (a GPU or CPU threads each)
executor: ray                      # or: each cell on a Ray cluster ($RAY_ADDRESS)
ray_address: ray://head:10001      # the cluster (default: $RAY_ADDRESS, else a local Ray)
ray_gpus_per_cell: 1               # default: 1 on a cluster with GPUs, else 0
ray_cpus_per_cell: 2
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import alignkit.rewards.selection  # noqa: F401  (registers the rm-margin selector)
from alignkit.errors import AlignkitError
from alignkit.objectives.registry import get_method
from alignkit.online.config import ONLINE_METHODS, OnlineConfig
from alignkit.package_data import recipe_file, relative_to_file
from alignkit.rewards.training import RewardTrainConfig
from alignkit.select.acquisition import get_acquisition
from alignkit.select.registry import Keep, get_selector
from alignkit.study.executors import Execution
from alignkit.train.config import TrainConfig

METRICS = {  # study metric -> (held-out metric of the run, higher is better)
    "accuracy": ("eval/rewards/accuracies", True),
    "margin": ("eval/rewards/margins", True),
    "dpo_loss": ("eval/rewards/dpo_loss", False),
    "reward": ("eval/reward", True),  # reward-model score of greedy answers (reward_model:)
    "win_rate": ("win_rate", True),  # judge's win rate against the baseline cell (judge:)
}
PAIR_METRICS = ["accuracy", "margin", "dpo_loss"]  # the default without a reward model
# options a study sets itself for every cell
_CELL_OWNED = (
    "data",
    "eval_data",
    "output",
    "method",
    "seed",
    "resume",
    "model",
    "skip_invalid",
    "queries",
    "eval_queries",
    "reward_model",
)


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

    @property
    def online(self) -> bool:
        """An online method (ple, raft, rrhf-online): it samples from the subset's prompts
        and learns from the reward model's scores, not from the pairs' labels."""
        return self.method in ONLINE_METHODS


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
    metrics: list[str] = field(default_factory=lambda: list(PAIR_METRICS))
    skip_invalid: bool = False
    eval_limit: int = 0
    reward_model: str | dict[str, Any] = ""
    reward_prompts: int = 32
    reward_max_new_tokens: int = 64
    online: dict[str, Any] = field(default_factory=dict)
    judge: str = ""
    baseline: dict[str, Any] = field(default_factory=dict)
    detect: float = 0.0  # the report's power table: seeds to detect this difference
    rounds: int | list[int] = 0  # 0: one-shot cells; else active learning in rounds
    retrain: bool = False
    flip_rate: float = 0.0
    candidates: int = 0
    # where the cells run (`study.executors`); results do not depend on it
    executor: str = "local"
    workers: int = 0
    ray_address: str = ""
    ray_gpus_per_cell: float | None = None
    ray_cpus_per_cell: float = 1.0

    def execution(self) -> Execution:
        """How the cells run (`study.executors.Execution`)."""
        return Execution(
            self.executor,
            self.workers,
            self.ray_address,
            self.ray_gpus_per_cell,
            self.ray_cpus_per_cell,
        )

    @property
    def active(self) -> bool:
        """Cells spend their budget in rounds (`alignkit.study.active`)."""
        return bool(self.rounds)

    @property
    def generates(self) -> bool:
        """Whether cells answer the held-out prompts (for a reward score or a judge)."""
        return bool(self.reward_model or self.judge)

    def baseline_key(self) -> tuple[str, str, float]:
        """(method, selector label, budget) of the cell every cell is judged against: by
        default the first method, the random control, the largest budget."""
        control = next(s.label for s in self.selectors if s.name == "random")
        base = {"method": self.methods[0].name, "selector": control, "budget": max(self.budgets)}
        base.update(self.baseline)
        return str(base["method"]), str(base["selector"]), float(base["budget"])

    def train_config(self, method: MethodEntry, **cell: Any) -> TrainConfig:
        """The `TrainConfig` of one cell: the study's `train` options, the method's own, and
        the cell's data, output and seed."""
        values = {**self.train, **method.options, "method": method.method, "model": self.model}
        values.update(cell)
        _cell_run_name(values)
        try:
            config = TrainConfig(**values)
        except TypeError as exc:
            raise AlignkitError(f"study: invalid train option for {method.name}: {exc}") from exc
        return config

    def online_config(self, method: MethodEntry, **cell: Any) -> OnlineConfig:
        """The options of one online cell: the study's `online` options, the method's own,
        and the cell's queries, output, seed and reward model."""
        values = {**self.online, **method.options, "model": self.model}
        values.update(cell)
        _cell_run_name(values)
        try:
            return ONLINE_METHODS[method.method](**values)
        except TypeError as exc:
            raise AlignkitError(f"study: invalid option for {method.name}: {exc}") from exc

    def reward_train_config(self, output: str) -> RewardTrainConfig:
        """`reward_model:` given as `alignkit train-rm` options: trained into `output`."""
        assert isinstance(self.reward_model, dict)
        values = {"model": self.model, **self.reward_model, "output": output}
        if isinstance(values.get("data"), str):
            values["data"] = [values["data"]]
        try:
            return RewardTrainConfig(**values)
        except TypeError as exc:
            raise AlignkitError(f"study: invalid reward_model (train-rm) option: {exc}") from exc


def _cell_run_name(values: dict[str, Any]) -> None:
    """A `run_name:` of the study's options names a family of runs: each cell's trackers get
    `RUN_NAME-<cell id>` (without one: the cell id, the name of its folder)."""
    if values.get("run_name") and values.get("output"):
        values["run_name"] = f"{values['run_name']}-{Path(values['output']).name}"


def load_study_config(path: str, overrides: dict[str, Any]) -> StudyConfig:
    """The study of a YAML file (or `recipe:NAME`), with command-line `overrides` (data,
    eval_data, output)."""
    return parse_study(read_study_file(path, overrides), recipe_file(path))


def read_study_file(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The keys of a study file (`recipe:NAME`: a recipe shipped with alignkit), its input
    paths read relative to the file (`output:` stays relative to the working directory),
    then the command line's `overrides`."""
    path = recipe_file(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise AlignkitError(f"study config {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise AlignkitError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise AlignkitError(f"{path}: a study config is a mapping (data:, selectors:, ...)")
    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    _paths_near(raw, path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return raw


def _paths_near(raw: dict[str, Any], path: str) -> None:
    """The input paths of a study file (data, eval_data, model, reward_model and its data),
    read relative to the file where they name something there."""
    for section in (raw, raw.get("reward_model")):
        if not isinstance(section, dict):
            continue
        for key in ("data", "eval_data", "model", "reward_model"):
            value = section.get(key)
            if isinstance(value, str):
                section[key] = relative_to_file(value, path)
            elif isinstance(value, list):
                section[key] = [relative_to_file(str(v), path) for v in value]


def parse_study(raw: dict[str, Any], where: str = "study config") -> StudyConfig:
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise AlignkitError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {sorted(known)}")
    for name in ("data", "eval_data", "output", "selectors", "budgets", "methods"):
        if not raw.get(name):
            raise AlignkitError(f"{where}: `{name}:` is required")
    rounds = _rounds(raw.get("rounds") or 0, where)
    config = StudyConfig(
        data=_paths(raw["data"]),
        eval_data=_paths(raw["eval_data"]),
        output=str(raw["output"]),
        selectors=[
            _selector(s, where, bool(rounds)) for s in _list(raw["selectors"], "selectors", where)
        ],
        budgets=[float(b) for b in _list(raw["budgets"], "budgets", where)],
        seeds=[int(s) for s in _list(raw.get("seeds", [0]), "seeds", where)],
        methods=[_method(m, where) for m in _list(raw["methods"], "methods", where)],
        model=str(raw.get("model", "default")),
        train=dict(raw.get("train") or {}),
        selection=dict(raw.get("selection") or {}),
        skip_invalid=bool(raw.get("skip_invalid", False)),
        eval_limit=int(raw.get("eval_limit", 0)),
        reward_model=_reward_model(raw.get("reward_model") or "", where),
        reward_prompts=int(raw.get("reward_prompts", 32)),
        reward_max_new_tokens=int(raw.get("reward_max_new_tokens", 64)),
        online=dict(raw.get("online") or {}),
        judge=str(raw.get("judge") or ""),
        baseline=dict(raw.get("baseline") or {}),
        detect=float(raw.get("detect") or 0.0),
        rounds=rounds,
        retrain=bool(raw.get("retrain", False)),
        flip_rate=float(raw.get("flip_rate", 0.0)),
        candidates=int(raw.get("candidates", 0)),
        executor=str(raw.get("executor") or "local"),
        workers=int(raw.get("workers") or 0),
        ray_address=str(raw.get("ray_address") or ""),
        ray_gpus_per_cell=(
            None if raw.get("ray_gpus_per_cell") is None else float(raw["ray_gpus_per_cell"])
        ),
        ray_cpus_per_cell=float(raw.get("ray_cpus_per_cell", 1.0)),
    )
    default = (
        PAIR_METRICS
        + (["reward"] if config.reward_model else [])
        + (["win_rate"] if config.judge else [])
    )
    config.metrics = [str(m) for m in raw.get("metrics", default)]
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
    sections = [("train", config.train), ("online", config.online)]
    for what, options in sections + [(m.name, m.options) for m in config.methods]:
        owned = sorted(set(options) & set(_CELL_OWNED))
        if owned:
            raise AlignkitError(
                f"{where}: options of {what} may not set {owned}: the study sets them per cell"
            )
    if config.executor not in ("local", "ray"):
        raise AlignkitError(f"{where}: executor is local or ray, got {config.executor!r}")
    if config.workers < 0 or config.ray_cpus_per_cell <= 0:
        raise AlignkitError(f"{where}: workers must be >= 0 and ray_cpus_per_cell > 0")
    if config.ray_gpus_per_cell is not None and config.ray_gpus_per_cell < 0:
        raise AlignkitError(f"{where}: ray_gpus_per_cell must be >= 0")
    for name in ("eval_limit", "reward_prompts", "reward_max_new_tokens", "detect"):
        if getattr(config, name) < 0:
            raise AlignkitError(f"{where}: {name} must be >= 0")
    online = [m.name for m in config.methods if m.online]
    if online and not config.reward_model:
        raise AlignkitError(
            f"{where}: the online method(s) {online} learn from a reward model: add "
            "`reward_model:` (a spec, or `alignkit train-rm` options)"
        )
    for method in config.methods:
        tokens = {**config.online, **method.options}.get("max_new_tokens", 128)
        if method.online and tokens != config.reward_max_new_tokens:
            raise AlignkitError(
                f"{where}: {method.name} answers the held-out prompts with its max_new_tokens "
                f"({tokens}); set it equal to reward_max_new_tokens "
                f"({config.reward_max_new_tokens}) so every cell's answers have one limit"
            )
    if "win_rate" in config.metrics and not config.judge:
        raise AlignkitError(f"{where}: the metric `win_rate` needs `judge:` (e.g. local:default)")
    if config.judge:
        _check_baseline(config, where)
    if "reward" in config.metrics and not config.reward_model:
        raise AlignkitError(f"{where}: the metric `reward` needs `reward_model:`")
    if isinstance(config.reward_model, dict):
        config.reward_train_config(config.output).validate()
    for method in config.methods:  # every option checked now, not after hours of other cells
        if method.online:  # the reward model may not exist yet: checked when it is loaded
            config.online_config(method, queries=config.data[0], output=config.output).validate()
        else:
            config.train_config(method, data=config.data, output=config.output).validate()
    if config.active:
        _check_active(config, where)
    else:  # a selector's model and options, before any other selector's pass has run
        model = str(config.selection.get("model", config.model))
        for selector in config.selectors:
            check = get_selector(selector.name).check
            try:
                if check is not None:
                    check(model, selector.options)
            except AlignkitError as exc:
                raise AlignkitError(f"{where}: selector {selector.label}: {exc}") from None
    if not any(s.name == "random" for s in config.selectors):
        raise AlignkitError(
            f"{where}: add the control `- {{name: random}}` to selectors: labels saved are "
            "measured against it"
        )


def _rounds(value: Any, where: str) -> int | list[int]:
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise AlignkitError(f"{where}: rounds is a number of rounds or a list of round sizes")
    if isinstance(value, list):
        if not value or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
            raise AlignkitError(f"{where}: rounds: every round size is a count >= 1: {value}")
        return [int(v) for v in value]
    if value < 0:
        raise AlignkitError(f"{where}: rounds must be >= 0 (0: no rounds), got {value}")
    return int(value)


def _check_active(config: StudyConfig, where: str) -> None:
    """Rounds: pair methods only (the annotator reveals pair labels), a flip rate in [0, 1),
    a list of round sizes that adds up to every budget."""
    for method in config.methods:
        if method.online or get_method(method.method).kind != "pair":
            raise AlignkitError(
                f"{where}: rounds: {method.name} is not a pair method (dpo, ipo, ...): the "
                "simulated annotator reveals pair labels"
            )
    if not 0 <= config.flip_rate < 1:
        raise AlignkitError(f"{where}: flip_rate must be in [0, 1), got {config.flip_rate}")
    if config.judge:
        raise AlignkitError(f"{where}: rounds: `judge:` is not supported (use reward_model:)")
    if config.candidates < 0:
        raise AlignkitError(f"{where}: candidates must be >= 0 (0: every unlabelled pair)")
    if isinstance(config.rounds, list):
        bad = [b for b in config.budgets if b != sum(config.rounds)]
        if bad:
            raise AlignkitError(
                f"{where}: the round sizes {config.rounds} add up to {sum(config.rounds)}, "
                f"not to the budget(s) {bad}: give budgets: [{sum(config.rounds)}]"
            )


def _check_baseline(config: StudyConfig, where: str) -> None:
    from alignkit.evaluation.judges import judge_kind

    judge_kind(config.judge)  # an unknown judge spec fails now
    extra = sorted(set(config.baseline) - {"method", "selector", "budget"})
    if extra:
        raise AlignkitError(f"{where}: baseline: unknown key(s) {extra} (method, selector, budget)")
    method, selector, budget = config.baseline_key()
    if method not in [m.name for m in config.methods]:
        raise AlignkitError(f"{where}: baseline method {method!r} is not one of the methods")
    if selector not in [s.label for s in config.selectors]:
        raise AlignkitError(f"{where}: baseline selector {selector!r} is not one of the selectors")
    if budget not in config.budgets:
        raise AlignkitError(f"{where}: baseline budget {budget:g} is not one of the budgets")


def _reward_model(value: Any, where: str) -> str | dict[str, Any]:
    if isinstance(value, dict):
        return {str(k).replace("-", "_"): v for k, v in value.items()}
    if not isinstance(value, str):
        raise AlignkitError(
            f"{where}: reward_model is a model spec or a mapping of `alignkit train-rm` options"
        )
    return value


def _paths(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _list(value: Any, name: str, where: str) -> list:
    if not isinstance(value, list):
        raise AlignkitError(f"{where}: `{name}:` must be a list")
    return value


def _selector(value: Any, where: str, active: bool = False) -> SelectorEntry:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise AlignkitError(f"{where}: a selector is {{name: ..., options: ..., keep: ...}}")
    extra = sorted(set(value) - {"name", "label", "options", "keep"})
    if extra:
        raise AlignkitError(f"{where}: selector {value['name']}: unknown key(s) {extra}")
    # unknown selectors and options fail now, listing what exists, not after hours of cells
    given = dict(value.get("options") or {})
    if active:  # in rounds a selector is an acquisition function
        options = get_acquisition(str(value["name"])).resolve_options(given)
        if value.get("keep"):
            raise AlignkitError(f"{where}: {value['name']}: in rounds there is no keep rule")
    else:
        selector = get_selector(str(value["name"]))
        options = selector.resolve_options(given)
    keep = value.get("keep")
    if keep is not None:  # a rule, or the selector's name of one (reward-gap: misranked, ...)
        try:
            keep = selector.rule(str(keep))
        except AlignkitError as exc:
            raise AlignkitError(f"{where}: {exc}") from None
    label = str(value.get("label") or value["name"])
    return SelectorEntry(str(value["name"]), label, options, keep)


def _method(value: Any, where: str) -> MethodEntry:
    if isinstance(value, str):
        value = {"name": value, "method": value}
    if not isinstance(value, dict) or "method" not in value:
        raise AlignkitError(f"{where}: a method is {{name: ..., method: dpo, options: {{...}}}}")
    options = dict(value.get("options") or {})
    return MethodEntry(str(value.get("name") or value["method"]), str(value["method"]), options)
