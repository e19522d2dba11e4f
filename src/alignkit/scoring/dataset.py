"""Inference-time scoring of an encoded dataset, sharded over processes.

Used to precompute the reference log-probs once before training (the reference never changes,
so it is never run again — and with full fine-tuning no frozen copy is kept in memory), and by
evaluation. Each process scores every `world`-th length-sorted batch (`shard_map`); results
are gathered back into dataset order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from alignkit.data.batching import sorted_chunks
from alignkit.data.tokenize import Encoded
from alignkit.distributed import Processes, shard_map
from alignkit.objectives.base import SeqLogps
from alignkit.scoring.forward import SequenceScorer
from alignkit.scoring.packing import PackedBatch, collate


def score_dataset(
    scorer: SequenceScorer,
    encoded: Sequence[Encoded],
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    autocast: torch.dtype | None,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list], list] | None = None,
    desc: str = "scoring",
    k: int | None = None,
) -> Tensor:
    """(n, K) summed response log-probs of every example, in the order of `encoded`."""
    k = k or max(len(e.responses) for e in encoded)
    chunks = sorted_chunks([e.length for e in encoded], batch_size)

    def score_chunk(idx: list[int]) -> Tensor:
        batch = collate([encoded[i] for i in idx], pad_id, k).to(device)
        return scorer(batch, autocast=autocast).sum.float().cpu()

    # restore the wrapped model's own mode afterwards (a fresh wrapper is in train mode)
    was_training = getattr(scorer, "model", scorer).training
    scorer.eval()
    with torch.no_grad():
        sums = shard_map(chunks, score_chunk, Processes(rank, world), desc=desc, gather=gather)
    scorer.train(was_training)
    table = torch.zeros(len(encoded), k)
    for idx, part in zip(chunks, sums, strict=True):
        table[torch.tensor(idx)] = part
    return table


def reference_for(batch: PackedBatch, table: Tensor) -> SeqLogps:
    """The precomputed reference log-probs of the examples in `batch`."""
    sums = table[batch.index.cpu()][:, : batch.shape[1]].to(batch.counts.device)
    return SeqLogps(sum=sums, count=batch.counts)
