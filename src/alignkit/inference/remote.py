"""Sampling from an OpenAI-compatible server: `--endpoint URL` of the online loops and
`alignkit generate --endpoint URL` use this one `Generator`.

`EndpointGenerator` asks `/chat/completions` (vLLM, SGLang, `alignkit serve`, ...) through the
shared `OpenAIClient`, `concurrency` prompts at a time. All K responses of a prompt are
asked in one request (`n`); a server that answers with fewer choices, or refuses `n` > 1
(`alignkit serve`), is then asked one response per request, each with its own seed, for
the rest of the run.

The server holds its own weights: training changes the policy in this process, not the
model that samples. Unless the server is updated, every sample comes from the server's
fixed weights and PLE, RAFT and online RRHF train off-policy (on another model's answers).
`sync(model)` does what a documented server API allows:
- with a sync URL (vLLM's runtime LoRA endpoint `/v1/load_lora_adapter`, served when vLLM
  runs with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`), it saves the
  policy's LoRA adapter to `sync_dir/NAME`, asks the server to load it under the new NAME,
  sends later requests to NAME (vLLM routes a request to the adapter named as its model)
  and unloads the previous adapter (`/v1/unload_lora_adapter`). The server must read
  `sync_dir` (same machine or a shared filesystem) and serve the policy's base model;
- without one it only logs, once, that samples come from the server's fixed weights.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torch import nn

from alignkit.data.prompts import prompt_key
from alignkit.data.records import Prompt
from alignkit.errors import AlignkitError
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.inference.openai_client import (
    EndpointUnavailable,
    OpenAIClient,
    RequestRefused,
)
from alignkit.models import is_peft

log = logging.getLogger(__name__)

SEED_RANGE = 2**31  # seeds sent to servers stay 32-bit signed integers
OFF_POLICY = (
    "samples come from the server's fixed weights (off-policy): the policy being trained "
    "is not the model that samples; give --generator-sync-url to load the trained LoRA "
    "adapter into a vLLM server after every iteration"
)


def derived_seed(seed: int, *parts: str) -> int:
    """A seed that depends on `seed` and `parts` only (so a resumed run repeats it)."""
    text = "|".join([str(seed), *parts])
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % SEED_RANGE


class EndpointGenerator:
    """Samples from an OpenAI-compatible chat endpoint (see the module docstring).

    `model`: the name sent (default: the only one /models lists). `sync_url`, `sync_dir`,
    `run_name`: where `sync` saves and loads the trained adapter (none: `sync` warns once).
    Under several processes, `main` says which one saves and posts, and `barrier` makes the
    others wait for it before they switch to the new adapter.
    """

    def __init__(
        self,
        client: OpenAIClient,
        model: str | None = None,
        *,
        concurrency: int = 4,
        sync_url: str | None = None,
        sync_dir: str | Path | None = None,
        run_name: str = "alignkit-policy",
        main: bool = True,
        barrier: Callable[[], None] = lambda: None,
    ) -> None:
        if sync_url and sync_dir is None:
            raise AlignkitError("a sync URL needs a folder to save the adapter in")
        self.client = client
        self.model = model or client.only_model()
        self.concurrency = concurrency
        self.sync_url, self.sync_dir = sync_url, Path(sync_dir) if sync_dir else None
        self.run_name, self.main, self.barrier = run_name, main, barrier
        self.label = f"{self.model} @ {client.base_url}"
        self.multi: bool | None = None  # does the server honour n > 1? (None: not known yet)
        self.syncs = 0  # adapters loaded so far
        self.warned = False

    # ---------------------------------------------------------------- sampling

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, n: int = 1
    ) -> list[list[Completion]]:
        seed = sampling.seed or 0
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self._complete(p, sampling, n, seed), prompts))

    def _complete(
        self, prompt: Prompt, sampling: SamplingConfig, n: int, seed: int
    ) -> list[Completion]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        seed = derived_seed(seed, prompt_key(prompt))
        out = self._ask_all(list(messages), sampling, n, seed) if self.multi is not False else []
        while len(out) < n:  # one response per request, each with its own seed
            out += self._ask(list(messages), sampling, 1, (seed + len(out)) % SEED_RANGE)[:1]
        return out[:n]

    def _ask_all(
        self, messages: list, sampling: SamplingConfig, n: int, seed: int
    ) -> list[Completion]:
        """The n responses in one request; fewer (remembered for the next prompts) when the
        server answers fewer choices or refuses n > 1."""
        try:
            out = self._ask(messages, sampling, n, seed)
        except RequestRefused as exc:
            if self.multi or not re.search(r"\bn\b", exc.reason):
                raise
            out = []
        if len(out) < n and self.multi is not False:
            log.info("%s gives one response per request: asking each one apart", self.label)
        self.multi = len(out) >= n
        return out

    def _ask(self, messages: list, sampling: SamplingConfig, n: int, seed: int) -> list[Completion]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": n,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
        }
        if sampling.do_sample:
            body.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.top_k > 0:
                body["top_k"] = sampling.top_k  # vLLM and SGLang extension
        else:  # greedy (held-out evaluation)
            body.update(temperature=0.0, top_p=1.0)
        reply = self.client.chat(body)
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices:
            raise AlignkitError(f"{self.client.base_url}: a reply without choices: {reply!r:.200}")
        return [_completion(c, self.client.base_url) for c in choices]

    # ---------------------------------------------------------------- weights

    def sync(self, model: nn.Module) -> None:
        """Load `model`'s LoRA adapter into the server (with a sync URL), else warn once
        that the server samples with its own fixed weights."""
        if not self.sync_url:
            if not self.warned:
                log.warning("--generator %s: %s", self.client.base_url, OFF_POLICY)
                self.warned = True
            return
        if not is_peft(model):
            raise AlignkitError(
                "--generator-sync-url loads a LoRA adapter into the server: train with --lora"
            )
        name = f"{self.run_name}-{self.syncs + 1:04d}"
        previous = self.model if self.syncs else None
        if self.main:
            self._load(model, name, previous)
        self.barrier()  # the other processes sample from the new adapter only once it is in
        self.model, self.syncs = name, self.syncs + 1
        self.label = f"{self.model} @ {self.client.base_url}"

    def _load(self, model: nn.Module, name: str, previous: str | None) -> None:
        assert self.sync_url is not None and self.sync_dir is not None
        path = (self.sync_dir / name).resolve()
        model.save_pretrained(str(path))  # a PeftModel saves its adapter only
        body = {"lora_name": name, "lora_path": str(path)}
        try:
            reply = self.client.post_text(self.sync_url, body)
        except (EndpointUnavailable, RequestRefused) as exc:
            raise AlignkitError(
                f"--generator-sync-url could not load the adapter {path}: {exc}. vLLM serves "
                "/v1/load_lora_adapter when started with --enable-lora (and --max-lora-rank "
                ">= --lora-r) and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; the server must read "
                "this path and serve the policy's base model"
            ) from None
        log.info("the server loaded the policy's adapter as %s: %s", name, reply.strip()[:200])
        if previous and self.sync_url.endswith("/load_lora_adapter"):
            self._unload(previous)

    def _unload(self, name: str) -> None:
        """Unload an older adapter (best effort: a failure leaves it loaded, with a warning)."""
        assert self.sync_url is not None and self.sync_dir is not None
        url = self.sync_url.removesuffix("/load_lora_adapter") + "/unload_lora_adapter"
        try:
            self.client.post_text(url, {"lora_name": name})
        except (EndpointUnavailable, RequestRefused) as exc:
            log.warning("could not unload the older adapter %s: %s", name, exc)
            return
        shutil.rmtree(self.sync_dir / name, ignore_errors=True)


def _completion(choice: Any, url: str) -> Completion:
    """One choice as a `Completion`; finished = the model stopped by itself."""
    try:
        text = choice["message"]["content"]
    except (KeyError, TypeError):
        raise AlignkitError(f"{url}: a choice without message.content: {choice!r:.200}") from None
    return Completion((text or "").strip(), choice.get("finish_reason") == "stop")
