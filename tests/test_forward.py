"""Packed forward: equals scoring every response as its own sequence; DEFT R_Q; masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from alignkit.data.tokenize import Encoded
from alignkit.scoring.forward import SequenceScorer, block_attention_mask, naive_sequence_logps
from alignkit.scoring.packing import collate

EXAMPLES = [
    Encoded([1, 5, 6, 7], [[8, 9, 2], [10, 2]], [1, 0], [True, False], True, 0),
    Encoded([1, 3], [[11, 12, 13, 14, 2], [4, 2]], [1, 0], [True, False], True, 1),
    Encoded([1, 30, 31, 32, 33, 34], [[40, 2]], [1], [True], True, 2),  # K=1: ragged
]


@pytest.fixture(scope="module")
def model(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_equals_separate_sequences(model, attn):
    model.config._attn_implementation = attn
    batch = collate(EXAMPLES, pad_id=2)
    out = SequenceScorer(model)(batch, with_tokens=True)
    expected = naive_sequence_logps(model, batch)
    assert torch.allclose(out.sum, expected, atol=1e-5)
    assert out.count.tolist() == [[3, 2], [5, 2], [2, 0]]
    assert not batch.mask[2, 1]
    # per-token log-probs sum to the sequence sums and are 0 past the end
    assert torch.allclose(out.tokens.sum(-1), out.sum, atol=1e-6)
    assert out.tokens[0, 1, 2:].abs().sum() == 0
    model.config._attn_implementation = "sdpa"


def test_block_mask_structure():
    # prompt of 2, response A of 2, response B of 1, one pad
    seg = torch.tensor([[0, 0, 1, 1, 2, -1]])
    m = block_attention_mask(seg)[0, 0].int().tolist()
    assert m == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # B sees the prompt and itself, not A
        [0, 0, 0, 0, 0, 1],  # padding only sees itself (no empty softmax row)
    ]
    additive = block_attention_mask(seg, torch.float32)
    assert additive[0, 0, 4, 2] == torch.finfo(torch.float32).min and additive[0, 0, 4, 1] == 0


def test_position_ids_restart_after_prompt():
    batch = collate(EXAMPLES[:1], pad_id=2)
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 4, 5]
    # unpacked token count: (4+3) + (4+2)
    assert batch.n_tokens() == 13


def test_distribution_reward_equals_naive_formula(model):
    torch.manual_seed(0)
    vocab = model.config.vocab_size
    q = torch.rand(vocab)
    q_diff = q / q.sum() - torch.full((vocab,), 1.0 / vocab)  # sums to 0
    batch = collate(EXAMPLES, pad_id=2)
    out = SequenceScorer(model)(batch, q_diff=q_diff)
    # naive: mean over response positions of sum_v Q_diff[v] * log p(v | context)
    for row, ex in enumerate(EXAMPLES):
        for j, resp in enumerate(ex.responses):
            ids = torch.tensor([ex.prompt + resp])
            logps = F.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            positions = range(len(ex.prompt) - 1, len(ex.prompt) - 1 + len(resp))
            naive = torch.stack([(q_diff * logps[t]).sum() for t in positions]).mean()
            assert torch.allclose(out.r_q[row, j], naive, atol=1e-5)


def test_chosen_logps_do_not_depend_on_rejected_tokens(model):
    batch = collate(EXAMPLES[:1], pad_id=2)
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["emb"] = output

    handle = model.get_input_embeddings().register_forward_hook(keep)
    try:
        SequenceScorer(model)(batch).sum[0, 0].backward()
    finally:
        handle.remove()
        model.zero_grad()
    grad = captured["emb"].grad[0].abs().sum(-1)  # per position of the packed row
    seg = batch.segments[0]
    assert (grad[seg == 2] == 0).all()  # the rejected block is invisible to the chosen one
    assert (grad[seg == 0] > 0).all()  # every prompt token matters


def test_bf16_autocast_close_to_fp32(model):
    batch = collate(EXAMPLES, pad_id=2)
    fp32 = SequenceScorer(model)(batch).sum
    bf16 = SequenceScorer(model)(batch, autocast=torch.bfloat16).sum
    assert bf16.dtype == torch.float32  # log-softmax always in float32
    assert torch.allclose(bf16, fp32, rtol=0.05, atol=0.5)
