"""Throughput of data selection (`alignkit select deft|real`), on synthetic data.

    python benchmarks/bench_select.py qdiff [--responses 1000000]
    python benchmarks/bench_select.py rq [--model default] [--examples 64]
    python benchmarks/bench_select.py real [--prompts 250000 500000 1000000] [--dim 576]
    python benchmarks/bench_select.py all

qdiff: counting Q_pos / Q_neg over N synthetic responses (token ids as Python lists, as
       `encode_records` produces them), against the former flatten-to-a-list implementation.
rq:    R_Q scoring (DEFT selection path: backbone + one d-vector, log-prob form) as a ratio
       to a bare forward pass of the same model (`model(...)`, logits included) on the
       same packed, length-sorted batches; also the backbone alone, the trainer's
       SequenceScorer path (log-probs + R_Q) and end-to-end `score_r_q` (with collation).
real:  per-prompt REAL selection (every strategy) on P prompts x 4 given unit embeddings,
       at several P to show linear growth (target: <= 10 s at 1M prompts).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from alignkit.commands.env import describe_machine


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ Q_diff


def bench_qdiff(n_responses: int, vocab: int, seed: int = 0) -> None:
    from alignkit.data.tokenize import Encoded
    from alignkit.scoring.deft import token_distributions

    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 89, size=n_responses)  # mean 48 tokens
    flat = rng.integers(0, vocab, size=int(lengths.sum()))
    cuts = np.concatenate([[0], np.cumsum(lengths)])
    t = time.perf_counter()
    responses = [flat[a:b].tolist() for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    encoded = [
        Encoded([1], [responses[i], responses[i + 1]], [1.0, 0.0], [True, False], True, i // 2)
        for i in range(0, n_responses - 1, 2)
    ]
    build = time.perf_counter() - t
    tokens = int(lengths[: 2 * len(encoded)].sum())
    print(f"qdiff: {2 * len(encoded):,} responses, {tokens:,} tokens, vocab {vocab:,} "
          f"(building the lists took {build:.1f} s)")  # fmt: skip
    seconds = _timed(lambda: token_distributions(encoded, vocab, [0, 1, 2]).q_diff)
    print(f"  token_distributions: {seconds:.2f} s = {2 * len(encoded) / seconds:,.0f} responses/s"
          f" = {tokens / seconds / 1e6:.1f} M tokens/s")  # fmt: skip
    pos = [e.responses[0] for e in encoded]

    def former() -> None:  # the previous implementation: one Python list of every token
        flat_list = [t for seq in pos for t in seq]
        torch.bincount(torch.tensor(flat_list, dtype=torch.long), minlength=vocab)

    old = _timed(former)
    half = int(sum(len(r) for r in pos))
    print(f"  former list-flatten counting (Q_pos only, {half:,} tokens): {old:.2f} s = "
          f"{half / old / 1e6:.1f} M tokens/s")  # fmt: skip


# -------------------------------------------------------------------------------- R_Q


def _synthetic_pairs(n: int, vocab: int, seed: int, prompt: tuple[int, int], resp: tuple[int, int]):
    from alignkit.data.tokenize import Encoded

    rng = random.Random(seed)

    def ids(lo: int, hi: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(rng.randint(lo, hi))]

    return [
        Encoded(ids(*prompt), [ids(*resp), ids(*resp)], [1.0, 0.0], [True, False], True, i)
        for i in range(n)
    ]


def bench_rq(model_name: str, n: int, batch_size: int, rounds: int, precision: str) -> None:
    from alignkit.data.batching import sorted_chunks
    from alignkit.models import autocast_dtype, backbone_and_head, load_causal_lm, load_tokenizer
    from alignkit.scoring.deft import q_diff_from_encoded
    from alignkit.scoring.forward import SequenceScorer, block_attention_mask
    from alignkit.scoring.packing import collate
    from alignkit.select.deft import DistributionRewardScorer, chosen_only, score_r_q

    tok = load_tokenizer(model_name)
    model = load_causal_lm(model_name).eval()
    autocast = autocast_dtype(precision, torch.device("cpu"))  # type: ignore[arg-type]
    encoded = _synthetic_pairs(n, len(tok), 0, (48, 160), (24, 120))
    q = q_diff_from_encoded(encoded, len(tok), tok.all_special_ids)
    chosen = [chosen_only(e) for e in encoded]
    batches = [(idx, collate([chosen[i] for i in idx], tok.pad_token_id, 1))
               for idx in sorted_chunks([e.length for e in chosen], batch_size)]  # fmt: skip
    tokens = sum(int((b.segments >= 0).sum()) for _, b in batches)
    decoder, _ = backbone_and_head(model)
    rq, seq = DistributionRewardScorer(model, q), SequenceScorer(model)

    def ctx() -> torch.autocast:
        return torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None)

    def bare(b) -> None:
        with ctx():
            model(input_ids=b.input_ids, attention_mask=block_attention_mask(b.segments),
                  position_ids=b.position_ids, use_cache=False)  # fmt: skip

    def backbone(b) -> None:
        with ctx():
            decoder(input_ids=b.input_ids, attention_mask=block_attention_mask(b.segments),
                    position_ids=b.position_ids, use_cache=False)  # fmt: skip

    def end_to_end(idx: list[int]) -> None:  # sorting + collation + progress bar included
        part = [encoded[i] for i in idx]
        score_r_q(model, part, q, pad_id=tok.pad_token_id, batch_size=batch_size, autocast=autocast)

    methods = {
        "bare model forward (logits)": bare,
        "backbone only (no LM head)": backbone,
        "R_Q scorer (selection path)": lambda b: rq(b, autocast=autocast),
        "score_r_q end to end": end_to_end,
        "SequenceScorer logps + R_Q": lambda b: seq(b, q_diff=q, autocast=autocast),
    }
    best = {name: [float("inf")] * len(batches) for name in methods}
    with torch.no_grad():
        bare(batches[-1][1])  # warm-up
        for _ in range(rounds):  # interleaved per batch: background load hits all alike
            for i, (idx, b) in enumerate(batches):
                for name, fn in methods.items():
                    arg = idx if fn is end_to_end else b
                    best[name][i] = min(best[name][i], _timed(lambda fn=fn, a=arg: fn(a)))
    print(f"rq: {model_name} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params), "
          f"{n} examples (chosen only), {len(batches)} batches of {batch_size}, {tokens:,} "
          f"tokens, autocast={autocast}, torch threads={torch.get_num_threads()}")  # fmt: skip
    base = sum(best["bare model forward (logits)"])
    for name in methods:
        total = sum(best[name])
        print(f"  {name:<30} {total:7.2f} s  {tokens / total:8.0f} tok/s  ratio {base / total:.2f}")
    print(f"  (best of {rounds} per batch; ratio = throughput / bare forward's; target >= 0.9)")


# ------------------------------------------------------------------------------- REAL


def _unit_embeddings(rows: int, dim: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """(rows, dim) unit vectors drawn from a pool of 2^16 random ones (fast to make; the
    selection's cost does not depend on the values)."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.nn.functional.normalize(torch.randn(1 << 16, dim, generator=gen), dim=-1)
    out = torch.empty(rows, dim, dtype=dtype)
    step = 1 << 18
    for start in range(0, rows, step):
        n = min(step, rows - start)
        out[start : start + n] = pool[torch.randint(0, len(pool), (n,), generator=gen)].to(dtype)
    return out


def bench_real(sizes: list[int], k: int, dim: int, dtype: torch.dtype, repeat: int) -> None:
    from alignkit.select.real import STRATEGIES, select_per_prompt

    largest = max(sizes)
    t = time.perf_counter()
    emb = _unit_embeddings(largest * k, dim, dtype, 0)
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(1, 11, (largest * k,), generator=gen).double()
    lengths = torch.randint(5, 700, (largest * k,), generator=gen)
    print(f"real: {k} responses per prompt, dim {dim} ({dtype}), embeddings "
          f"{emb.numel() * emb.element_size() / 1e9:.1f} GB, made in {time.perf_counter() - t:.0f} s; "
          f"filters: max_length 512, min_score_ratio 1.5, ties dropped")  # fmt: skip
    header = "  prompts    " + "".join(f"{s:>18}" for s in STRATEGIES)
    print(header)
    first: dict[str, float] = {}
    for n in sorted(sizes):
        offsets = torch.arange(0, n * k + 1, k)
        cells = []
        for strategy in STRATEGIES:
            run = partial(select_per_prompt, emb[: n * k], offsets, scores[: n * k], strategy,
                          lengths=lengths[: n * k], max_length=512, min_score_ratio=1.5)  # fmt: skip
            seconds = min(_timed(run) for _ in range(repeat))
            first.setdefault(strategy, seconds / n)
            cells.append(f"{seconds:6.2f} s (x{seconds / n / first[strategy]:.2f})")
        print(f"  {n:>9,}  " + "".join(f"{c:>18}" for c in cells))
    print(
        f"  (best of {repeat}; x = time per prompt relative to the smallest size: ~1.00 = linear)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["qdiff", "rq", "real", "all"])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--vocab", type=int, default=49_152)
    parser.add_argument("--model", default="default")
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--prompts", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_machine(args.precision), flush=True)  # --precision: the rq benchmark's
    if args.what in ("qdiff", "all"):
        bench_qdiff(args.responses, args.vocab)
    if args.what in ("rq", "all"):
        bench_rq(args.model, args.examples, args.batch_size, args.rounds, args.precision)
    if args.what in ("real", "all"):
        bench_real(args.prompts, args.k, args.dim, getattr(torch, args.dtype), args.rounds)


if __name__ == "__main__":
    main()
