"""DEFT's token-distribution reward R_Q: Q_pos, Q_neg, Q_diff, both forms of R_Q, and the
Q_diff file that `alignkit select deft` writes and `alignkit train --q-diff` reads.

Q_pos / Q_neg are the token-frequency distributions of preferred / dispreferred responses
(policy tokenizer, response tokens only, special tokens excluded); Q_diff = Q_pos - Q_neg.

    log-prob form  R_Q(x, y) = mean_t <Q_diff, log p(. | x, y_<t)> = mean_t <Q_diff, logits_t>
    bounded form   R_Q(x, y) = mean_t <Q_diff, p(. | x, y_<t)>

The log-prob form needs no softmax because sum(Q_diff) = 0 cancels the log-partition: for a
head whose logit post-processing is a multiplication it is `s * h_t . (W^T Q_diff)`, one
d-vector per batch. `logits_t` are the model's own (post-processed) logits
(`alignkit.scoring.head`). Formulas: docs/methods.md, "DEFT".

Used by the packed forward (`SequenceScorer(q_diff=...)`, the trainer's `--deft-lambda`
guidance term and `--log-r-q`) and by `alignkit select deft` (`alignkit.select.deft`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.io import atomic_write
from alignkit.scoring.forms import R_Q_FORMS, RQForm

if TYPE_CHECKING:
    from alignkit.scoring.head import LMHead

_COUNT_CHUNK = 1 << 15  # sequences flattened per bincount (bounds the temporary arrays)

Q_DIFF_FILE = "q_diff.safetensors"
Q_DIFF_FORMAT = "alignkit-q-diff-v1"


# ------------------------------------------------------------------ Q_pos, Q_neg, Q_diff


def token_counts(sequences: Iterable[Sequence[int]], vocab: int) -> np.ndarray:
    """(V,) int64 number of occurrences of every token id in `sequences`.

    Counted in chunks with one C-level flatten + bincount each (no per-token Python work).
    An id outside [0, vocab) means the tokenizer does not match the vocabulary: an error.
    """
    counts = np.zeros(vocab, dtype=np.int64)
    it = iter(sequences)
    while chunk := list(itertools.islice(it, _COUNT_CHUNK)):
        flat = np.fromiter(itertools.chain.from_iterable(chunk), dtype=np.int64)
        if flat.size == 0:
            continue
        if flat.min() < 0 or flat.max() >= vocab:
            raise AlignkitError(
                f"token id {int(flat.max())} is outside the vocabulary of {vocab} tokens: "
                "the tokenizer and the model/vocabulary size do not belong together"
            )
        counts += np.bincount(flat, minlength=vocab)
    return counts


def _normalised(counts: np.ndarray, exclude: Iterable[int]) -> tuple[Tensor, int]:
    """(V,) float64 distribution with `exclude` ids zeroed, and the number of tokens kept."""
    counts = torch.from_numpy(counts).to(torch.float64)
    ex = torch.tensor(sorted(set(exclude)), dtype=torch.long)
    if len(ex):
        counts[ex[(ex >= 0) & (ex < len(counts))]] = 0
    total = int(counts.sum())
    if total == 0:
        raise AlignkitError("no response tokens to build a token distribution from")
    return counts / total, total


def token_distribution(
    sequences: Iterable[Sequence[int]], vocab: int, exclude: Iterable[int]
) -> Tensor:
    """(V,) normalised token frequencies over `sequences`, `exclude` ids removed."""
    return _normalised(token_counts(sequences, vocab), exclude)[0]


@dataclass
class TokenDistributions:
    """Q_pos, Q_neg: (V,) float64 distributions; *_tokens: tokens counted in each."""

    q_pos: Tensor
    q_neg: Tensor
    pos_tokens: int
    neg_tokens: int

    @property
    def q_diff(self) -> Tensor:
        """(V,) float32 Q_pos - Q_neg (sums to 0; > 0 = typical of preferred responses)."""
        return (self.q_pos - self.q_neg).float()


def token_distributions(
    encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]
) -> TokenDistributions:
    """Q_pos over high-quality responses (pair: chosen), Q_neg over the others."""
    special = list(special_ids)
    pos = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if hq]
    neg = [r for e in encoded for r, hq in zip(e.responses, e.high_quality, strict=True) if not hq]
    if not pos or not neg:
        raise AlignkitError(
            "DEFT needs both preferred and dispreferred responses to build Q_diff "
            f"(found {len(pos)} preferred, {len(neg)} dispreferred)"
        )
    q_pos, n_pos = _normalised(token_counts(pos, vocab), special)
    q_neg, n_neg = _normalised(token_counts(neg, vocab), special)
    return TokenDistributions(q_pos, q_neg, n_pos, n_neg)


def q_diff_from_encoded(
    encoded: Sequence[Encoded], vocab: int, special_ids: Iterable[int]
) -> Tensor:
    """(V,) Q_pos - Q_neg: positives are high-quality responses, negatives the others.

    Pair data: chosen vs rejected; point data: label-1 vs label-0 completions.
    """
    return token_distributions(encoded, vocab, special_ids).q_diff


def fit_q_diff(q_diff: Tensor, rows: int) -> Tensor:
    """(rows,) Q_diff over the tokenizer's vocabulary, zero-padded to the LM head's (possibly
    padded) number of rows (e.g. Qwen pads its embedding matrix beyond the tokenizer)."""
    if len(q_diff) == rows:
        return q_diff
    if len(q_diff) > rows:
        raise AlignkitError(
            f"Q_diff has {len(q_diff)} entries but the model's vocabulary only {rows}: "
            "it was built with another tokenizer"
        )
    return torch.nn.functional.pad(q_diff, (0, rows - len(q_diff)))


# ------------------------------------------------------------------------------- R_Q


@dataclass(frozen=True)
class RQSpec:
    """What the packed forward computes R_Q with: Q_diff (V,), the form, and whether R_Q
    carries a gradient (the guidance term, lambda != 0) or is only measured (`--log-r-q`)."""

    q_diff: Tensor
    form: RQForm = "logprob"
    grad: bool = True

    def __post_init__(self) -> None:
        if self.form not in R_Q_FORMS:
            raise AlignkitError(f"unknown R_Q form {self.form!r}; choose logprob or prob")

    def to(self, device: torch.device | str) -> RQSpec:
        return RQSpec(self.q_diff.to(device), self.form, self.grad)


def distribution_reward(
    hidden: Tensor,
    head: LMHead,
    q_diff: Tensor,
    seq_id: Tensor,
    counts: Tensor,
    form: RQForm = "logprob",
    *,
    logits: Tensor | None = None,
    autocast: torch.dtype | None = None,
    chunk: int = 256,
) -> Tensor:
    """(B, K) R_Q = mean over the response positions of <Q_diff, log p_t> or <Q_diff, p_t>.

    hidden: (N, d) hidden states of the N response positions of a packed batch; seq_id: (N,)
    their sequence b*K + k; counts: (B, K) response lengths; `logits`: their (N, V) float32
    post-processed logits when the caller has them (the packed forward), else they are
    computed `chunk` rows at a time. Log-prob form: because Q_diff sums to 0 the
    log-partition cancels, so <Q_diff, log p_t> = <Q_diff, logits_t>; for a linear logit
    transform (scale s) that is s * (h_t . (W^T Q_diff) + <Q_diff, b>): no vocabulary matmul.
    Bounded form: <Q_diff, softmax(logits_t)>, in [min Q_diff, max Q_diff].
    """
    if form not in R_Q_FORMS:
        raise AlignkitError(f"unknown R_Q form {form!r}; choose logprob or prob")
    q_diff = fit_q_diff(q_diff.float(), head.rows).to(hidden.device)
    if form == "logprob" and head.transform.linear:
        weight = head.weight.float()  # (V, d)
        per_token = hidden.float() @ (q_diff @ weight)  # (N,)
        if head.bias is not None:
            per_token = per_token + q_diff @ head.bias.float()
        if head.transform.scale != 1.0:
            per_token = per_token * head.transform.scale
        return _per_sequence_mean(per_token, seq_id, counts)
    blocks = (
        [logits]
        if logits is not None
        else (head.logits(part, autocast) for part in hidden.split(chunk))
    )
    parts = [
        (block if form == "logprob" else torch.softmax(block, dim=-1)) @ q_diff for block in blocks
    ]
    per_token = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)
    return _per_sequence_mean(per_token, seq_id, counts)


def _per_sequence_mean(per_token: Tensor, seq_id: Tensor, counts: Tensor) -> Tensor:
    """(B, K) mean of the (N,) per-token values over each packed response."""
    b, k = counts.shape
    sums = torch.zeros(b * k, dtype=per_token.dtype, device=per_token.device)
    sums = sums.index_add(0, seq_id, per_token).view(b, k)
    return sums / counts.clamp(min=1)


# ----------------------------------------------------------------------- the Q_diff file


def tokenizer_identity(tokenizer: Any, name: str) -> dict[str, Any]:
    """name (the model spec it was loaded from), vocab_size and sha256 of the vocabulary
    (every token string with its id, sorted): equal hashes = the same token ids."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    text = json.dumps(vocab, ensure_ascii=False, separators=(",", ":"))
    return {
        "name": name,
        "vocab_size": len(tokenizer),
        "vocab_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


def encoded_fingerprint(encoded: Sequence[Encoded]) -> str:
    """sha256 of what Q_diff is counted from: every response's token ids with its
    preferred/dispreferred mark, in data order (so also of the tokenizer and truncation)."""
    digest = hashlib.sha256()
    for e in encoded:
        for ids, hq in zip(e.responses, e.high_quality, strict=True):
            digest.update(b"+" if hq else b"-")
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(np.asarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()


@dataclass
class QDiffFile:
    """A saved Q_diff (float32, exactly the tensor that was filtered with) and its metadata:
    format, tokenizer (`tokenizer_identity`), data (files, fingerprint, counts), tokens."""

    q_diff: Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def describe(self) -> str:
        data = self.meta.get("data", {})
        files = ", ".join(f.get("path", "?") for f in data.get("files", [])) or "?"
        return (
            f"{self.meta.get('created_by', '?')} on {files} ({data.get('examples', '?')} "
            f"examples, fingerprint {str(data.get('fingerprint', '?'))[:12]})"
        )

    def check_tokenizer(self, tokenizer: Any, name: str) -> None:
        """An error unless `tokenizer` has the vocabulary Q_diff was counted in."""
        saved = self.meta.get("tokenizer", {})
        mine = tokenizer_identity(tokenizer, name)
        if (saved.get("vocab_size"), saved.get("vocab_sha256")) != (
            mine["vocab_size"],
            mine["vocab_sha256"],
        ):
            raise AlignkitError(
                f"--q-diff {self.path}: Q_diff was counted with the tokenizer of "
                f"{saved.get('name', '?')!r} ({saved.get('vocab_size', '?')} tokens, vocabulary "
                f"sha256 {str(saved.get('vocab_sha256', '?'))[:12]}) but the model "
                f"{name!r} has another one ({mine['vocab_size']} tokens, sha256 "
                f"{mine['vocab_sha256'][:12]}): token ids would not match. Run "
                "`alignkit select deft` with this model, or drop --q-diff to count Q_diff on "
                "the training data"
            )


def save_q_diff(path: str | Path, dists: TokenDistributions, meta: dict[str, Any]) -> None:
    """Write Q_diff (float32, the tensor R_Q was scored with), Q_pos and Q_neg (float64) and
    `meta` (JSON in the safetensors header) atomically."""
    from safetensors.torch import save_file

    tensors = {
        "q_diff": dists.q_diff.contiguous(),
        "q_pos": dists.q_pos.contiguous(),
        "q_neg": dists.q_neg.contiguous(),
    }
    header = {"format": Q_DIFF_FORMAT, "alignkit": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def read_q_diff_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a Q_diff file (header only, no tensor is read); an error unless it is
    one."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise AlignkitError(
            f"--q-diff {path}: no such file; give the {Q_DIFF_FILE} that `alignkit select deft` "
            "wrote into its --output directory"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            names = set(handle.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise AlignkitError(f"--q-diff {path}: not a safetensors file ({err})") from err
    if header.get("format") != Q_DIFF_FORMAT or "q_diff" not in names:
        raise AlignkitError(
            f"--q-diff {path}: not a Q_diff file of `alignkit select deft` (format "
            f"{header.get('format')!r}, expected {Q_DIFF_FORMAT!r})"
        )
    return json.loads(header.get("alignkit", "{}"))


def load_q_diff(path: str | Path) -> QDiffFile:
    """The Q_diff file `save_q_diff` wrote (errors: missing, not a Q_diff file)."""
    from safetensors.torch import load_file

    meta = read_q_diff_meta(path)
    return QDiffFile(load_file(str(path))["q_diff"], meta, str(path))
