"""Options of the verbs that measure (`eval`, `judge`, `compare`), torch-free: `alignkit VERB
--help` imports no model code; the runners import torch when they run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alignkit.data.config import DataOptions
from alignkit.data.formats import FORMATS
from alignkit.errors import AlignkitError
from alignkit.model_options import CHAT_HELP, TRUST_REMOTE_CODE_HELP, ModelOptions, Precision
from alignkit.options import opt
from alignkit.rewards.options import RewardOptions
from alignkit.runs import chat_format

METRIC_NAMES = ("perplexity", "margins", "generate", "reward", "bleu")
DEFAULT_BETA = 0.1


@dataclass
class EvalConfig(RewardOptions, DataOptions, ModelOptions):
    """Options of `alignkit eval` (also readable from a YAML file): the option groups
    `ModelOptions`, `DataOptions` (the test data) and `RewardOptions`, and the metrics'."""

    model: str = opt(
        "",
        "model to evaluate: a run directory of `alignkit train`, its model/ dir (full "
        "weights or LoRA adapter), an HF id or local path, or 'default'",
    )
    precision: Precision = opt("auto", "compute precision", kw_only=True)
    data: list[str] = opt([], "test data files (any format alignkit reads)", metavar="PATH")
    skip_invalid: bool = opt(
        False,
        "drop invalid test records instead of stopping; they are counted by reason in the "
        "report and listed with their file:line in REPORT.rejected.jsonl",
        kw_only=True,
    )
    reward_model: str = opt(
        "",
        "reward model scoring the generations: a directory (e.g. of `alignkit train-rm`), "
        "an HF id, or package.module:function",
        kw_only=True,
    )
    output: str = opt(
        "", "report path (.json); REPORT.md and REPORT.generations.jsonl are written next to it"
    )
    ref: str = opt(
        "",
        "reference model of the implicit reward (default: the run's base model; for a "
        "LoRA adapter: the same model with the adapter disabled)",
    )
    metrics: list[str] = opt(
        [],
        f"metrics, comma- or space-separated, from {','.join(METRIC_NAMES)} "
        "(default: every metric the data and models support)",
        metavar="NAME",
    )
    num_prompts: int = opt(100, "test prompts to generate for (a seeded random sample; 0 = all)")
    max_new_tokens: int = opt(128, "max new tokens per generated response")
    do_sample: bool = opt(False, "sample instead of greedy decoding")
    temperature: float = opt(1.0, "sampling temperature (with --do-sample)")
    beta: float = opt(0.0, f"beta of the implicit reward (0 = the run's beta, else {DEFAULT_BETA})")
    batch_size: int = opt(8, "sequences per forward pass / generation batch")
    max_length: int = opt(
        1024, "max tokens of prompt + response when scoring (truncated as in training)"
    )
    seed: int = opt(0, "seed of the prompt sample and of sampling")
    chat: bool | None = opt(None, CHAT_HELP)

    def __post_init__(self) -> None:
        self.chat = chat_format(self.chat, self.model)  # the run's own format by default

    def validate(self) -> None:
        for name in ("model", "output"):
            if not getattr(self, name):
                raise AlignkitError(f"give --{name}")
        if not self.data:
            raise AlignkitError("no test data: give --data PATH")
        if not self.output.endswith(".json"):
            raise AlignkitError(f"--output must be a .json path, got {self.output!r}")
        self.requested_metrics()
        # model specs fail here, before any model is loaded or anything generated
        from alignkit.models import check_model_spec
        from alignkit.rewards.loading import check_reward_spec

        check_model_spec(self.model)
        if self.ref:
            check_model_spec(self.ref)
        if self.reward_model:
            check_reward_spec(self.reward_model, self.reward_label, self.reward_output)
        checks = {
            "--batch-size must be > 0": self.batch_size > 0,
            "--max-new-tokens must be > 0": self.max_new_tokens > 0,
            "--num-prompts must be >= 0": self.num_prompts >= 0,
            "--max-length must be >= 8": self.max_length >= 8,
            "--beta must be >= 0": self.beta >= 0,
            "--temperature must be > 0": self.temperature > 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise AlignkitError(message)

    def requested_metrics(self) -> list[str]:
        """The --metrics names (comma or space separated); [] = all applicable."""
        names = [n.strip() for item in self.metrics for n in item.split(",") if n.strip()]
        unknown = [n for n in names if n not in METRIC_NAMES]
        if unknown:
            raise AlignkitError(
                f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}"
            )
        return names

    def paths(self) -> dict[str, Path]:
        """report.json, report.md, report.generations.jsonl, report.rejected.jsonl."""
        report = Path(self.output)
        stem = report.with_suffix("")
        return {
            "json": report,
            "markdown": report.with_suffix(".md"),
            "generations": stem.with_name(stem.name + ".generations.jsonl"),
            "rejected": stem.with_name(stem.name + ".rejected.jsonl"),
        }


