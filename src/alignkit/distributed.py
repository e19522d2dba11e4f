"""Processes under a launcher (`torchrun`, `accelerate launch`): the process state, and work
shared out over the processes and gathered back in order.

- `distributed_state()`: accelerate's `PartialState` (the launcher's ranks, on CPU too).
- `shard_map(items, work, state)`: `[work(item) for item in items]`, each process doing every
  `world`-th item and every process getting the whole list back, in item order. The results
  are those of one process whatever the number of processes, as long as `work(item)`
  depends on the item alone (a generation batch carries its own seed, a scoring batch its
  own examples).

`data/batching.rank_slice` is the other way to share: a rank's contiguous part of one
training batch, whose gradients are averaged rather than gathered.

A `state` is anything with `process_index` and `num_processes` (accelerate's `PartialState`
or `Accelerator`, or `Processes(rank, world)` for a caller that knows them, or a test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ProcessState(Protocol):
    @property
    def process_index(self) -> int: ...

    @property
    def num_processes(self) -> int: ...


@dataclass(frozen=True)
class Processes:
    """`process_index` of `num_processes`, named as accelerate names them."""

    process_index: int = 0
    num_processes: int = 1


def distributed_state() -> Any:
    """accelerate's PartialState; on CPU it must be told so to pick up torchrun's ranks."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def gather_object(values: list) -> list:
    """accelerate's `gather_object`: every process's list, concatenated in rank order."""
    from accelerate.utils import gather_object as gather

    return gather(values)


def shard_map(
    items: Sequence[T],
    work: Callable[[T], R],
    state: ProcessState | None = None,
    *,
    desc: str | None = None,
    lockstep: bool = False,
    gather: Callable[[list], list] | None = None,
) -> list[R]:
    """`[work(item) for item in items]` shared over processes, on every process.

    Process `r` of `world` runs `work` on items r, r + world, r + 2 * world, ...; the results
    are gathered (one `gather` call per process, whatever its share, none included; no call
    on one process) and put back in item order. `state`: the processes (None: one process).
    `desc`: a progress bar on process 0. `lockstep`: every process calls `work` equally often
    (ceil(n / world) times) — a sharded model (FSDP, ZeRO-3) gathers its parameters
    collectively in each forward call — by running the first item again where its share is
    short; those extra results are dropped. `gather`: accelerate's `gather_object` unless
    given (a test's fake processes).
    """
    rank = state.process_index if state is not None else 0
    world = state.num_processes if state is not None else 1
    mine: Iterable[int] = range(rank, len(items), world)
    if desc is not None:
        from tqdm.auto import tqdm

        mine = tqdm(mine, desc=desc, disable=rank != 0, leave=False)
    done = [(i, work(items[i])) for i in mine]
    if lockstep and items:
        for _ in range(-(-len(items) // world) - len(done)):
            work(items[0])
    if world > 1:
        done = [pair for part in (gather or gather_object)([done]) for pair in part]
    out: list[Any] = [None] * len(items)
    for i, value in done:
        out[i] = value
    return out
