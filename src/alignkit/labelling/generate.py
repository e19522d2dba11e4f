"""`alignkit generate`: a policy writes K answers to every prompt of a file into a pool.

The pool (jsonl, one line per prompt: prompt, responses, finished flags, prompt_id, model)
is what `alignkit label select` reads. Three backends sit behind the online loop's
`Generator` interface: batched Hugging Face `generate` (`HFGenerator`), vLLM
(`VLLMGenerator`) and any OpenAI-compatible chat endpoint (`EndpointGenerator` of
`alignkit.inference.remote`, the class behind the online loops' `--endpoint URL`:
`alignkit serve`, vLLM or SGLang servers).

A run is resumable: each finished batch of prompts is appended and fsynced at once, so a
killed run loses at most the batch in flight; the next run skips the prompts already in the
pool (dropping a last line cut by the kill). `OUTPUT.meta.json` records the model and
sampling settings, and a run with other settings is refused instead of mixing two
distributions in one pool.

Under a launcher (`accelerate launch`, `torchrun`; hf backend) the processes share the work
by whole batches: in each round process r generates the r-th of the next N batches, the
batches are gathered, and the main process appends them in prompt order. A batch's seed is
derived from --seed and its prompt ids, and its prompts are the same for any number of
processes, so N processes write the pool of one byte for byte (and a killed run loses at
most the round in flight). The main process alone reads and writes the pool files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.prompts import prompt_json
from alignkit.data.queries import Query, load_queries, read_queries
from alignkit.data.records import Prompt
from alignkit.distributed import distributed_state
from alignkit.errors import AlignkitError
from alignkit.inference.generation import Completion
from alignkit.inference.generators import Generator
from alignkit.inference.remote import EndpointGenerator, derived_seed
from alignkit.io import atomic_write_text, jsonl_line, load_json
from alignkit.labelling.config import GenerateConfig
from alignkit.labelling.pairs import prompt_id, read_pool

log = logging.getLogger(__name__)

META_SUFFIX = ".meta.json"


# ------------------------------------------------------------------ endpoint


def endpoint_generator(config: GenerateConfig) -> EndpointGenerator:
    """The online loops' `EndpointGenerator` on --endpoint (key: --api-key or $OPENAI_API_KEY)."""
    client = config.client(model_flag="--model")
    return EndpointGenerator(client, config.model or None, concurrency=config.concurrency)


# ------------------------------------------------------------------ local backends


def local_generator(config: GenerateConfig, tokenizer: Any, state: Any = None) -> Generator:
    """`HFGenerator` or `VLLMGenerator` (`--backend`, auto: vLLM when usable: one process);
    the HF model goes on this process's device (`state`: accelerate's process state)."""
    import torch

    from alignkit.inference.generators import (
        HFGenerator,
        VLLMGenerator,
        choose_backend,
        engine_kwargs,
        vllm_available,
    )
    from alignkit.models import generation_dtype, load_inference_model, resolve_model
    from alignkit.runs import resolve_model_spec

    state = state or distributed_state()
    cuda = torch.cuda.is_available()
    try:
        backend = choose_backend(config.backend, state.num_processes, cuda, vllm_available())
    except AlignkitError as exc:
        raise AlignkitError(str(exc).replace("--generator", "--backend")) from None
    log.info("generation backend: %s", backend)
    if backend == "vllm":
        spec = resolve_model_spec(config.model)
        engine = engine_kwargs(
            resolve_model(spec.root_weights), config.vllm_gpu_memory_utilization, config.seed, 0
        )
        limit = config.max_prompt_tokens
        engine["max_model_len"] = limit + config.max_new_tokens if limit else None
        engine["trust_remote_code"] = config.trust_remote_code
        generator = VLLMGenerator(tokenizer, engine)
        if spec.adapter:  # the engine holds the base model: push the merged weights
            generator.sync(load_inference_model(config.model, config.trust_remote_code).model)
        return generator
    model = load_inference_model(config.model, config.trust_remote_code).model
    if cuda:
        model = model.to(state.device)
    device = next(model.parameters()).device
    return HFGenerator(model, tokenizer, generation_dtype(config.precision, device), progress=False)


