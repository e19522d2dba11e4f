"""The rollout of RLOO and PPO: a no-gradient pass over an iteration's samples, kept as a value.

Both sample K responses per query and score them with the reward model; before the optimizer
steps of an iteration, one packed forward per query (the prompt encoded once for its K
responses), without gradient, records each response token's log-prob under the policy that
sampled it, under the reference policy (the starting policy: the model with its LoRA adapter
disabled, or a frozen copy), and for PPO the value head's estimate. `score_rollout` returns
them as a `Rollout` (as OpenRLHF's `Experience`, torchtune's `Trajectory`); RLOO
(`online/rloo.py`) and PPO (`online/ppo.py`) add their rewards and advantages to it and their
loss receives it.

The value head is a linear layer on the policy's last hidden state (zero-initialised here;
PPO may copy the reward model's score head into it, `PPOStrategy.init_critic`): it
shares the backbone (and, under LoRA, the adapter) with the policy, as TRL's
`AutoModelForCausalLMWithValueHead` did; it is part of the trained module, so checkpoints hold
it and a resumed run continues exactly. Dropout is switched off in the policy (as TRL does):
the rollout's log-probs are then those the first optimizer step sees.
"""

from __future__ import annotations

import copy as copying
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.data.tokenize import Encoded
from alignkit.distributed import Processes, shard_map
from alignkit.models import disable_dropout, is_peft, reference_context
from alignkit.objectives import ObjectiveConfig
from alignkit.online.samples import KSamples, RolloutInputs, Sampled
from alignkit.scoring.forward import SequenceScorer, response_hidden_states
from alignkit.scoring.head import decoder_and_head
from alignkit.scoring.packing import PackedBatch, collate


def sampled_encoding(e: Encoded, sample: Sampled, eos_ids: list[int], limit: int) -> Encoded:
    """`e` with each response replaced by the tokens `sample` drew (see `training_tokens`)."""
    if not sample.token_ids:
        return e
    room = max(0, limit - len(e.prompt))
    # as the encoder: EOS after a finished response, and after a cut one only if it is empty
    responses = [
        (list(ids) + ([] if ids and not finished else eos_ids[:1]))[:room]
        for ids, finished in zip(sample.token_ids, sample.finished, strict=True)
    ]
    return dataclasses.replace(e, responses=responses)


@dataclass
class TokenOutputs:
    """Per-token outputs of `RLScorer` for a batch of B prompts x K responses, as rows
    S = B*K (row b*K + k) right-padded to the batch's longest response W.

    logps (S, W): log pi(y_t | x, y_<t) with gradient; entropy (S, W): the policy's entropy at
    each position (no gradient); values (S, W) or None: the value head's V(s_t), the state
    before token t; mask (S, W) bool: the response's tokens; hidden (S, W, d) or None (asked
    for with `keep_hidden`): the float32 last hidden states the value head reads, detached.
    """

    logps: Tensor
    entropy: Tensor
    values: Tensor | None
    mask: Tensor
    hidden: Tensor | None = None


def per_token(batch: PackedBatch, flat: Tensor) -> Tensor:
    """(N, ...) values at the batch's response tokens -> (B*K, W, ...) rows, 0 after each
    response."""
    b, k = batch.shape
    width = max(int(batch.counts.max()), 1)
    out = flat.new_zeros(b * k, width, *flat.shape[1:])
    return out.index_put((batch.seq_id, batch.tok_pos), flat)


def token_mask(batch: PackedBatch) -> Tensor:
    """(B*K, W) bool: True at the response tokens."""
    width = max(int(batch.counts.max()), 1)
    positions = torch.arange(width, device=batch.counts.device)
    return positions[None, :] < batch.counts.reshape(-1, 1)


