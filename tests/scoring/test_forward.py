"""Packed forward: equals scoring every response as its own sequence; DEFT R_Q; masks; models
whose forward post-processes the logits (Gemma soft-capping, Cohere and Granite scaling)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import EXAMPLES, FAMILIES, RECURRENT, TINY, tiny_family_model
from transformers import AutoModelForCausalLM

from alignkit.data.tokenize import Encoded
from alignkit.errors import AlignkitError
from alignkit.scoring.deft import RQSpec
from alignkit.scoring.forward import SequenceScorer, block_attention_mask, naive_sequence_logps
from alignkit.scoring.head import IDENTITY, LogitTransform, logit_transform
from alignkit.scoring.packing import collate


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


def _naive(model, example: Encoded, response: list[int], q: torch.Tensor) -> list[torch.Tensor]:
    """The response alone through `model(input_ids).logits` (post-processing included): its
    log-prob sum, and the mean over its positions of <Q, log_softmax(l_t)> and <Q, softmax(l_t)>."""
    ids = torch.tensor([example.prompt + response])
    start = len(example.prompt) - 1
    logits = model(input_ids=ids).logits[0, start : start + len(response)].float()
    logps = F.log_softmax(logits, -1)
    picked = logps.gather(1, torch.tensor(response)[:, None]).sum()
    return [picked, (logps @ q).mean(), (F.softmax(logits, -1) @ q).mean()]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_post_processed_logits_equal_the_models_own_forward(family):
    model = tiny_family_model(family)
    batch = collate(EXAMPLES, pad_id=2)
    scorer = SequenceScorer(model)
    assert scorer.logit_transform != IDENTITY
    q = torch.rand(TINY["vocab_size"], generator=torch.Generator().manual_seed(1))
    q = q / q.sum() - 1.0 / TINY["vocab_size"]  # sums to 0
    with torch.no_grad():
        out = scorer(batch)
        r_q = {form: scorer(batch, q_diff=RQSpec(q, form)).r_q for form in ("logprob", "prob")}
        # naive: each response alone, log-softmax of model(input_ids).logits, gathered
        naive = torch.zeros(3, 2, 3)
        for row, ex in enumerate(EXAMPLES):
            for j, resp in enumerate(ex.responses):
                naive[row, j] = torch.stack(_naive(model, ex, resp, q))
        mask = batch.mask
        assert torch.allclose(out.sum[mask], naive[..., 0][mask], atol=1e-5)
        assert torch.allclose(r_q["logprob"][mask], naive[..., 1][mask], atol=1e-5)
        assert torch.allclose(r_q["prob"][mask], naive[..., 2][mask], atol=1e-6)
        # the bare LM head (what alignkit applied before) is far off for these models
        scorer.logit_transform = IDENTITY
        assert (scorer(batch).sum - out.sum).abs().max() > 0.1


@pytest.mark.parametrize("family", sorted(RECURRENT))
def test_recurrent_layers_are_scored_one_response_per_row(family, model):
    recurrent = tiny_family_model(family)
    batch = collate(EXAMPLES, pad_id=2)
    scorer = SequenceScorer(recurrent)
    assert scorer.unpack and not SequenceScorer(model).unpack  # the tiny Llama packs
    with torch.no_grad():
        expected = naive_sequence_logps(recurrent, batch)
        assert torch.allclose(scorer(batch).sum, expected, atol=1e-5)
        # packed, the second response sees the first through the recurrence: wrong
        scorer.unpack = False
        packed = scorer(batch).sum
    assert torch.allclose(packed[:, 0], expected[:, 0], atol=1e-5)
    assert (packed[:, 1] - expected[:, 1]).abs().max() > 0.01


def test_logit_transform_by_hand():
    # scale, then soft-cap: 2 * tanh(0.5 * 4 / 2) = 2 tanh(1) = 1.5231883; -8 -> -2 tanh(2)
    t = LogitTransform(scale=0.5, softcap=2.0)
    got = t(torch.tensor([4.0, -8.0, 0.0]))
    assert torch.allclose(got, torch.tensor([2 * math.tanh(1.0), -2 * math.tanh(2.0), 0.0]))
    assert not t.linear and LogitTransform(scale=0.25).linear
    # the table: Granite divides by logits_scaling (1/4), Cohere multiplies by logit_scale
    assert logit_transform(tiny_family_model("granite")) == LogitTransform(scale=0.25)
    assert logit_transform(tiny_family_model("cohere")) == LogitTransform(scale=0.25)
    assert logit_transform(tiny_family_model("gemma2")) == LogitTransform(softcap=2.0)


def test_unknown_logit_post_processing_is_refused():
    """A model class alignkit does not know (e.g. remote code) whose config names a logit
    post-processing: refused when the scorer is built, not scored silently wrong."""
    from transformers import LlamaConfig, LlamaForCausalLM

    class SoftcappedLMForCausalLM(LlamaForCausalLM):
        pass

    config = LlamaConfig(**TINY, final_logit_softcapping=30.0)
    with pytest.raises(AlignkitError, match="final_logit_softcapping=30.0.*does not know"):
        SequenceScorer(SoftcappedLMForCausalLM(config))
    # the neutral value of a scale is not a post-processing
    assert logit_transform(SoftcappedLMForCausalLM(LlamaConfig(**TINY, logits_scaling=1.0))) == (
        IDENTITY
    )
