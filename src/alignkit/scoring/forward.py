"""Per-sequence log-probs of K responses per prompt in ONE packed forward pass.

Each example becomes one row `prompt | response_1 | ... | response_K`. A block attention mask
lets every response see the prompt and its own earlier tokens only, and the position ids of
every response restart right after the prompt, so each response is scored exactly as if it
were its own sequence — but the shared prompt (most of the tokens in HH-style data) is
encoded once instead of K times. The first token of every response is predicted from the
hidden state of the last prompt position.

Only the hidden states that predict response tokens go through the LM head, followed by the
model family's logit post-processing (Gemma soft-capping, Cohere / Granite scaling:
`alignkit.scoring.head`), and the log-softmax is a float32 gather minus logsumexp over those
rows: no `[batch, seq, vocab]` tensor is ever materialised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.objectives.base import SeqLogps
from alignkit.scoring.deft import RQSpec, distribution_reward
from alignkit.scoring.head import decoder_and_head, logit_transform
from alignkit.scoring.packing import PAD_SEGMENT, PROMPT_SEGMENT, PackedBatch, unpack_responses

# module class names (lower case) of layers that pass information along the sequence other
# than through attention; nn.Conv1d (the causal convolution of Mamba, gated delta nets, short
# convolutions, RG-LRU) is checked by type. A false positive only costs speed.
_RECURRENT_NAMES = ("mamba", "gateddeltanet", "rwkv", "lstm", "rglru", "recurrent", "shortconv")


def block_attention_mask(segments: Tensor, additive_dtype: torch.dtype | None = None) -> Tensor:
    """(B, 1, L, L) mask: causal, and a response sees only the prompt and itself.

    Boolean (True = may attend) for SDPA; an additive float mask when `additive_dtype` is
    given (eager attention). Padding queries attend to themselves so no softmax row is empty.
    """
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    q_seg = segments[:, :, None]
    k_seg = segments[:, None, :]
    visible = (k_seg == PROMPT_SEGMENT) | (q_seg == k_seg)
    valid = (q_seg != PAD_SEGMENT) & (k_seg != PAD_SEGMENT)
    eye = torch.eye(length, dtype=torch.bool, device=segments.device)
    allowed = (causal & visible & valid) | eye
    allowed = allowed[:, None]
    if additive_dtype is None:
        return allowed
    zero = torch.zeros((), dtype=additive_dtype, device=segments.device)
    return torch.where(allowed, zero, torch.finfo(additive_dtype).min)


def packed_hidden_states(
    decoder: nn.Module, batch: PackedBatch, autocast: torch.dtype | None = None
) -> Tensor:
    """(B, L, d) final hidden states of the packed rows (block mask, restarted positions).

    Runs under autocast when `autocast` is a dtype; the output stays in that dtype.
    """
    device = batch.input_ids.device
    attn_impl = getattr(decoder.config, "_attn_implementation", "sdpa")
    mask_dtype = None if attn_impl in ("sdpa", "flex_attention") else (autocast or torch.float32)
    mask = block_attention_mask(batch.segments, mask_dtype)
    with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        return decoder(
            input_ids=batch.input_ids,
            attention_mask=mask,
            position_ids=batch.position_ids,
            use_cache=False,
        ).last_hidden_state


def mixes_positions(decoder: nn.Module) -> bool:
    """True when `decoder` has layers that carry information along the sequence outside
    attention (state-space / recurrent / convolutional mixers): a block attention mask cannot
    keep packed responses apart, so they are scored one per row (`unpack_responses`)."""
    for module in decoder.modules():
        name = type(module).__name__.lower()
        if isinstance(module, nn.Conv1d) or any(frag in name for frag in _RECURRENT_NAMES):
            return True
    return False


def response_hidden_states(
    decoder: nn.Module,
    batch: PackedBatch,
    autocast: torch.dtype | None = None,
    unpack: bool = False,
) -> Tensor:
    """(N, d) final hidden states at the N positions that predict response tokens, in the
    order of `batch.pred_index`: one packed row per example, or with `unpack` (and K > 1)
    one row per response (`mixes_positions` models)."""
    rows = unpack_responses(batch) if unpack and batch.shape[1] > 1 else batch
    hidden = packed_hidden_states(decoder, rows, autocast)
    return hidden.reshape(-1, hidden.shape[-1])[rows.pred_index]


class SequenceScorer(nn.Module):
    """Wraps a causal LM; `forward(batch)` returns the log-probs of every packed response.

    It is a module (not a function) so that DDP/FSDP wrappers see the call and synchronise
    gradients. `q_diff` (a (V,) tensor, or an `RQSpec` with the form and whether R_Q carries
    a gradient) enables DEFT's reward R_Q (`alignkit.scoring.deft.distribution_reward`):
    the log-prob form of a linearly post-processed head is `h_t . (W^T Q_diff)` (one d-vector,
    no vocabulary matmul); otherwise it reuses the logits of the log-probs. The model's logit
    post-processing is looked up once, here: a model whose post-processing alignkit does not
    know is refused when the scorer is built. Models with recurrent or convolutional sequence
    mixers (`mixes_positions`) are scored one response per row.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.logit_transform = logit_transform(model)
        self.unpack = mixes_positions(decoder_and_head(model, self.logit_transform)[0])

    def forward(
        self,
        batch: PackedBatch,
        q_diff: Tensor | RQSpec | None = None,
        with_tokens: bool = False,
        autocast: torch.dtype | None = None,
    ) -> SeqLogps:
        decoder, head = decoder_and_head(self.model, self.logit_transform)
        device = batch.input_ids.device
        hidden = response_hidden_states(decoder, batch, autocast, self.unpack)  # (N, d)
        logits = head.logits(hidden, autocast)  # (N, V) float32, response positions only
        token_logps = _gather_logps(logits, batch.targets)
        b, k = batch.shape
        sums = torch.zeros(b * k, dtype=token_logps.dtype, device=device)
        sums = sums.index_add(0, batch.seq_id, token_logps).view(b, k)
        tokens = None
        if with_tokens:
            width = int(batch.counts.max())
            tokens = torch.zeros(b * k, width, dtype=token_logps.dtype, device=device)
            tokens = tokens.index_put((batch.seq_id, batch.tok_pos), token_logps).view(b, k, width)
        r_q = None
        if q_diff is not None:
            spec = q_diff if isinstance(q_diff, RQSpec) else RQSpec(q_diff)
            with torch.set_grad_enabled(spec.grad and torch.is_grad_enabled()):
                r_q = distribution_reward(
                    hidden.float(),
                    head,
                    spec.q_diff,
                    batch.seq_id,
                    batch.counts,
                    spec.form,
                    logits=logits,
                )
        return SeqLogps(sum=sums, count=batch.counts, tokens=tokens, r_q=r_q)


def _gather_logps(logits: Tensor, targets: Tensor) -> Tensor:
    """(N,) log p(target) = logit[target] - logsumexp(logits), in float32."""
    picked = logits.gather(1, targets[:, None]).squeeze(1)
    return picked - torch.logsumexp(logits, dim=-1)


def naive_sequence_logps(model: nn.Module, batch: PackedBatch) -> Tensor:
    """(B, K) reference implementation: every response as its own unpacked sequence with a
    full-vocabulary float32 log-softmax. Used by tests and the parity benchmark."""
    b, k = batch.shape
    out = torch.zeros(b, k)
    for row in range(b):
        prompt = batch.input_ids[row][batch.segments[row] == PROMPT_SEGMENT]
        for j in range(k):
            if not batch.mask[row, j]:
                continue
            resp = batch.input_ids[row][batch.segments[row] == j + 1]
            ids = torch.cat([prompt, resp])[None]
            logits = model(input_ids=ids).logits.float()
            logps = F.log_softmax(logits[0, :-1], dim=-1)
            tgt = ids[0, 1:]
            token = logps.gather(1, tgt[:, None]).squeeze(1)
            out[row, j] = token[len(prompt) - 1 :].sum()
    return out
