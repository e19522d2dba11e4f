"""Where a study's cells run: one after another in the study's process, in N cell processes on
this machine (`workers: N`), or on a Ray cluster (`executor: ray`).

Every executor runs a cell the same way: `runner(context, cell)` (`study.run.run_cell`, or
`study.active.run_active_cell`) in a `CellProcess`, which opens the study's context once
(`StudyContext.open`: the pool, and the shared work the study's process did before any cell
started, read from OUTPUT/cache/shared.pt) and keeps it, the model included, for every cell
it runs. A cell writes its own directory and `cell.json`; the study's process collects the
rows. So a killed study resumes from its finished cells whichever executor ran them.

- local, N > 1: a `ProcessPoolExecutor` of N spawned processes, each pinned to one device: a
  GPU each when there are at least N (round robin when fewer), on the CPU
  `torch.get_num_threads() // N` threads each.
- ray: N Ray actors (default: as many as the cluster's resources hold at the start, at most
  one per cell), each asking for `ray_gpus_per_cell` GPUs (default 1 on a cluster with GPUs,
  else 0) and `ray_cpus_per_cell` CPUs; a cell is a call of an actor's `run`, a Ray task
  on a process that keeps its model. (Plain Ray tasks that ask for a GPU get a new process
  each: Ray's `max_calls=1`, a model load per cell.) Every node must read and write the
  study's output directory (shared storage: NFS, a mounted bucket, a PVC).

This module imports nothing of `study.run`: the context's class and the runner are passed
in (and pickled by reference into the cell processes).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from alignkit.errors import AlignkitError

Finished = tuple[Any, dict[str, Any], float]  # (cell, its row, seconds it ran)


@dataclass(frozen=True)
class Execution:
    """How a study runs its cells (`StudyConfig.execution()`)."""

    executor: str = "local"  # local | ray
    workers: int = 0  # cell processes; 0: local 1, ray as many as fit
    ray_address: str = ""  # "": $RAY_ADDRESS, else a Ray started on this machine
    ray_gpus_per_cell: float | None = None  # None: 1 on a cluster with GPUs, else 0
    ray_cpus_per_cell: float = 1.0

    def in_processes(self, cells: int) -> bool:
        """Whether the cells run in other processes (which read the shared work from disk)."""
        return self.executor == "ray" or min(self.workers, cells) > 1


class CellProcess:
    """Runs cells in one process: the study's context opened on the first cell (the model
    loaded once) and kept for the next ones."""

    def __init__(self, factory: Any, config: Any, runner: Callable, threads: int = 0) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.factory, self.config, self.runner = factory, config, runner
        self.context: Any = None

    @classmethod
    def around(cls, context: Any, runner: Callable) -> CellProcess:
        """The study's own process, with the context it already has."""
        process = cls(type(context), context.config, runner)
        process.context = context
        return process

    def run(self, cell: Any) -> Finished:
        if self.context is None:
            self.context = self.factory.open(self.config)
        start = time.perf_counter()
        row = self.runner(self.context, cell)
        return cell, row, time.perf_counter() - start


def run_cells(
    context: Any, cells: list, runner: Callable, execution: Execution
) -> Iterator[Finished]:
    """Run `cells`, yielding each as it finishes (in order only when serial)."""
    if not cells:
        return
    if execution.executor == "ray":
        yield from _on_ray(context, cells, runner, execution)
    elif min(execution.workers, len(cells)) > 1:
        yield from _in_processes(context, cells, runner, min(execution.workers, len(cells)))
    else:
        process = CellProcess.around(context, runner)
        for cell in cells:
            yield process.run(cell)


# ---------------------------------------------------------------- local processes
_PROCESS: CellProcess | None = None  # a worker's own


def device_slots(workers: int, gpus: list[str], threads: int) -> list[tuple[str | None, int]]:
    """(CUDA_VISIBLE_DEVICES, CPU threads) of each worker: one GPU each, round robin over
    `gpus` when there are fewer (None: no GPU); without GPUs, the threads split evenly."""
    if gpus:
        return [(gpus[i % len(gpus)], 0) for i in range(workers)]
    return [(None, max(1, threads // workers))] * workers


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [g.strip() for g in given.split(",") if g.strip()] if given else []
    return names[:count] if names else [str(i) for i in range(count)]


def _start_worker(slots, factory: Any, config: Any, runner: Callable) -> None:
    global _PROCESS
    gpu, threads = slots.get()
    if gpu is not None:  # before CUDA starts in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    _PROCESS = CellProcess(factory, config, runner, threads)


def _run_in_worker(cell: Any) -> Finished:
    assert _PROCESS is not None
    return _PROCESS.run(cell)


def _in_processes(context: Any, cells: list, runner: Callable, workers: int) -> Iterator[Finished]:
    import torch

    spawn = multiprocessing.get_context("spawn")
    slots = spawn.Queue()
    for slot in device_slots(workers, visible_gpus(), torch.get_num_threads()):
        slots.put(slot)
    context.release()  # the workers load their own
    pool = ProcessPoolExecutor(
        workers,
        mp_context=spawn,
        initializer=_start_worker,
        initargs=(slots, type(context), context.config, runner),
    )
    try:
        pending = {pool.submit(_run_in_worker, cell) for cell in cells}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()  # a cell's error stops the study (finished cells stay)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- ray
def _import_ray():
    try:
        import ray
    except ImportError:
        raise AlignkitError(
            "--executor ray needs Ray: pip install 'alignkit[ray]' (or pip install ray) on "
            "this machine and on every node of the cluster"
        ) from None
    return ray


def ray_actors(resources: dict[str, float], gpus: float, cpus: float, cells: int) -> int:
    """How many cell actors the cluster's `resources` hold (at least 1, at most `cells`)."""
    fit = resources.get("GPU", 0.0) // gpus if gpus else resources.get("CPU", 1.0) // cpus
    return int(max(1, min(cells, fit)))


def _on_ray(context: Any, cells: list, runner: Callable, execution: Execution):
    ray = _import_ray()
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:  # address None: $RAY_ADDRESS, else a Ray started on this machine
        ray.init(address=execution.ray_address or None)
    try:
        resources = ray.cluster_resources()
        gpus = execution.ray_gpus_per_cell
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) else 0.0
        cpus = execution.ray_cpus_per_cell
        count = execution.workers or ray_actors(resources, gpus, cpus, len(cells))
        actor = ray.remote(CellProcess).options(num_cpus=cpus, num_gpus=gpus)
        threads = 0 if gpus else max(1, int(cpus))
        factory = type(context)
        actors = [actor.remote(factory, context.config, runner, threads) for _ in range(count)]
        pool = ActorPool(actors)
        for cell in cells:
            pool.submit(lambda a, c: a.run.remote(c), cell)
        while pool.has_next():
            yield pool.get_next_unordered()
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()