# ------------------------------------------------------------------ the pool file


def meta_path(output: str | Path) -> Path:
    return Path(str(output) + META_SUFFIX)


def check_settings(output: str, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume a pool made with other settings; then record this run's settings."""
    pool, meta = Path(output), meta_path(output)
    if overwrite:
        pool.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
    fix = "give a new --output or --overwrite to start over"
    started = pool.exists() and pool.stat().st_size > 0
    if started and meta.exists():
        try:
            stored = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AlignkitError(f"cannot read {meta}: {exc}; {fix}") from None
        changed = [k for k in settings if stored.get(k) != settings[k]]
        if changed:
            diff = "; ".join(f"{k}: {stored.get(k)!r} then, {settings[k]!r} now" for k in changed)
            raise AlignkitError(
                f"{output} was generated with other settings ({diff}); a pool holds samples "
                f"of one setting: rerun with the same options to resume, or {fix}"
            )
    elif started:
        raise AlignkitError(
            f"{output} exists without {meta.name} (not written by this verb); {fix}"
        )
    atomic_write_text(meta, json.dumps(settings, indent=2) + "\n")


def drop_cut_line(output: str) -> None:
    """End the pool with a whole line: a last line cut by a kill is dropped (a warning)."""
    path = Path(output)
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    if not text or text.endswith("\n"):
        return
    head, _, last = text.rpartition("\n")
    try:
        load_json(last)
    except ValueError:
        number = head.count("\n") + 1 + bool(head)
        log.warning(
            "%s:%d: dropped a line cut short (a killed run); it is generated again", output, number
        )
        atomic_write_text(path, head + "\n" if head else "")
        return
    atomic_write_text(path, text + "\n")  # complete, only its newline was lost


def prepare_pool(config: GenerateConfig, label: str, state: Any) -> set[str]:
    """On the main process: check and record the settings (`check_settings`), end the pool
    with a whole line and read the prompt ids already done; every process gets those ids
    (or the main process's error, raised by all)."""
    found: list[Any] = [None]
    if state.is_main_process:
        try:
            check_settings(config.output, config.settings(label), config.overwrite)
            drop_cut_line(config.output)
            found = [("done", sorted(done_ids(config.output, config.num_responses)))]
        except AlignkitError as exc:
            found = [("error", str(exc))]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(found)
    kind, value = found[0]
    if kind == "error":
        raise AlignkitError(value)
    return set(value)


def done_ids(output: str, k: int) -> set[str]:
    """The prompt ids already in the pool with their K responses."""
    path = Path(output)
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return set()
    done = set()
    for entry in read_pool(path):
        if len(entry.responses) != k:
            raise AlignkitError(
                f"{entry.source}: {len(entry.responses)} responses where this pool has {k}; "
                "remove the line (it is generated again) or give a new --output"
            )
        done.add(prompt_id(entry.prompt))
    return done


def append_rows(output: str, rows: Sequence[dict[str, Any]]) -> None:
    """Append pool lines durably (flush + fsync: a kill after this loses none of them)."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "a", encoding="utf-8") as handle:
        handle.write("".join(jsonl_line(row) for row in rows))
        handle.flush()
        os.fsync(handle.fileno())


def pool_row(prompt: Prompt, pid: str, group: Sequence[Completion], model: str) -> dict:
    return {
        "prompt": prompt_json(prompt),
        "responses": [c.text for c in group],
        "finished": [c.finished for c in group],
        "prompt_id": pid,
        "model": model,
    }


# ------------------------------------------------------------------ the run


@dataclass
class GenerateSummary:
    """What a run did (`describe()` is the closing line of the verb)."""

    output: str
    prompts: int  # distinct prompts of the prompts file (after the length filter)
    resumed: int  # of them, already in the pool
    generated: int = 0
    responses: int = 0
    unfinished: int = 0
    duplicates: int = 0
    dropped_long: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        lines = [
            f"{self.resumed + self.generated}/{self.prompts} prompts done "
            f"({self.generated} now, {self.resumed} already in the pool): {self.output}",
            f"{self.responses} responses, {self.unfinished} unfinished (hit --max-new-tokens), "
            f"{self.seconds:.1f} s",
        ]
        if self.duplicates:
            lines.append(f"{self.duplicates} repeated prompts of the prompts file kept once")
        if self.dropped_long:
            lines.append(f"{self.dropped_long} prompts longer than --max-prompt-tokens dropped")
        return "\n".join(lines)


def load_prompts(config: GenerateConfig, tokenizer: Any) -> tuple[list[Query], int]:
    """The queries of --prompts (validated, length-filtered) and how many were too long."""
    if tokenizer is None:  # an endpoint: chat messages, no length filter
        return read_queries(config.prompts, chat=True), 0
    found = load_queries(config.prompts, tokenizer, config.chat, config.max_prompt_tokens)
    return found.queries, found.dropped


def generate_pool(config: GenerateConfig, generator: Generator | None = None) -> GenerateSummary:
    """Write (or complete) the pool of `config`; `generator` replaces the backend (tests).

    Every process returns the same summary; only the main process writes files."""
    start = time.monotonic()
    config.validate()
    endpoint = endpoint_generator(config) if config.endpoint else None
    state = distributed_state()
    if endpoint is not None and state.num_processes > 1:
        raise AlignkitError(
            "--endpoint: run `alignkit generate` as one process (the server batches the "
            "requests); drop the launcher"
        )
    label = endpoint.label if endpoint else config.model
    done = prepare_pool(config, label, state)
    tokenizer = None
    if endpoint is None:
        from alignkit.models import load_tokenizer

        tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    queries, dropped = load_prompts(config, tokenizer)
    unique: dict[str, Query] = {}
    for q in queries:  # a repeated prompt is generated once
        unique.setdefault(prompt_id(prompt_json(q.prompt)), q)
    order = list(unique.items())
    pending = [(pid, q) for pid, q in order if pid not in done]
    summary = GenerateSummary(
        config.output,
        len(order),
        len(order) - len(pending),
        duplicates=len(queries) - len(order),
        dropped_long=dropped,
    )
    if pending and generator is None:
        generator = endpoint or local_generator(config, tokenizer, state)
    size = max(config.batch_size, config.concurrency) if endpoint else config.batch_size
    batches = [pending[i : i + size] for i in range(0, len(pending), size)]
    _generate_batches(config, generator, batches, label, state, summary)
    summary.seconds = time.monotonic() - start
    return summary


def _generate_batches(
    config: GenerateConfig,
    generator: Generator | None,
    batches: list[list[tuple[str, Query]]],
    label: str,
    state: Any,
    summary: GenerateSummary,
) -> None:
    """Generate `batches` in rounds of one batch per process; after each round the main
    process appends the round's rows in batch order (fsynced) and `summary` counts them."""
    from tqdm.auto import tqdm

    world, rank = state.num_processes, state.process_index
    bar = tqdm(
        total=summary.prompts,
        initial=summary.resumed,
        unit="prompt",
        desc="generate",
        disable=not state.is_main_process,
    )
    with bar:
        for first in range(0, len(batches), world):
            round_ = batches[first : first + world]
            groups: list[list[Completion]] = []
            if rank < len(round_):
                chunk = round_[rank]
                seed = derived_seed(config.seed, *(pid for pid, _ in chunk))
                assert generator is not None
                groups = generator.generate(
                    [q.prompt for _, q in chunk], config.sampling(seed), config.num_responses
                )
            if world > 1:
                from accelerate.utils import gather_object

                gathered = gather_object([groups])  # one entry per process, in process order
            else:
                gathered = [groups]
            rows = [
                pool_row(q.prompt, pid, g, label)
                for chunk, chunk_groups in zip(round_, gathered, strict=False)
                for (pid, q), g in zip(chunk, chunk_groups, strict=True)
            ]
            if state.is_main_process:
                append_rows(config.output, rows)
            summary.generated += len(rows)
            summary.responses += sum(len(row["responses"]) for row in rows)
            summary.unfinished += sum(not f for row in rows for f in row["finished"])
            bar.update(len(rows))
