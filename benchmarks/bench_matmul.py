"""Does bf16 autocast pay on this machine? float32 vs bf16 matmul GFLOP/s on the CPU.

    python benchmarks/bench_matmul.py                       # 512x576 by 576x1536, 2 s each
    python benchmarks/bench_matmul.py --m 8 --seconds 1     # thin: a decoding step's shape

The default shape is a SmolLM2-135M MLP projection over 512 tokens (hidden 576, MLP 1536).
Three ways: float32, bf16 autocast on float32 tensors (what `--precision bf16` runs: the
weight is cast every call) and bf16 tensors (the matmul alone). Without native bf16
(AVX512-BF16 or AMX) oneDNN emulates bf16 and the bf16 rows are several times slower;
`--precision auto` then trains in float32 (`alignkit env` shows the choice).
"""

from __future__ import annotations

import argparse
import time

import torch

from alignkit.commands.env import describe_machine


def gflops(fn, flops: float, seconds: float, sync=lambda: None) -> float:
    """Best-of-rounds GFLOP/s of `fn` over about `seconds` after a warm-up; `sync` waits for
    the device (CUDA runs asynchronously: `torch.cuda.synchronize`)."""
    for _ in range(3):
        fn()
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            fn()
        sync()
        best = max(best, 5 * flops / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=512, help="rows (tokens)")
    parser.add_argument("--k", type=int, default=576, help="inner dimension (hidden size)")
    parser.add_argument("--n", type=int, default=1536, help="columns (MLP size)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_machine("auto"))
    torch.manual_seed(0)
    a, b = torch.randn(args.m, args.k), torch.randn(args.k, args.n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    flops = 2.0 * args.m * args.k * args.n

    def autocast_bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.mm(a, b)

    rows = {
        "float32": gflops(lambda: torch.mm(a, b), flops, args.seconds),
        "bf16 autocast": gflops(autocast_bf16, flops, args.seconds),
        "bf16 tensors": gflops(lambda: torch.mm(a16, b16), flops, args.seconds),
    }
    print(f"{args.m}x{args.k} by {args.k}x{args.n}, {torch.get_num_threads()} torch threads")
    for name, value in rows.items():
        print(f"  {name:<14} {value:8.1f} GFLOP/s  ({value / rows['float32']:.2f}x float32)")


if __name__ == "__main__":
    main()
