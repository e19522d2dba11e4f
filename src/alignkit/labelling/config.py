"""Options of `alignkit generate` and of `alignkit label export`, `import`, `auto` and
`serve` (`label select`'s are `choose.ChooseConfig`), torch-free: `--help` loads no model
code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from alignkit.errors import AlignkitError
from alignkit.evaluation.config import HttpJudgeOptions
from alignkit.inference.config import SAMPLING, EndpointOptions, SamplingOptions
from alignkit.model_options import CHAT_HELP, TRUST_REMOTE_CODE_HELP, ModelOptions, Precision
from alignkit.options import check_ranges, opt
from alignkit.runs import chat_format

if TYPE_CHECKING:
    from alignkit.inference.generation import SamplingConfig

Backend = Literal["auto", "hf", "vllm"]


@dataclass
class GenerateConfig(ModelOptions, EndpointOptions, SamplingOptions):
    """Options of `alignkit generate`: `ModelOptions` (the local policy), `SamplingOptions`
    and `EndpointOptions` (a server instead of the local model), and the pool's own."""

    model: str = opt(
        "",
        "policy: HF model id, local path, run directory or 'default' (embedded "
        "SmolLM2-135M-Instruct; the default); with --endpoint: the served model's name "
        "(default: the only one its /models lists)",
    )
    precision: Precision = opt(
        "auto",
        "hf backend: bf16 autocast, fp32, or auto (bf16 on a GPU; fp32 on a CPU, where "
        "decoding is faster without autocast)",
    )
    temperature: float = opt(
        1.0, "sampling temperature (> 0: a pool needs different answers)", group=SAMPLING
    )
    prompts: str = opt(
        "",
        "prompts file (jsonl/json/parquet): records with a 'prompt' (text or chat messages)",
        metavar="PATH",
    )
    output: str = opt("", "the pool file to write (jsonl; resumed when it exists)", metavar="PATH")
    num_responses: int = opt(4, "responses sampled per prompt (K)")
    seed: int = opt(
        42,
        "random seed (also sent to --endpoint): the hf backend gives the same pool for the "
        "same seed and settings",
    )
    batch_size: int = opt(
        8, "prompts per batch; each batch (all its K responses) is appended when done"
    )
    chat: bool | None = opt(None, CHAT_HELP + " (the pool keeps the prompt as sent)")
    max_prompt_tokens: int = opt(
        0, "drop prompts longer than this many tokens, and report how many (0 = keep all)"
    )
    backend: Backend = opt(
        "auto",
        "local generation: hf (transformers generate), vllm (needs vllm and a GPU), auto "
        "(vllm when usable, else hf)",
    )
    vllm_gpu_memory_utilization: float = opt(
        0.9, "fraction of GPU memory the vLLM engine may reserve (vllm backend)"
    )
    overwrite: bool = opt(False, "start the pool over instead of resuming it")

    def __post_init__(self) -> None:
        self.chat = chat_format(self.chat, self.model)  # a run's own format by default

    def validate(self) -> None:
        if not self.prompts or not self.output:
            raise AlignkitError("give --prompts FILE and --output POOL.jsonl")
        check_ranges(
            positive={
                "num_responses": self.num_responses,
                "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature,
                "batch_size": self.batch_size,
                "concurrency": self.concurrency,
                "timeout": self.timeout,
            },
            non_negative={
                "top_k": self.top_k,
                "max_prompt_tokens": self.max_prompt_tokens,
                "retries": self.retries,
                "retry_wait": self.retry_wait,
            },
            fractions={
                "top_p": self.top_p,
                "vllm_gpu_memory_utilization": self.vllm_gpu_memory_utilization,
            },
        )
        if self.endpoint:
            self._validate_endpoint()
        else:
            from alignkit.models import check_model_spec

            self.model = self.model or "default"
            check_model_spec(self.model)

    def _validate_endpoint(self) -> None:
        self.check_endpoint()
        if self.trust_remote_code:
            raise AlignkitError("--trust-remote-code is for local models: drop it with --endpoint")
        if self.backend != "auto":
            raise AlignkitError("--backend is for local models: drop it with --endpoint")
        if self.chat is False:
            raise AlignkitError("--no-chat: an endpoint takes chat messages; drop --no-chat")
        if self.max_prompt_tokens:
            raise AlignkitError(
                "--max-prompt-tokens needs the model's tokenizer: not available with --endpoint"
            )

    def sampling(self, seed: int) -> SamplingConfig:
        """The decoding settings of one batch (all K responses of a prompt are in it)."""
        # one generate call per batch
        return self.sampling_config(self.batch_size * self.num_responses, seed)

    def settings(self, model_label: str) -> dict[str, Any]:
        """What the pool's responses depend on (the sidecar file; a resume must match it)."""
        return {
            "model": model_label,
            "num_responses": self.num_responses,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "chat": self.chat,
        }


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
    trust_remote_code: bool = opt(
        False, TRUST_REMOTE_CODE_HELP + " (--judge local:MODEL, --reward-model)"
    )


@dataclass
class LabelServeConfig:
    """Options of `alignkit label serve`."""

    pairs: str | None = opt(None, "pairs to label (`alignkit label select`)", required=True)
    verdicts: str | None = opt(None, "jsonl file verdicts are appended to", required=True)
    annotator: str = opt("", "name prefilled on the page")
    host: str = opt("127.0.0.1", "address to bind (default: 127.0.0.1)")
    port: int = opt(8080, "0 picks a free one (default: 8080)")
    token: str | None = opt(
        None,
        "16-256 characters required on every request (in the printed URL; the page keeps it in "
        "a cookie named alignkit_token_PORT: cookies ignore ports, so browsers also send it to "
        "other web servers on this host); needed for a non-loopback --host",
    )
    seed: int = opt(0, "seed of the left/right order (default: 0)")

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise AlignkitError("--port must be between 0 and 65535")
