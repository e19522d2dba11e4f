"""What a run keeps on disk besides its metrics: resumable checkpoints, the final model, and
the data cache (tokenized data + reference log-probs, reused when nothing they depend on
changed).

The data cache holds plain lists and tensors under a format version and is loaded with
`torch.load(weights_only=True)`: moving or renaming a class never breaks an old run
directory, and a cache of another version, or one that cannot be read, is recomputed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast
from accelerate.utils import load as accelerate_load
from accelerate.utils.constants import RNG_STATE_NAME

from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = "alignkit-data-cache-v3"
STATE_FILE = "alignkit_state.json"  # written last into a checkpoint: it is complete
# the state of the objects accelerate does not hold (scheduler, loop state), written and read
# by alignkit itself with `torch.load(weights_only=True)`: never accelerate's
# `register_for_checkpointing`, whose `custom_checkpoint_*.pkl` is unpickled with
# weights_only=False (a planted file would run code on --resume)
EXTRA_FILE = "alignkit_extra.pt"
# what accelerate's random_states_<rank>.pkl must hold (Python, numpy and torch generators)
_RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


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


class SaveSchedule:
    """When `train` saves a periodic checkpoint: after an optimizer step that ends `minutes`
    or more after the run (re)started or the last checkpoint, and every `steps` steps (0:
    off); never after the last step, when the final model is saved. The main process's clock
    decides (broadcast), so every rank saves at the same step."""

    def __init__(self, steps: int, minutes: float) -> None:
        self.steps, self.seconds = steps, minutes * 60
        self.last = monotonic()

    def due(self, acc: Accelerator, done: int, total: int) -> bool:
        """Whether to save after step `done` of `total` (a collective when timed and launched
        with several processes: every rank calls it after every step)."""
        if done >= total:
            return False
        timed = bool(self.seconds) and monotonic() - self.last >= self.seconds
        if self.seconds and acc.num_processes > 1:
            flag = torch.tensor([int(timed)], device=acc.device)
            timed = bool(broadcast(flag, from_process=0).item())
        return timed or (bool(self.steps) and done % self.steps == 0)

    def saved(self) -> None:
        """A checkpoint was written: the next timed one is `minutes` from now."""
        self.last = monotonic()


def checkpoints(output: Path) -> list[Path]:
    """Complete checkpoints of a run directory, oldest first."""
    found = [p for p in (output / "checkpoints").glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(
    acc: Accelerator,
    output: Path,
    step: int,
    keep: int,
    extra: dict[str, Any] | None = None,
    settings: str = "",
) -> None:
    """accelerate state (weights, optimizer, RNG) and the `state_dict()` of each `extra`
    object (plain values and tensors) written to a temporary folder and renamed, with the
    run's `settings` digest; only the newest `keep` checkpoints are kept."""
    root = output / "checkpoints"
    final, tmp = root / f"step-{step}", root / f".tmp-step-{step}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        states = {name: obj.state_dict() for name, obj in (extra or {}).items()}
        atomic_write(tmp / EXTRA_FILE, lambda path: torch.save(states, path))
        atomic_write_text(tmp / STATE_FILE, json.dumps({"step": step, "settings": settings}))
        shutil.rmtree(final, ignore_errors=True)  # a rerun without --resume: same step again
        os.replace(tmp, final)
        for old in checkpoints(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def checkpoint_settings(path: Path) -> str | None:
    """The settings digest stored with a checkpoint (None: unreadable or none stored)."""
    try:
        settings = json.loads((path / STATE_FILE).read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return None
    return settings if isinstance(settings, str) and settings else None


def _damaged(folder: Path, path: Path, exc: BaseException, earlier: Path | None) -> AlignkitError:
    """The error of a file (`path`) of the checkpoint `folder` that cannot be read back."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    fix = (
        f"delete {folder} to resume from {earlier.name}, "
        if earlier is not None
        else "delete it and "
    )
    return AlignkitError(
        f"--resume: cannot read {path} ({what}); the checkpoint is damaged or was not written "
        f"by alignkit: {fix}or start over with --overwrite"
    )


def _check_rng_state(acc: Accelerator, folder: Path, earlier: Path | None) -> None:
    """Refuse a checkpoint whose random-number state cannot be read (accelerate would only
    log "Could not load random states" and go on: the resumed run would silently differ)."""
    path = folder / f"{RNG_STATE_NAME}_{acc.process_index}.pkl"
    try:
        states = accelerate_load(path)  # weights_only=True: plain values and tensors only
        missing = [key for key in _RNG_KEYS if key not in states]
    except Exception as exc:  # missing, truncated, or a pickle of objects (refused, never run)
        raise _damaged(folder, path, exc, earlier) from exc
    if missing:
        raise _damaged(folder, path, KeyError(", ".join(missing)), earlier)


def _load_accelerate_state(acc: Accelerator, folder: Path, earlier: Path | None = None) -> None:
    """`acc.load_state(folder)`, without the `custom_checkpoint_*.pkl` files alignkit never
    writes (accelerate would unpickle them with weights_only=False, or refuse to load): they
    are left out of a temporary folder of links to the rest, and are never read. A file that
    cannot be read (the RNG state included) is an `AlignkitError` naming it; `earlier` is the
    checkpoint before `folder` that the message offers instead."""
    _check_rng_state(acc, folder, earlier)
    planted = sorted(p.name for p in folder.glob("custom_checkpoint_*"))
    with contextlib.ExitStack() as stack:
        source = str(folder)
        if planted:
            log.warning("--resume: ignoring %s in %s (alignkit never writes them)", planted, folder)
            source = stack.enter_context(tempfile.TemporaryDirectory(prefix="alignkit-resume-"))
            for entry in folder.iterdir():
                if entry.name not in planted:
                    (Path(source) / entry.name).symlink_to(entry.resolve())
        try:
            acc.load_state(source)
        except Exception as exc:  # weights or optimizer state missing or damaged
            raise _damaged(folder, folder, exc, earlier) from exc


def resume_latest(
    acc: Accelerator, output: Path, extra: dict[str, Any] | None = None, settings: str = ""
) -> int:
    """Load the newest checkpoint into `acc`'s prepared objects and the `extra` objects; its
    step (0: none). A checkpoint of other `settings` (data, method, model) is refused."""
    found = checkpoints(output)
    if not found:
        log.info("--resume: no checkpoint in %s, starting from scratch", output)
        return 0
    latest = found[-1]
    if settings and checkpoint_settings(latest) != settings:
        raise AlignkitError(
            f"--resume: {latest} was saved by a run of other settings (data, method or "
            "model); resume with the options of that run, or start over with --overwrite"
        )
    _load_accelerate_state(acc, latest, found[-2] if len(found) > 1 else None)
    if extra:
        # plain values and tensors only: weights_only refuses any other pickled object
        try:
            states = torch.load(latest / EXTRA_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:  # e.g. a pickle of objects: refused, never run
            raise AlignkitError(
                f"--resume: cannot read {latest / EXTRA_FILE} as plain values and tensors "
                f"({type(exc).__name__}); was it written by alignkit?"
            ) from exc
        for name, obj in extra.items():
            obj.load_state_dict(states[name])
    step = json.loads((latest / STATE_FILE).read_text())["step"]
    log.info("resumed from %s (step %d)", latest, step)
    return step


# what a run leaves in its directory (--overwrite deletes these; the data cache, keyed by
# what it depends on, is kept)
RUN_ENTRIES = (
    "summary.json",
    "model",
    "checkpoints",
    "metrics.jsonl",
    "config.json",
    "rejected.jsonl",
    "generations",
    "eval",
    "sft",
)


def claim_output(output: Path, settings: str, resume: bool, overwrite: bool, main: bool) -> None:
    """Refuse an --output that would lose finished work: a file, a finished run (summary.json
    or model/), or checkpoints of other settings; unless --resume (which checks the settings
    of the checkpoint it reads) or --overwrite (which deletes the old run's `RUN_ENTRIES`)."""
    if output.exists() and not output.is_dir():
        raise AlignkitError(f"--output {output} is a file: give a folder for the run")
    if not output.is_dir() or resume:
        return
    finished = [name for name in ("summary.json", "model") if (output / name).exists()]
    other = [p.name for p in checkpoints(output) if checkpoint_settings(p) != settings]
    if not finished and not other:
        return
    if overwrite:
        if main:
            log.warning("--overwrite: deleting the earlier run in %s", output)
            for name in RUN_ENTRIES:
                path = output / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        return
    what = (
        f"a finished run ({', '.join(finished)})"
        if finished
        else f"checkpoints of a run of other settings ({', '.join(other)})"
    )
    raise AlignkitError(
        f"--output {output} holds {what}: give a new --output, --resume to continue it, or "
        "--overwrite to delete it and start over"
    )


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