class RLScorer(SequenceScorer):
    """The policy as RLOO and PPO train it: per-token log-probs (logits / temperature, as they
    were sampled), the entropy, and with `value_head` a linear value head on the last hidden
    state. Packed forward as `SequenceScorer` (one row per prompt and its K responses)."""

    def __init__(self, model: nn.Module, value_head: bool = False, temperature: float = 1.0):
        super().__init__(model)
        disable_dropout(model)
        self.temperature = temperature
        self.value_head: nn.Linear | None = None
        if value_head:
            head = decoder_and_head(model, self.logit_transform)[1].module
            self.value_head = nn.Linear(head.weight.shape[1], 1)
            nn.init.zeros_(self.value_head.weight)  # V = 0 before any update
            nn.init.zeros_(self.value_head.bias)

    def forward(  # type: ignore[override]
        self,
        batch: PackedBatch,
        q_diff: Tensor | None = None,
        with_tokens: bool = False,
        autocast: torch.dtype | None = None,
        keep_hidden: bool = False,
    ) -> TokenOutputs:
        if q_diff is not None:
            raise ValueError("RLScorer computes no DEFT reward")
        decoder, head = decoder_and_head(self.model, self.logit_transform)
        hidden = response_hidden_states(decoder, batch, autocast, self.unpack)  # (N, d)
        logits = head.logits(hidden, autocast) / self.temperature  # (N, V) float32
        norm = torch.logsumexp(logits, dim=-1)
        logps = logits.gather(1, batch.targets[:, None]).squeeze(1) - norm
        with torch.no_grad():
            entropy = norm - (F.softmax(logits, dim=-1) * logits).sum(-1)
        values = None
        if self.value_head is not None:
            values = per_token(batch, self.value_head(hidden.float()).squeeze(-1))
        kept = per_token(batch, hidden.detach().float()) if keep_hidden else None
        return TokenOutputs(
            per_token(batch, logps), per_token(batch, entropy), values, token_mask(batch), kept
        )


class Reference:
    """log pi_ref per token. The reference is the policy the run starts from: the policy with
    its LoRA adapter disabled (the adapter is always fresh, `load_training_model`: no second
    copy in memory), else a frozen copy made before the first update (full fine-tuning)."""

    def __init__(self, policy: RLScorer) -> None:
        self.frozen: RLScorer | None = None
        if not is_peft(policy.model):
            frozen = RLScorer(copying.deepcopy(policy.model), temperature=policy.temperature)
            self.frozen = frozen.requires_grad_(False).eval()

    def logps(self, policy: RLScorer, batch: PackedBatch, autocast) -> Tensor:
        if self.frozen is not None:
            return self.frozen(batch, autocast=autocast).logps
        with reference_context(policy.model):
            return policy(batch, autocast=autocast).logps


@dataclass
class Rollout:
    """An iteration's rollout, computed without gradient before its optimizer steps.

    Rows S = n*K: response k of example i is row i*K + k; per-token tables are right-padded to
    the longest response T. Scored by `score_rollout`:
      logps (S, T)       log-probs of the sampled tokens under the policy that sampled them
      ref_logps (S, T)   the same under the reference policy
      mask (S, T) bool   True at the response's tokens
      scores (S,)        the reward model's score of each response
      values (S, T)      the value head's V(s_t) (PPO), else None
      hidden (S, T, d)   the hidden states V reads (PPO's critic warm-up only), else None
    Added by the method (`dataclasses.replace`), else None:
      rewards            RLOO (S,): score - kl_coef * KL of the response; PPO (S, T): the
                         per-token reward, -kl_coef * KL_t plus the score at the last token
      advantages         RLOO (S,): leave-one-out; PPO (S, T): GAE, whitened
      returns            PPO (S, T): GAE advantages + values, the value loss's target
    """

    logps: Tensor
    ref_logps: Tensor
    mask: Tensor
    scores: Tensor
    k: int
    values: Tensor | None = None
    hidden: Tensor | None = None
    rewards: Tensor | None = None
    advantages: Tensor | None = None
    returns: Tensor | None = None

    @property
    def kl(self) -> Tensor:
        """(S, T) log pi - log pi_ref per token, 0 off the mask."""
        return (self.logps - self.ref_logps) * self.mask

    def rows(self, batch: PackedBatch) -> Tensor:
        """(B*K,) the rollout rows of a batch's sequences (in the batch's row order)."""
        offsets = torch.arange(self.k, device=batch.index.device)
        return (batch.index[:, None] * self.k + offsets[None, :]).reshape(-1)

    def take(self, table: Tensor, batch: PackedBatch) -> Tensor:
        """(B*K, W) the batch's rows of a (S, T) table, cut to the batch's width W."""
        width = max(int(batch.counts.max()), 1)
        return table[self.rows(batch).to(table.device), :width].to(batch.counts.device)

    def per_response(self, table: Tensor, batch: PackedBatch) -> Tensor:
        """(B, K) the batch's entries of an (S,) table."""
        return table[self.rows(batch).to(table.device)].view(batch.shape)


