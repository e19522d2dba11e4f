"""What a run keeps on disk besides its metrics: resumable checkpoints, the final model, and
the data cache (tokenized data + reference log-probs, reused when nothing they depend on
changed).

The data cache holds plain lists and tensors under a format version and is loaded with
`torch.load(weights_only=True)`: moving or renaming a class never breaks an old run
directory, and a cache of another version, or one that cannot be read, is recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from alignkit.data.tokenize import Encoded
from alignkit.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = "alignkit-data-cache-v3"
STATE_FILE = "alignkit_state.json"  # written last into a checkpoint: it is complete


@dataclass
class Prepared:
    """A tokenized dataset with its precomputed reference log-probs ((n, K) or None).

    `encoded[i].index == i` (the row of `ref`); `records[i]` is the position of its record in
    the list that was encoded (they differ when `--truncation drop` dropped records).
    """

    encoded: list[Encoded]
    ref: torch.Tensor | None
    k: int
    summary: str = ""
    records: list[int] = field(default_factory=list)


# ------------------------------------------------------------------ data cache


def save_prepared(path: Path, key: dict[str, Any], prepared: Prepared) -> None:
    """Write `prepared` (plain lists + one tensor) with its `key`, atomically."""
    payload = {
        "format": CACHE_FORMAT,
        "key": json.dumps(key, sort_keys=True),
        "encoded": [asdict(e) for e in prepared.encoded],
        "ref": prepared.ref,
        "k": prepared.k,
        "summary": prepared.summary,
        "records": prepared.records,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_prepared(path: Path, key: dict[str, Any]) -> Prepared | None:
    """The cached `Prepared` when `path` holds one of this format for `key`, else None (a
    miss: absent, unreadable, another format or version, other data or settings)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        if saved.get("format") != CACHE_FORMAT or saved.get("key") != json.dumps(
            key, sort_keys=True
        ):
            return None
        encoded = [Encoded(**row) for row in saved["encoded"]]
        records = [int(i) for i in saved["records"]]
        return Prepared(encoded, saved["ref"], int(saved["k"]), str(saved["summary"]), records)
    except Exception as exc:  # any unreadable cache is a miss, never a failed run
        log.info("ignoring the data cache %s (%s): recomputing", path, exc)
        return None


# ------------------------------------------------------------------ checkpoints


def checkpoints(output: Path) -> list[Path]:
    """Complete checkpoints of a run directory, oldest first."""
    found = [p for p in (output / "checkpoints").glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(acc: Accelerator, output: Path, step: int, keep: int) -> None:
    """accelerate state (weights, optimizer, scheduler, RNG, registered objects) written to a
    temporary folder and renamed; only the newest `keep` checkpoints are kept."""
    root = output / "checkpoints"
    final, tmp = root / f"step-{step}", root / f".tmp-step-{step}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        atomic_write_text(tmp / STATE_FILE, json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)  # a rerun without --resume: same step again
        os.replace(tmp, final)
        for old in checkpoints(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def resume_latest(acc: Accelerator, output: Path) -> int:
    """Load the newest checkpoint into `acc`'s prepared objects; its step (0: none)."""
    found = checkpoints(output)
    if not found:
        log.info("--resume: no checkpoint in %s, starting from scratch", output)
        return 0
    latest = found[-1]
    acc.load_state(str(latest))
    step = json.loads((latest / STATE_FILE).read_text())["step"]
    log.info("resumed from %s (step %d)", latest, step)
    return step


def full_state_dict(
    acc: Accelerator, prepared: torch.nn.Module, prefix: str = ""
) -> dict[str, torch.Tensor] | None:
    """The whole (unsharded) state dict of a `prepare`d module on the main process, keys
    relative to its submodule `prefix` (e.g. "model." of a `SequenceScorer`); None elsewhere.

    Under FSDP2 and DeepSpeed ZeRO-3 every rank holds a shard only: the parameters are
    gathered (`accelerator.get_state_dict`, a collective: every rank calls it). Without
    sharding this is None (the model's own state dict is saved as it is).
    """
    sharded = acc.distributed_type == DistributedType.FSDP or (
        acc.distributed_type == DistributedType.DEEPSPEED
        and acc.deepspeed_config["zero_optimization"]["stage"] == 3
    )
    if not sharded:
        return None
    state = acc.get_state_dict(prepared)
    if not acc.is_main_process:
        return None
    # a tied parameter (lm_head = embed_tokens) comes back as two tensors; `save_pretrained`
    # drops tied copies only when they share storage, so keep its first name only
    module = acc.unwrap_model(prepared)
    first = {name for name, _ in module.named_parameters()}
    aliases = {n for n, _ in module.named_parameters(remove_duplicate=False)} - first
    return {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k not in aliases
    }


def save_model_dir(
    acc: Accelerator,
    model: torch.nn.Module,
    tokenizer: Any,
    output: Path,
    extra: Callable[[Path], None],
    summary: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """`save_pretrained` model + tokenizer (+ `extra(folder)`) into OUTPUT/model, replacing
    it as a whole, then OUTPUT/summary.json. `state_dict`: the gathered weights of a sharded
    model (`full_state_dict`), saved instead of the model's own."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        tmp = output / ".tmp-model"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        extra(tmp)
        final = output / "model"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(output / "summary.json", json.dumps(summary, indent=2))
    acc.wait_for_everyone()
