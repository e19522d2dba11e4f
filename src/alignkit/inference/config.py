"""Options of generation, torch-free (`alignkit VERB --help` loads no model code): the option
groups `SamplingOptions` (how answers are sampled) and `EndpointOptions` (an OpenAI-compatible
server and its requests), which `generate` and the online verbs inherit, and the options of
`alignkit serve`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alignkit.errors import AlignkitError
from alignkit.model_options import ModelOptions
from alignkit.options import check_ranges, opt

if TYPE_CHECKING:
    from alignkit.inference.generation import SamplingConfig
    from alignkit.inference.openai_client import OpenAIClient

API_KEY_VARIABLE = "OPENAI_API_KEY"
SERVE_KEY_VARIABLE = "ALIGNKIT_API_KEY"  # the key `alignkit serve` requires
LOOPBACK = ("127.0.0.1", "::1", "localhost")
SAMPLING = "sampling"
ENDPOINT = "an OpenAI-compatible server (--endpoint)"


@dataclass(kw_only=True)  # keyword-only: verbs keep their positional order
class SamplingOptions:
    """How answers are sampled (`generate`, the online verbs): --max-new-tokens,
    --temperature, --top-p, --top-k."""

    max_new_tokens: int = opt(128, "tokens generated per response at most", group=SAMPLING)
    temperature: float = opt(1.0, "sampling temperature", group=SAMPLING)
    top_p: float = opt(
        1.0, "nucleus sampling: keep the smallest token set with this mass", group=SAMPLING
    )
    top_k: int = opt(0, "sample among the k most likely tokens only (0 = off)", group=SAMPLING)

    def check_sampling(self) -> None:
        check_ranges(
            positive={"max_new_tokens": self.max_new_tokens, "temperature": self.temperature},
            non_negative={"top_k": self.top_k},
            fractions={"top_p": self.top_p},
        )

    def sampling_config(self, batch_size: int, seed: int | None) -> SamplingConfig:
        """These settings as the sampler's `SamplingConfig` (always sampling)."""
        from alignkit.inference.generation import SamplingConfig

        return SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=True,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            batch_size=batch_size,
            seed=seed,
        )


@dataclass(kw_only=True)  # keyword-only: verbs keep their positional order
class EndpointOptions:
    """An OpenAI-compatible server that samples (`generate`, the online verbs): --endpoint URL
    and its requests; the API key is --api-key, else $OPENAI_API_KEY (`api_key()`: the one
    place that reads it)."""

    endpoint: str = opt(
        "",
        "an OpenAI-compatible server that samples instead of a local model, e.g. "
        "http://127.0.0.1:8000/v1 (`alignkit serve`, vLLM, SGLang)",
        metavar="URL",
        group=ENDPOINT,
    )
    api_key: str = field(  # kept out of reprs and of written configs: never logged
        default="",
        repr=False,
        metadata={
            "help": f"API key of --endpoint (default: ${API_KEY_VARIABLE}; never written)",
            "group": ENDPOINT,
        },
    )
    concurrency: int = opt(4, "requests in flight at once", group=ENDPOINT)
    timeout: float = opt(120.0, "seconds to wait for a reply", group=ENDPOINT)
    retries: int = opt(
        4,
        "retries of a failed request (connection errors, HTTP 429/5xx)",
        group=ENDPOINT,
    )
    retry_wait: float = opt(
        1.0,
        "seconds before the first retry, doubled at each next one",
        group=ENDPOINT,
    )

    def check_endpoint(self) -> None:
        """--endpoint is a URL and its request options are in range."""
        from alignkit.inference.openai_client import is_url

        if not is_url(self.endpoint):
            raise AlignkitError(f"--endpoint {self.endpoint!r}: expected http(s)://HOST:PORT/v1")
        check_ranges(
            positive={"concurrency": self.concurrency, "timeout": self.timeout},
            non_negative={"retries": self.retries, "retry_wait": self.retry_wait},
        )

    def resolved_api_key(self) -> str | None:
        """--api-key, else $OPENAI_API_KEY, else none."""
        return self.api_key or os.environ.get(API_KEY_VARIABLE) or None

    def client(self, model_flag: str = "--model") -> OpenAIClient:
        """The HTTP client of --endpoint (`model_flag`: the option naming the served model)."""
        from alignkit.inference.openai_client import OpenAIClient

        return OpenAIClient(
            self.endpoint,
            self.resolved_api_key(),
            timeout=self.timeout,
            retries=self.retries,
            retry_wait=self.retry_wait,
            key_flag=f"--api-key or set {API_KEY_VARIABLE}",
            model_flag=model_flag,
        )


@dataclass
class ServeConfig(ModelOptions):
    """Serve one local model through an OpenAI-compatible HTTP API."""

    model: str | None = opt(
        None,
        "'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id or model folder, "
        "a run directory of `alignkit train` (its model/), or a peft adapter folder written by "
        "`alignkit train --lora` (base model from the run's summary.json or adapter_config.json)",
        required=True,
    )
    host: str = opt(
        "127.0.0.1",
        "address to bind (default: 127.0.0.1, this machine only; another address, e.g. "
        "0.0.0.0, exposes the server to the network and needs --api-key)",
    )
    api_key: str = field(  # kept out of reprs: never logged
        default="",
        repr=False,
        metadata={
            "help": "every request must carry `Authorization: Bearer KEY` (default: "
            f"${SERVE_KEY_VARIABLE}; required for a --host other than loopback)"
        },
    )
    port: int = opt(8000, "port to listen on; 0 picks a free one (default: 8000)")
    max_new_tokens: int = opt(
        256,
        "tokens generated per choice when a request gives no max_tokens, and the upper "
        "limit when it does (default: 256)",
        metavar="N",
    )

    request_timeout: float = opt(
        600.0,
        "seconds a non-streamed request may take, waiting its turn included, before it is "
        "stopped with a 408; 0 = no limit (default: 600)",
        metavar="SECONDS",
    )

    def validate(self) -> None:
        if self.request_timeout < 0:
            raise AlignkitError("--request-timeout must be 0 (no limit) or more")
        if self.max_new_tokens < 1:
            raise AlignkitError("--max-new-tokens must be at least 1")
        if not 0 <= self.port <= 65535:
            raise AlignkitError("--port must be between 0 and 65535")
        if self.host not in LOOPBACK and not self.resolved_api_key():
            raise AlignkitError(
                f"--host {self.host} exposes the server to the network: give --api-key too "
                f"(or set ${SERVE_KEY_VARIABLE})"
            )

    def resolved_api_key(self) -> str | None:
        """--api-key, else $ALIGNKIT_API_KEY, else none (loopback only)."""
        return self.api_key or os.environ.get(SERVE_KEY_VARIABLE) or None
