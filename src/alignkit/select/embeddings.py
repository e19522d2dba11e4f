"""Response embeddings for REAL (`alignkit select real`), cached on disk.

Embedding of a response: the base model run on the response text alone (after the BOS the
tokenizer adds to plain text, if any), last hidden layer, mean over the response tokens,
L2-normalised. Embeddings are cached on disk per text under a fingerprint of the model, so
an interrupted run continues where it stopped and other strategies reuse them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.data.batching import sorted_chunks
from alignkit.distributed import distributed_state, shard_map
from alignkit.io import atomic_write
from alignkit.models import backbone_and_head

_EMBED_VERSION = 1  # bump when the definition of an embedding changes (invalidates caches)


def response_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before plain text (e.g. [BOS]); not part of the mean."""
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if plain and with_special[start : start + len(plain)] == plain:
            return with_special[:start]
    return []


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings of texts, on disk as atomically written parts `part-*.pt` of
    {"keys": [sha1 of text], "emb": (n, d) float32}. Several processes may add parts."""

    def __init__(self, root: str | Path, fingerprint: str) -> None:
        self.dir = Path(root) / fingerprint[:24]

    def load(self, wanted: set[str]) -> dict[str, Tensor]:
        """key -> (d,) embedding of the `wanted` texts stored so far."""
        found: dict[str, Tensor] = {}
        for part in sorted(self.dir.glob("part-*.pt")):
            saved = torch.load(part, weights_only=True)
            for key, emb in zip(saved["keys"], saved["emb"], strict=True):
                if key in wanted:
                    found[key] = emb.clone()  # not a view that keeps the whole part alive
        return found

    def save(self, keys: list[str], emb: Tensor, rank: int = 0) -> None:
        if not keys:
            return
        name = f"part-{time.time_ns()}-{rank}-{uuid.uuid4().hex[:8]}.pt"
        saved = {"keys": list(keys), "emb": emb.contiguous()}
        atomic_write(self.dir / name, lambda tmp: torch.save(saved, tmp))


def model_fingerprint(model: nn.Module, tokenizer: Any, autocast: torch.dtype | None) -> str:
    """A hash of what an embedding depends on: config, weights (checksums), tokenizer,
    the text prefix and the compute precision."""
    h = hashlib.sha1()
    meta = {
        "version": _EMBED_VERSION,
        "class": type(model).__name__,
        "config": json.loads(model.config.to_json_string(use_diff=False)),
        "prefix": response_prefix(tokenizer),
        "vocab": sorted(tokenizer.get_vocab().items()),
        "autocast": str(autocast),
    }
    meta["config"].pop("_name_or_path", None)
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in model.state_dict().items():
            x = p.detach().double()
            h.update(
                f"{name}:{tuple(p.shape)}:{x.sum().item():.10e}:{x.norm().item():.10e}".encode()
            )
    return h.hexdigest()


def embed_batch(
    model: nn.Module,
    ids: Sequence[Sequence[int]],
    prefix: Sequence[int],
    pad_id: int,
    autocast: torch.dtype | None = None,
) -> Tensor:
    """(b, d) L2-normalised mean of the last hidden layer over each response's tokens.

    ids: b responses' token ids (no special tokens); each row is prefix + ids, right-padded.
    """
    decoder, _ = backbone_and_head(model)
    device = next(model.parameters()).device
    length = len(prefix) + max(len(r) for r in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), length), dtype=torch.long)
    response = torch.zeros((len(ids), length), dtype=torch.float32)
    for row, resp in enumerate(ids):
        n = len(prefix) + len(resp)
        input_ids[row, :n] = torch.tensor([*prefix, *resp])
        attention[row, :n] = 1
        response[row, len(prefix) : n] = 1
    with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        hidden = decoder(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
        ).last_hidden_state
    weights = response.to(device)[..., None]
    mean = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)
    return F.normalize(mean, dim=-1)


@dataclass
class Embeddings:
    """matrix: (U, d) one row per distinct text; rows: (n,) row of each input text;
    lengths: (n,) tokens of each text (tokenized alone)."""

    matrix: Tensor
    rows: Tensor
    lengths: Tensor

    def of(self, index: Tensor) -> Tensor:
        """(..., d) embeddings of the texts at `index`."""
        return self.matrix[self.rows[index]]


def embed_texts(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    autocast: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    state: Any = None,
    flush_every: int = 1024,
) -> Embeddings:
    """Embed every distinct text once, length-sorted batches, sharded over processes.

    With `cache_dir`, finished embeddings are saved every `flush_every` texts (and when the
    run is interrupted) and reused: a second run computes only what is missing.
    """

    state = state or distributed_state()
    keys = [text_key(t) for t in texts]
    unique = list(dict.fromkeys(keys))
    row_of = {k: i for i, k in enumerate(unique)}
    first = {k: t for k, t in zip(keys, texts, strict=True)}
    token_ids = _tokenize(tokenizer, [first[k] for k in unique])
    cache = (
        EmbeddingCache(cache_dir, model_fingerprint(model, tokenizer, autocast))
        if cache_dir
        else None
    )
    known = cache.load(set(unique)) if cache else {}
    state.wait_for_everyone()  # every process has read the cache before any writes to it
    missing = [i for i, k in enumerate(unique) if k not in known]
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
    prefix = response_prefix(tokenizer)
    new = _embed_shard(
        model,
        [unique[i] for i in missing],
        [token_ids[i][: limit - len(prefix)] for i in missing],
        prefix=prefix,
        pad_id=tokenizer.pad_token_id,
        batch_size=batch_size,
        autocast=autocast,
        cache=cache,
        state=state,
        flush_every=flush_every,
    )
    known.update(new)
    matrix = torch.stack([known[k] for k in unique]) if unique else torch.zeros(0, 0)
    rows = torch.tensor([row_of[k] for k in keys], dtype=torch.long)
    lengths = torch.tensor([len(token_ids[row_of[k]]) for k in keys], dtype=torch.long)
    return Embeddings(matrix.float(), rows, lengths)


def _tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(r) for r in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _embed_shard(
    model: nn.Module,
    keys: list[str],
    ids: list[list[int]],
    *,
    prefix: list[int],
    pad_id: int,
    batch_size: int,
    autocast: torch.dtype | None,
    cache: EmbeddingCache | None,
    state: Any,
    flush_every: int,
) -> dict[str, Tensor]:
    """Embed `keys` in length-sorted chunks shared over the processes (`shard_map`; each
    process caches what it embeds as it goes) and give every process all: key -> (d,)."""
    chunks = sorted_chunks([len(r) for r in ids], batch_size)
    done_keys: list[str] = []
    done: list[Tensor] = []
    flushed = 0

    def flush() -> None:
        nonlocal flushed
        if cache is not None and len(done_keys) > flushed:
            cache.save(done_keys[flushed:], torch.stack(done[flushed:]), state.process_index)
            flushed = len(done_keys)

    def embed_chunk(idx: list[int]) -> Tensor:
        emb = embed_batch(model, [ids[i] for i in idx], prefix, pad_id, autocast).cpu()
        done_keys.extend(keys[i] for i in idx)
        done.extend(emb)
        if len(done_keys) - flushed >= flush_every:
            flush()
        return emb

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = shard_map(chunks, embed_chunk, state, desc="embeddings")
    finally:
        flush()  # an interrupted run keeps what it finished
        model.train(was_training)
    return {
        keys[i]: e
        for idx, emb in zip(chunks, parts, strict=True)
        for i, e in zip(idx, emb, strict=True)
    }
