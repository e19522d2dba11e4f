"""Length-grouped, seeded, stateless batch order.

The order of epoch `e` is a pure function of (seed, e), so a resumed run (or another rank)
recomputes exactly the same batches without saving sampler state.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def epoch_batches(
    lengths: Sequence[int], global_batch: int, seed: int, epoch: int, group: int = 32
) -> list[list[int]]:
    """Global batches of example indices for one epoch.

    Indices are shuffled, then sorted by length inside chunks of `group` batches (so a batch
    holds examples of similar length and wastes little padding), then the batch order is
    shuffled. The last batch is topped up by wrapping around so every batch is full.
    """
    if not lengths:
        return []
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = global_batch * group
    grouped: list[int] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        grouped.extend(sorted(part, key=lambda i: lengths[i], reverse=True))
    batches = [grouped[i : i + global_batch] for i in range(0, len(grouped), global_batch)]
    if len(batches[-1]) < global_batch:
        fill = order * (global_batch // len(order) + 1)
        batches[-1] = batches[-1] + fill[: global_batch - len(batches[-1])]
    rng.shuffle(batches)
    return batches


def rank_slice(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's contiguous share of a global batch (sizes are equal by construction)."""
    per = len(batch) // world
    return list(batch[rank * per : (rank + 1) * per])


def sorted_chunks(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for inference: longest first, so memory peaks early and padding is minimal."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
