"""Packing: each example becomes ONE row `prompt | response_1 | ... | response_K`.

`collate` builds the row, the position ids (every response restarts right after the prompt),
the segment of every position (prompt, response k, pad) and the flat indices of the positions
whose hidden state predicts a response token; `alignkit.scoring.forward` turns the segments
into a block attention mask and scores the row in one forward pass. `unpack_responses` gives
the same responses one per row `prompt | response_k`, for models whose layers pass information
along the sequence other than through attention (Mamba, linear attention, convolutions), where
a block mask cannot hide response 1 from response 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.data.tokenize import Encoded
from alignkit.objectives.base import Kind, ObjectiveBatch, SeqLogps

PROMPT_SEGMENT = 0
PAD_SEGMENT = -1


@dataclass
class PackedBatch:
    """A collated batch of B examples with K response slots each.

    input_ids, position_ids, segments: (B, L); segments 0 = prompt, k+1 = response k, -1 = pad
    pred_index: (N,) flat index into B*L of the positions whose hidden state predicts a
                response token; targets: (N,) those tokens
    seq_id:     (N,) the sequence (b*K + k) of each target; tok_pos: (N,) its index in it
    counts:     (B, K) response lengths (0 = no such response)
    labels:     (B, K) float; high_quality, mask: (B, K) bool; binary: (B,) bool
    index:      (B,) the examples' positions in the encoded dataset
    """

    input_ids: Tensor
    position_ids: Tensor
    segments: Tensor
    pred_index: Tensor
    targets: Tensor
    seq_id: Tensor
    tok_pos: Tensor
    counts: Tensor
    labels: Tensor
    high_quality: Tensor
    binary: Tensor
    mask: Tensor
    index: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.counts.shape)  # type: ignore[return-value]

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    def n_tokens(self) -> int:
        """Tokens an unpacked implementation would process: sum over k of |prompt| + |y_k|."""
        prompt_len = (self.segments == PROMPT_SEGMENT).sum(1, keepdim=True)
        return int(((prompt_len + self.counts) * self.mask).sum())

    def objective_batch(
        self, kind: Kind, policy: SeqLogps, ref: SeqLogps | None = None
    ) -> ObjectiveBatch:
        """What an objective sees of this batch: the policy's (and the reference's) sequence
        scores next to the batch's labels and masks."""
        return ObjectiveBatch(
            kind=kind,
            policy=policy,
            labels=self.labels,
            binary=self.binary,
            high_quality=self.high_quality,
            mask=self.mask,
            ref=ref,
        )


def collate(examples: Sequence[Encoded], pad_id: int, k: int | None = None) -> PackedBatch:
    """Pack examples into rows `prompt|y_1|...|y_K`, right-padded to the longest row."""
    k = k or max(len(e.responses) for e in examples)
    length = max(e.length for e in examples)
    b = len(examples)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((b, length), dtype=torch.long)
    segments = torch.full((b, length), PAD_SEGMENT, dtype=torch.long)
    counts = torch.zeros((b, k), dtype=torch.long)
    labels = torch.zeros((b, k))
    high_quality = torch.zeros((b, k), dtype=torch.bool)
    pred, targets, seq_id, tok_pos = [], [], [], []
    for row, ex in enumerate(examples):
        p = len(ex.prompt)
        input_ids[row, :p] = torch.tensor(ex.prompt)
        position_ids[row, :p] = torch.arange(p)
        segments[row, :p] = PROMPT_SEGMENT
        start = p
        for j, resp in enumerate(ex.responses):
            n = len(resp)
            input_ids[row, start : start + n] = torch.tensor(resp)
            position_ids[row, start : start + n] = torch.arange(p, p + n)
            segments[row, start : start + n] = j + 1
            # token t of the response is predicted at the position of token t-1 (or the
            # last prompt token for t = 0)
            positions = [p - 1] + list(range(start, start + n - 1))
            pred.extend(row * length + q for q in positions)
            targets.extend(resp)
            seq_id.extend([row * k + j] * n)
            tok_pos.extend(range(n))
            counts[row, j] = n
            labels[row, j] = ex.labels[j]
            high_quality[row, j] = ex.high_quality[j]
            start += n
    return PackedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        segments=segments,
        pred_index=torch.tensor(pred, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        seq_id=torch.tensor(seq_id, dtype=torch.long),
        tok_pos=torch.tensor(tok_pos, dtype=torch.long),
        counts=counts,
        labels=labels,
        high_quality=high_quality,
        binary=torch.tensor([e.binary for e in examples], dtype=torch.bool),
        mask=counts > 0,
        index=torch.tensor([e.index for e in examples], dtype=torch.long),
    )


def unpack_responses(batch: PackedBatch) -> PackedBatch:
    """The responses of `batch`, one per row `prompt | y_k` (rows in the order b*K + k, absent
    responses skipped), so the rows' `pred_index` lists the same predictions in the same order
    as `batch.pred_index`. Only the token ids, positions and segments matter (labels are not
    copied)."""
    b, k = batch.shape
    ids, segments, mask = batch.input_ids.cpu(), batch.segments.cpu(), batch.mask.cpu()
    rows = []
    for row in range(b):
        prompt = ids[row][segments[row] == PROMPT_SEGMENT].tolist()
        for j in range(k):
            if mask[row, j]:
                response = ids[row][segments[row] == j + 1].tolist()
                rows.append(Encoded(prompt, [response], [0.0], [False], True, row))
    pad = int(ids[0, 0]) if ids.numel() else 0  # pad positions are masked: any id will do
    return collate(rows, pad, 1).to(batch.input_ids.device)