@dataclass
class CompareConfig:
    """Options of `alignkit compare`."""

    runs: list[str] = opt(
        [],
        "run directories written by `alignkit train`",
        metavar="RUN_DIR",
        positional=True,
        required=True,
    )
    output: str | None = opt(
        None, "folder for the report, plots and JSON", metavar="DIR", required=True
    )


HTTP = "http judges only"

# flags that only apply to http judges: name -> default
HTTP_JUDGE_DEFAULTS: dict[str, Any] = {
    "judge_model": None,
    "api_key_env": None,
    "concurrency": 4,
    "timeout": 60.0,
    "retries": 4,
    "retry_wait": 1.0,
}


@dataclass
class HttpJudgeOptions:
    """The options of http judges (`judge`, `label auto`): model name, key, concurrency,
    timeout, retries. None = not given (its default is in `HTTP_JUDGE_DEFAULTS`): giving
    one to a judge of another kind is refused."""

    judge_model: str | None = opt(
        None,
        "model name sent to the endpoint (default: the only one its /models lists)",
        metavar="NAME",
        group=HTTP,
    )
    api_key_env: str | None = opt(
        None,
        "environment variable holding the API key (sent as a bearer token, never "
        "logged or written); default: no key",
        metavar="VAR",
        group=HTTP,
    )
    concurrency: int | None = opt(
        None, "requests in flight at once (default: 4)", metavar="N", group=HTTP
    )
    timeout: float | None = opt(
        None, "seconds to wait for a reply (default: 60)", metavar="SECONDS", group=HTTP
    )
    retries: int | None = opt(
        None,
        "retries of a failed request (connection errors, timeouts, HTTP 429/5xx); "
        "then the run stops with exit code 2 (default: 4)",
        metavar="N",
        group=HTTP,
    )
    retry_wait: float | None = opt(
        None,
        "wait before the first retry, doubled at each next one (default: 1)",
        metavar="SECONDS",
        group=HTTP,
    )

    def http_options_given(self) -> list[str]:
        """The http options given (field names)."""
        return [k for k in HTTP_JUDGE_DEFAULTS if getattr(self, k) is not None]

    def http_judge_options(self, judge: str) -> tuple[dict[str, Any], int]:
        """(keyword options of `build_judge` for the judge spec `judge`, concurrency): the
        http options checked (refused for a judge of another kind) and the API key read
        from its variable."""
        from alignkit.evaluation.judges import judge_kind

        kind = judge_kind(judge)
        given = self.http_options_given()
        if kind == "function":  # a function judge takes --concurrency, nothing else of these
            given = [k for k in given if k != "concurrency"]
        if kind != "http" and given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise AlignkitError(f"{flags}: only for http judges, not for --judge {judge}")
        opts = {
            k: v if getattr(self, k) is None else getattr(self, k)
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
        http: dict[str, Any] = {}
        if kind == "http":
            http = {k: opts[k] for k in ("timeout", "retries", "retry_wait")}
            http.update(model=opts["judge_model"], api_key=_api_key(opts["api_key_env"]))
        return http, int(opts["concurrency"])


def _api_key(var: str | None) -> str | None:
    if var is None:
        return None
    key = os.environ.get(var)
    if not key:
        raise AlignkitError(f"--api-key-env {var}: the environment variable {var} is not set")
    return key


MODE = "mode"


@dataclass
class JudgeConfig(HttpJudgeOptions):
    """Options of `alignkit judge`."""

    a: str | None = opt(
        None, "generations of system A (all modes but --agreement)", metavar="GENS_A.jsonl"
    )
    b: str | None = opt(
        None, "generations of system B (same prompts as --a)", metavar="GENS_B.jsonl", one_of=MODE
    )
    against_chosen: str | None = opt(
        None,
        "B = the chosen answer of this data file to each prompt of --a (ULMA)",
        metavar="DATA",
        one_of=MODE,
    )
    agreement: list[str] | None = opt(
        None,
        "preference-pair files (subsets): report how often the judge prefers the "
        "labelled chosen answer, per subset and order (REAL); NAME labels the subset "
        "(default: the path)",
        metavar="[NAME=]DATA",
        one_of=MODE,
    )
    judge: str | None = opt(
        None, "local:MODEL, http:BASE_URL or module:function", metavar="SPEC", required=True
    )
    template: str | None = opt(
        None,
        "judge question with {prompt} {first} {second} (and {criterion}); .json: "
        '{"system", "user"}; default: built-in (see below)',
        metavar="FILE",
    )
    criteria: list[str] | None = opt(
        None,
        "judge each criterion separately, e.g. helpfulness harmlessness (ULMA); "
        "default: one overall question",
        metavar="NAME[=DESCRIPTION]",
    )
    orders: Literal["both", "one"] = opt(
        "both",
        "ask each comparison in both orders (PLE, default) or once with A shown first (ULMA, REAL)",
    )
    max_pairs: int = opt(
        0,
        "--agreement: a seeded sample of N pairs per subset (REAL: 200; default 0 = all)",
        metavar="N",
    )
    seed: int = opt(0, "seed of the --max-pairs sample (default: 0)")
    data_format: str = opt(
        "auto",
        "format of the --against-chosen / --agreement files (default: auto)",
        choices=["auto", *FORMATS],
    )
    skip_invalid: bool = opt(
        False,
        "drop invalid records of the --against-chosen / --agreement files instead of "
        "stopping; counted in judge.json, listed with file:line in DIR/rejected.jsonl",
        negatable=False,
    )
    output: str = opt("runs/judge", "output folder (default: runs/judge)", metavar="DIR")
    cache: str | None = opt(
        None,
        "reply cache, shareable between runs; keyed by the --judge spec, template, "
        "criterion and question, so delete it when the judge model changes under the same "
        "name (default: DIR/judge_cache.jsonl)",
        metavar="FILE.jsonl",
    )
    max_tokens: int = opt(16, "tokens per judge reply (default: 16)", metavar="N")
    trust_remote_code: bool = opt(False, TRUST_REMOTE_CODE_HELP + " (--judge local:MODEL)")

    def validate(self) -> None:
        if self.trust_remote_code and not (self.judge or "").startswith("local:"):
            raise AlignkitError("--trust-remote-code: only for --judge local:MODEL")
        if self.max_tokens < 1:
            raise AlignkitError("--max-tokens must be at least 1")
        if self.max_pairs < 0:
            raise AlignkitError("--max-pairs must not be negative")
        if self.skip_invalid and self.b is not None:
            raise AlignkitError("--skip-invalid: only with --against-chosen or --agreement")
        if self.agreement is None:
            if self.a is None:
                raise AlignkitError("give --a GENS_A.jsonl (the generations to judge)")
            if self.max_pairs:
                raise AlignkitError("--max-pairs: only with --agreement")
        else:
            if self.a is not None:
                raise AlignkitError("--agreement judges the pairs of the data files: drop --a")
            if self.orders == "one":
                raise AlignkitError(
                    "--agreement asks both orders and reports each: drop --orders one"
                )
