"""Options of `alignkit serve` (torch-free: `alignkit serve --help` loads no model code)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.errors import AlignkitError
from alignkit.options import opt


@dataclass
class ServeConfig:
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
        "address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the "
        "unauthenticated server to the network)",
    )
    port: int = opt(8000, "port to listen on; 0 picks a free one (default: 8000)")
    max_new_tokens: int = opt(
        256,
        "tokens generated per choice when a request gives no max_tokens, and the upper "
        "limit when it does (default: 256)",
        metavar="N",
    )

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise AlignkitError("--max-new-tokens must be at least 1")
        if not 0 <= self.port <= 65535:
            raise AlignkitError("--port must be between 0 and 65535")