def score_rollout(
    inputs: RolloutInputs, reference: Reference, keep_hidden: bool = False
) -> Rollout:
    """`Rollout` of `inputs.encoded` (no gradient; rewards and advantages still None): chunks
    of `batch_size` examples (one packed row per example) shared over the processes
    (`shard_map`, in lockstep for sharded models), every process getting every row.
    `keep_hidden`: also the hidden states (S, T, d) the value head reads (memory: S*T*d
    float32 numbers)."""
    scorer = inputs.scorer
    n, k, size = len(inputs.encoded), inputs.k, inputs.batch_size
    chunks = [range(start, min(start + size, n)) for start in range(0, n, size)]

    def score_chunk(idx: range) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        batch = collate([inputs.encoded[i] for i in idx], inputs.pad_id, k).to(inputs.device)
        out = scorer(batch, autocast=inputs.autocast, keep_hidden=keep_hidden)
        ref = reference.logps(scorer, batch, inputs.autocast)
        rows = []
        for r in range(len(idx)):
            for j in range(k):
                s, length = r * k + j, int(batch.counts[r, j])
                values = None if out.values is None else out.values[s, :length].float().cpu()
                hidden = None if out.hidden is None else out.hidden[s, :length].cpu()
                rows.append((out.logps[s, :length].cpu(), ref[s, :length].cpu(), values, hidden))
        return rows

    with torch.no_grad():
        parts = shard_map(chunks, score_chunk, Processes(inputs.rank, inputs.world), lockstep=True)
    rows = [row for part in parts for row in part]
    width = max(max((len(row[1]) for row in rows), default=1), 1)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    tables = [torch.zeros(len(rows), width) for _ in range(3)]
    for s, (logps, ref, values, _) in enumerate(rows):
        n = len(logps)
        mask[s, :n] = True
        tables[0][s, :n], tables[1][s, :n] = logps, ref
        if values is not None:
            tables[2][s, :n] = values
    has_values = bool(rows) and rows[0][2] is not None
    hidden = None
    if keep_hidden and rows:
        hidden = torch.zeros(len(rows), width, rows[0][3].shape[-1])
        for s, row in enumerate(rows):
            hidden[s, : len(row[3])] = row[3]
    dev = inputs.device
    # the reward-model scores are the records' labels
    scores = torch.tensor([s for e in inputs.encoded for s in e.labels], device=dev)
    return Rollout(
        logps=tables[0].to(dev),
        ref_logps=tables[1].to(dev),
        mask=mask.to(dev),
        scores=scores,
        k=inputs.k,
        values=tables[2].to(dev) if has_values else None,
        hidden=hidden.to(dev) if hidden is not None else None,
    )


class RLStrategy(KSamples):
    """What RLOO and PPO share: K samples per query kept as one multi-response record, the
    RLScorer, the reference, the scored rollout."""

    value_head = False

    def __init__(self, k: int, kl_coef: float, temperature: float, objective: ObjectiveConfig):
        super().__init__(k, objective)
        self.kl_coef = kl_coef
        self.temperature = temperature
        self.reference: Reference | None = None

    def make_scorer(self, model: nn.Module) -> nn.Module:
        return RLScorer(model, value_head=self.value_head, temperature=self.temperature)

    def training_tokens(
        self, encoded: list[Encoded], samples: Sequence[Sampled], eos_ids: list[int], limit: int
    ) -> list[Encoded]:
        """The policy-gradient losses score the tokens the policy sampled: each response is
        its sampled ids (+ EOS when it finished), cut to `limit` with the prompt, as the
        encoder cuts; a sample without ids (an endpoint) keeps its re-tokenized text."""
        return [
            sampled_encoding(e, x, eos_ids, limit) for e, x in zip(encoded, samples, strict=True)
        ]

    def attach_reference(self, scorer: nn.Module) -> None:
        assert isinstance(scorer, RLScorer)
        self.reference = Reference(scorer)

    def rows(self, samples: Sequence[Sampled]) -> list[dict[str, Any]]:
        return [x.to_dict() for x in samples]

    def score(self, inputs: RolloutInputs, keep_hidden: bool = False) -> Rollout:
        """`score_rollout` with the reference, after checking the examples' layout."""
        if self.reference is None:
            raise RuntimeError("attach_reference was not called")
        for i, example in enumerate(inputs.encoded):
            if example.index != i or len(example.responses) != self.k:
                raise RuntimeError("rollout examples must be indexed 0..n-1 with K responses")
        return score_rollout(inputs, self.reference, keep_hidden)
