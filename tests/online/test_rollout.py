"""The rollout (`alignkit.online.rollout`): the per-token packed forward of the K samples of a
prompt, the LoRA reference (the adapter disabled), training on the sampled token ids."""

from __future__ import annotations

import torch
from conftest import close

from alignkit.data.tokenize import Encoded
from alignkit.online.rollout import Reference, RLScorer
from alignkit.scoring.forward import naive_sequence_logps
from alignkit.scoring.packing import collate

# --------------------------------------------------- packed forward, reference


EXAMPLES = [  # prompt once, then K = 3 responses of different lengths
    Encoded([1, 5, 6, 7], [[8, 9, 2], [10, 2], [11, 12, 13, 2]], [0, 0, 0], [False] * 3, True, 0),
    Encoded([1, 3], [[14, 15, 16, 17, 2], [4, 2], [20, 2]], [0, 0, 0], [False] * 3, True, 1),
]


def test_rl_scorer_packs_the_k_samples_of_a_prompt(tiny_model) -> None:
    from alignkit.models import load_causal_lm

    model = load_causal_lm(tiny_model)
    batch = collate(EXAMPLES, pad_id=2)
    assert batch.input_ids.shape[0] == 2  # one row per prompt: prompt | y1 | y2 | y3
    out = RLScorer(model, value_head=True)(batch)
    # per-token log-probs of the packed row, summed, equal each response scored on its own
    with torch.no_grad():
        close(out.logps.sum(1).view(2, 3), naive_sequence_logps(model, batch), atol=1e-4)
    assert out.mask.sum(1).tolist() == [3, 2, 4, 5, 2, 2]
    assert out.values is not None and out.values.abs().sum() == 0  # zero-initialised head
    assert bool((out.entropy[out.mask] > 0).all()) and not out.entropy.requires_grad
    # the reference of a full fine-tune is a frozen copy with the same log-probs at the start
    scorer = RLScorer(model)
    reference = Reference(scorer)
    assert reference.frozen is not None and reference.frozen.model is not model
    assert not any(p.requires_grad for p in reference.frozen.parameters())
    assert torch.allclose(reference.logps(scorer, batch, None), scorer(batch).logps)


def test_lora_reference_is_the_adapter_disabled(tiny_model) -> None:
    from alignkit.models import LoraSettings, load_causal_lm

    model = load_causal_lm(tiny_model, lora=LoraSettings(4, 8, 0.1, ["q_proj", "v_proj"]))
    scorer = RLScorer(model)
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}  # LoRA dropout off: log-probs deterministic
    with torch.no_grad():  # move the adapter away from the base model
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    batch = collate(EXAMPLES, pad_id=2)
    reference = Reference(scorer)
    assert reference.frozen is None  # no second copy in memory
    ref = reference.logps(scorer, batch, None)
    base = load_causal_lm(tiny_model)
    with torch.no_grad():
        close(ref.sum(1).view(2, 3), naive_sequence_logps(base, batch), atol=1e-4)
    assert not torch.allclose(ref, scorer(batch).logps)  # the policy itself has moved


def test_rl_trains_on_the_sampled_tokens_not_a_retokenization() -> None:
    """Prompt [1, 2], limit 6 (room 4 for a response), EOS 0. Sampled ids replace the
    re-tokenized ones: a finished sample gets EOS, a cut one none (an empty cut one gets EOS,
    as the encoder does), and a long one is cut to the room left by the prompt."""
    from alignkit.data.tokenize import Encoded
    from alignkit.online.rollout import sampled_encoding
    from alignkit.online.samples import Sampled

    e = Encoded([1, 2], [[5, 0], [6, 0], [7, 0]], [0.0] * 3, [False] * 3, False, 0)
    sample = Sampled("p", ["x", "y", "z"], [0.0] * 3, [True, False, False], [(9, 9), (8,), ()])
    assert sampled_encoding(e, sample, [0], 6).responses == [[9, 9, 0], [8], [0]]
    long = Sampled("p", ["x"], [0.0], [True], [(3, 3, 3, 3, 3)])
    assert sampled_encoding(
        Encoded([1, 2], [[5, 0]], [0.0], [False], False, 0), long, [0], 6
    ).responses == [[3, 3, 3, 3]]
    without = Sampled("p", ["x", "y", "z"], [0.0] * 3, [True, True, True])  # an endpoint
    assert sampled_encoding(e, without, [0], 6) is e


def test_hf_generation_returns_the_sampled_token_ids(tiny_model) -> None:
    """The ids a completion carries decode to its text (EOS and padding dropped)."""
    from alignkit.inference.generation import SamplingConfig, generate_completions
    from alignkit.models import load_inference_model

    loaded = load_inference_model(tiny_model)
    sampling = SamplingConfig(max_new_tokens=6, do_sample=True, batch_size=3, seed=0)
    out = generate_completions(
        loaded.model, loaded.tokenizer, ["a", "bb", "ccc"], sampling, None, False
    )
    for c in out:
        assert 0 < len(c.token_ids) <= 6 or c.finished
        assert loaded.tokenizer.eos_token_id not in c.token_ids
        text = loaded.tokenizer.decode(list(c.token_ids), skip_special_tokens=True).strip()
        assert text == c.text
