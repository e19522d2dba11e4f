"""How close to the machine's peak does a DPO step train? Matmul peak and achieved FLOP/s.

    python benchmarks/bench_flops.py                         # SmolLM2-135M, batch 8, 1 + 4 steps
    python benchmarks/bench_flops.py --model tiny            # seconds: a random 2-layer SmolLM2
    python benchmarks/bench_flops.py --lora --profile --json out.json

One run measures (1) the machine's matmul peak: GFLOP/s of float32 matmuls, and of bf16 ones
where the device multiplies bf16 natively (`alignkit.models.cpu_native_bf16()`, or CUDA), at
the shapes the step runs (the projections over the packed batch's rows, a weight gradient,
the LM head over the predicting positions) and at one large square; the peak is the best of
them; and (2) alignkit's DPO training step (`Trainer.train_step`, unchanged: the stages are
timed by wrapping `collate`, `step_loss`, `accelerator.backward`, gradient clipping and the
optimizer's `step` / `zero_grad` of this run only), after `--warmup` steps:

    stage      what runs                                          FLOPs counted
    data       collate + copy to the device                      -
    forward    packed decoder forward, LM head, DPO loss          2·N_dec·T + 2·N_head·P
    backward   accelerator.backward                               2·N_dec·T + 2·N_dec_train·T
                                                                  + 2·N_head·P (+2·N_head·P)
    optimizer  gradient clipping + fused AdamW + zero_grad        -
    step       everything, with the schedule and the metrics      forward + backward

T = the tokens the packed rows hold (prompt once, then chosen and rejected: every non-padding
position; padding is not counted), P = the positions whose hidden state predicts a response
token (the LM head runs on those only), N_dec = the decoder's matmul weights (>= 2-D,
embeddings excluded), N_dec_train those that train, N_head = vocab x hidden (tied or not).
This is the 6·N·T rule split where alignkit's step differs from a plain LM: full fine-tuning
costs 2 (forward) + 2 (gradients of the activations) + 2 (gradients of the weights) FLOPs per
weight and token; with LoRA the frozen weights need no weight gradient, so a step costs about
4·N·T (+6 per adapter weight and token): the "(2+2)N" count (LoRA's backward still propagates
through every frozen matmul; "LoRA Without Regret", Thinking Machines 2025, counts LoRA at
~2/3 of full fine-tuning's FLOPs). Attention's score and value matmuls (4·L²·d per row and
layer forward, over the whole padded L x L block as SDPA computes it) are not in the rule and
are reported on their own line; so is the "TRL-equivalent" 6·N_all·T_unpacked
(T_unpacked = |prompt|+|chosen| + |prompt|+|rejected|: the prompt twice, as an unpacked
trainer computes it), which overstates the work alignkit does.

The LM head's row (forward and backward) is measured on its own, at the step's shapes (P rows
of the hidden size, the model's head and its autocast): the head's share of the forward time
and FLOPs. `--profile` adds torch.profiler's top operators of one step (not counted).

On a shared machine timings measure contention: run it on a quiet one (`--threads` = the
cores), and quote the machine line printed first (`alignkit.commands.env.describe_machine`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dpo_vs_trl import alignkit_config, make_pairs  # noqa: E402
from bench_matmul import gflops  # noqa: E402

import alignkit.train.trainer as trainer_module  # noqa: E402
from alignkit.commands.env import describe_machine, machine_info  # noqa: E402
from alignkit.models import backbone_and_head, cpu_native_bf16  # noqa: E402
from alignkit.scoring.forward import _gather_logps  # noqa: E402
from alignkit.scoring.head import decoder_and_head  # noqa: E402
from alignkit.scoring.packing import PAD_SEGMENT  # noqa: E402
from alignkit.train.trainer import Trainer  # noqa: E402

# the shape of `--model tiny`: SmolLM2's architecture and tokenizer, 2 small layers
TINY = {
    "num_hidden_layers": 2,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
}


# ------------------------------------------------------------------- FLOP accounting


def matmul_params(model: torch.nn.Module) -> dict[str, int | bool]:
    """The weights the step multiplies by: {"dec": decoder weights (>= 2-D, input embeddings
    excluded; LoRA adapters included), "dec_train": those that train, "head": the LM head's
    weight (vocab x hidden), "head_trains": whether it gets a gradient, "all": every
    parameter (embeddings counted once when tied)}."""
    decoder, head = backbone_and_head(model)
    embedding = {id(p) for p in decoder.get_input_embeddings().parameters()}
    weights = [p for p in decoder.parameters() if p.dim() >= 2 and id(p) not in embedding]
    unique = {id(p): p for p in model.parameters()}
    return {
        "dec": sum(p.numel() for p in weights),
        "dec_train": sum(p.numel() for p in weights if p.requires_grad),
        "head": head.weight.numel(),
        "head_trains": bool(head.weight.requires_grad),
        "all": sum(p.numel() for p in unique.values()),
    }


def step_flops(params: dict, tokens: int, predicted: int) -> dict[str, float]:
    """Matmul FLOPs of one step over `tokens` packed (non-padding) positions of which
    `predicted` go through the LM head:

    forward  = 2·N_dec·T + 2·N_head·P
    backward = 2·N_dec·T (activation gradients) + 2·N_dec_train·T (weight gradients)
               + 2·N_head·P (+ 2·N_head·P when the head trains)
    Full fine-tuning gives 6·N·T for the decoder; LoRA about 4·N·T.
    """
    head_fwd = 2.0 * params["head"] * predicted
    head_bwd = head_fwd * (2 if params["head_trains"] else 1)
    dec_fwd = 2.0 * params["dec"] * tokens
    dec_bwd = dec_fwd + 2.0 * params["dec_train"] * tokens
    return {
        "forward": dec_fwd + head_fwd,
        "backward": dec_bwd + head_bwd,
        "lm_head_forward": head_fwd,
        "lm_head_backward": head_bwd,
    }


def attention_flops(rows: int, length: int, layers: int, q_width: int, train: bool) -> float:
    """Score and value matmuls of SDPA over `rows` padded rows of `length` (B x L x L, as it
    computes them under a mask): 4·L²·q_width per row and layer forward, twice that backward."""
    forward = 4.0 * rows * length**2 * q_width * layers
    return forward * (3 if train else 1)


# ------------------------------------------------------------------------- timing


def device_sync(device: torch.device):
    """What waits for `device` to finish its queued work (nothing on CPU)."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


class StageTimer:
    """Seconds per stage, from callables wrapped for one step only (`patched`)."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, stage: str, fn):
        def run(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.seconds[stage] += time.perf_counter() - start

        return run

    @contextlib.contextmanager
    def patched(self, owner, name: str, stage: str):
        """`owner.name` timed as `stage` inside the block (an instance's own attribute, or a
        module's global), restored after."""
        own = name in vars(owner)
        original = getattr(owner, name)
        setattr(owner, name, self.timed(stage, original))
        try:
            yield
        finally:
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


class FlopsTrainer(Trainer):
    """alignkit's Trainer with every training step's stages timed and its batches' shapes
    recorded (`steps`); `profile_step` (0-based) runs under torch.profiler."""

    def __init__(self, config, profile_step: int | None = None) -> None:
        super().__init__(config)
        self.timer = StageTimer(device_sync(self.device))
        self.steps: list[dict] = []
        self.batches: list[dict] = []
        self.profile_step, self.profile_table = profile_step, ""
        self.scorer = None

    def step_loss(self, scorer, batch, ref_table, q_diff):
        if not scorer.training:
            return super().step_loss(scorer, batch, ref_table, q_diff)
        rows, length = batch.input_ids.shape
        self.batches.append(
            {
                "rows": rows,
                "length": length,
                "tokens": int((batch.segments != PAD_SEGMENT).sum()),
                "predicted": int(batch.pred_index.numel()),
                "unpacked_tokens": batch.n_tokens(),
            }
        )
        return self.timer.timed("forward", super().step_loss)(scorer, batch, ref_table, q_diff)

    def train_step(self, scorer, optimizer, scheduler, *args, **kwargs):
        self.scorer, timer = scorer, self.timer
        timer.seconds.clear()
        wrapped = [
            (trainer_module, "collate", "data"),
            (self.accelerator, "backward", "backward"),
            (self.accelerator, "clip_grad_norm_", "optimizer"),
            (optimizer, "step", "optimizer"),
            (optimizer, "zero_grad", "optimizer"),
        ]
        profiling = len(self.steps) == self.profile_step
        with contextlib.ExitStack() as stack:
            for owner, name, stage in wrapped:
                stack.enter_context(timer.patched(owner, name, stage))
            if profiling:
                prof = stack.enter_context(torch.profiler.profile())
            timer.sync()
            start = time.perf_counter()
            out = super().train_step(scorer, optimizer, scheduler, *args, **kwargs)
            timer.sync()
            total = time.perf_counter() - start
        if profiling:
            sort = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
            self.profile_table = prof.key_averages().table(sort_by=sort, row_limit=18)
        step = {"step_s": total, **timer.seconds, "batches": self.batches, "profiled": profiling}
        self.steps.append(step)
        self.batches = []
        return out


def lm_head_seconds(trainer: FlopsTrainer, predicted: int, seconds: float) -> dict[str, float]:
    """(forward, backward) seconds of the LM head alone at the step's shapes: `predicted`
    hidden states through the model's head, float32 log-softmax gather, under the run's
    autocast; the head's weight keeps its requires_grad."""
    model = trainer.accelerator.unwrap_model(trainer.scorer).model
    _, head = decoder_and_head(model)
    sync = trainer.timer.sync
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(predicted, head.weight.shape[1], generator=gen).to(trainer.device)
    hidden.requires_grad_(True)
    targets = torch.randint(0, head.rows, (predicted,), generator=gen).to(trainer.device)

    def forward():
        return _gather_logps(head.logits(hidden, trainer.autocast), targets).sum()

    def both():
        forward().backward()

    out = {}
    for name, fn in (("forward", lambda: forward().detach()), ("forward+backward", both)):
        fn()  # warm-up
        sync()
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < seconds:
            fn()
            runs += 1
        sync()
        out[name] = (time.perf_counter() - start) / runs
    head.weight.grad = None
    return {"forward": out["forward"], "backward": out["forward+backward"] - out["forward"]}


# ---------------------------------------------------------------------- matmul peak


def matmul_peak(shapes: dict[str, tuple[int, int, int]], device, seconds: float) -> dict:
    """GFLOP/s of `m x k` by `k x n` matmuls per shape name and dtype: float32 always, bf16
    tensors where the device multiplies bf16 natively (CUDA, or `cpu_native_bf16()`)."""
    dtypes = [torch.float32]
    if device.type == "cuda" or cpu_native_bf16():
        dtypes.append(torch.bfloat16)
    sync = device_sync(device)
    out: dict[str, dict[str, float]] = {}
    for dtype in dtypes:
        name = "fp32" if dtype == torch.float32 else "bf16"
        out[name] = {}
        for label, (m, k, n) in shapes.items():
            a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            flops = 2.0 * m * k * n
            out[name][label] = gflops(lambda a=a, b=b: torch.mm(a, b), flops, seconds, sync)
    return out


def peak_shapes(config, rows: int, predicted: int, square: int) -> dict[str, tuple[int, int, int]]:
    """The matmuls of the step at its mean sizes (`rows` packed positions per micro-batch
    including padding, `predicted` LM-head rows) and a `square` one."""
    d, m = config.hidden_size, config.intermediate_size
    return {
        f"q/o projection {rows}x{d}x{d}": (rows, d, d),
        f"MLP up {rows}x{d}x{m}": (rows, d, m),
        f"MLP down {rows}x{m}x{d}": (rows, m, d),
        f"MLP weight grad {d}x{rows}x{m}": (d, rows, m),
        f"LM head {predicted}x{d}x{config.vocab_size}": (predicted, d, config.vocab_size),
        f"square {square}": (square, square, square),
    }


# --------------------------------------------------------------------------- report


def summarise(trainer: FlopsTrainer, params: dict, warmup: int) -> dict:
    """Per-step means over the measured steps (after `warmup`, the profiled one left out)."""
    measured = [s for s in trainer.steps[warmup:] if not s["profiled"]]
    if not measured:
        raise SystemExit(f"no measured step: --steps must exceed --warmup ({warmup})")
    n = len(measured)
    batches = [b for s in measured for b in s["batches"]]
    mean = {
        k: sum(s.get(k, 0.0) for s in measured) / n
        for k in ("step_s", "data", "forward", "backward", "optimizer")
    }
    tokens = sum(b["tokens"] for b in batches) / n
    predicted = sum(b["predicted"] for b in batches) / n
    flops = step_flops(params, int(tokens), int(predicted))
    cfg = trainer.accelerator.unwrap_model(trainer.scorer).model.config
    q_width = cfg.num_attention_heads * getattr(
        cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads
    )
    attention = (
        sum(
            attention_flops(b["rows"], b["length"], cfg.num_hidden_layers, q_width, True)
            for b in batches
        )
        / n
    )
    unpacked = sum(b["unpacked_tokens"] for b in batches) / n
    return {
        "measured_steps": n,
        "seconds": mean,
        "fastest_step_s": min(s["step_s"] for s in measured),
        "flops": flops,
        "tokens_per_step": tokens,
        "unpacked_tokens_per_step": unpacked,
        "predicted_per_step": predicted,
        "padded_positions_per_step": sum(b["rows"] * b["length"] for b in batches) / n,
        "mean_rows": sum(b["rows"] for b in batches) / len(batches),
        "mean_length": sum(b["length"] for b in batches) / len(batches),
        "attention_flops": attention,
        "trl_equivalent_flops": 6.0 * params["all"] * unpacked,
    }


def table(summary: dict, head: dict[str, float], peak: float, peak_name: str) -> str:
    sec, flops = summary["seconds"], summary["flops"]
    other = sec["step_s"] - sec["data"] - sec["forward"] - sec["backward"] - sec["optimizer"]
    rows = [
        ("data (collate)", sec["data"], None),
        ("forward", sec["forward"], flops["forward"]),
        ("  LM head (alone)", head["forward"], flops["lm_head_forward"]),
        ("backward", sec["backward"], flops["backward"]),
        ("  LM head (alone)", head["backward"], flops["lm_head_backward"]),
        ("optimizer (clip+AdamW)", sec["optimizer"], None),
        ("other (schedule, metrics)", other, None),
        ("step", sec["step_s"], flops["forward"] + flops["backward"]),
    ]
    lines = [
        f"{'stage':<26}{'s/step':>9}{'share':>7}{'GFLOP':>9}{'GFLOP/s':>9}"
        f"{f'% of {peak_name} peak':>18}"
    ]
    for name, seconds, work in rows:
        share = f"{seconds / sec['step_s']:.0%}" if not name.startswith(" ") else ""
        if work is None:
            lines.append(f"{name:<26}{seconds:>9.3f}{share:>7}{'-':>9}{'-':>9}{'-':>18}")
            continue
        rate = work / seconds / 1e9 if seconds > 0 else float("nan")
        lines.append(
            f"{name:<26}{seconds:>9.3f}{share:>7}{work / 1e9:>9.2f}{rate:>9.1f}{rate / peak:>18.1%}"
        )
    return "\n".join(lines)


def tiny_model(workdir: Path) -> str:
    """A random 2-layer SmolLM2 (`TINY`) with the embedded model's tokenizer, saved."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from alignkit.models import load_tokenizer, resolve_model

    source = resolve_model("default")
    config = AutoConfig.from_pretrained(source)
    for key, value in TINY.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    path = workdir / "tiny-model"
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    load_tokenizer(source).save_pretrained(path)
    return str(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="default",
        help="'default' (the embedded SmolLM2-135M-Instruct), 'tiny' (a random "
        "2-layer SmolLM2 with its tokenizer: a quick run), or a path / HF id",
    )
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per step (default 8)")
    ap.add_argument(
        "--steps", type=int, default=5, help="optimizer steps, warm-up included (default 5)"
    )
    ap.add_argument(
        "--warmup", type=int, default=1, help="first steps left out of the means (default 1)"
    )
    ap.add_argument(
        "--pairs", type=int, help="training pairs (default: batch size x steps, one epoch)"
    )
    ap.add_argument(
        "--lora", action="store_true", help="train a LoRA adapter (alignkit's default recipe)"
    )
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="alignkit's --gradient-checkpointing (recomputes the forward: its FLOPs "
        "are not added to the count)",
    )
    ap.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="training precision (default auto: bf16 autocast only with native bf16); "
        "%% of peak is taken against the peak of the dtype the step multiplies in",
    )
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument(
        "--peak-seconds", type=float, default=1.0, help="seconds per matmul shape (default 1)"
    )
    ap.add_argument(
        "--square", type=int, help="size of the square matmul (default 1024 on CPU, 4096 on CUDA)"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="print torch.profiler's top operators of the first measured step (that "
        "step is then left out of the means)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    args = ap.parse_args(argv)
    for name in ("batch_size", "steps", "pairs", "threads", "square"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    if args.warmup < 0 or args.steps <= args.warmup + args.profile:
        ap.error("--steps must exceed --warmup (and the profiled step with --profile)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    machine = describe_machine(args.precision)
    print(machine, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-flops-") as tmp:
        workdir = Path(tmp)
        data = workdir / "pairs.jsonl"
        pairs = make_pairs(args.pairs or args.batch_size * args.steps, 112, 48)
        data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        model = tiny_model(workdir) if args.model == "tiny" else args.model
        spec = {
            "model": model,
            "data": str(data),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "max_length": 100_000,
            "precision": args.precision,
            "lora": args.lora,
            "alignkit_gradient_checkpointing": args.gradient_checkpointing,
        }
        trainer = FlopsTrainer(
            alignkit_config(spec, workdir / "run"), args.warmup if args.profile else None
        )
        trainer.run()
        model_obj = trainer.accelerator.unwrap_model(trainer.scorer).model
        params = matmul_params(model_obj)
        summary = summarise(trainer, params, args.warmup)
        rows = round(summary["mean_rows"] * summary["mean_length"])
        predicted = round(summary["predicted_per_step"] / max(1, trainer.config.grad_accum))
        head = lm_head_seconds(trainer, predicted, args.peak_seconds)
        device = trainer.device
        square = args.square or (4096 if device.type == "cuda" else 1024)
        shapes = peak_shapes(model_obj.config, rows, predicted, square)
        peaks = matmul_peak(shapes, device, args.peak_seconds)
    dtype = "bf16" if trainer.autocast == torch.bfloat16 else "fp32"
    if dtype not in peaks:  # bf16 asked for without native bf16: compare with float32's
        dtype = "fp32"
    peak = max(peaks[dtype].values())
    step_flop = summary["flops"]["forward"] + summary["flops"]["backward"]
    achieved = step_flop / summary["seconds"]["step_s"] / 1e9
    print(f"\nmatmul GFLOP/s on {device} ({torch.get_num_threads()} torch threads):")
    for name, values in peaks.items():
        for label, value in values.items():
            print(f"  {name:<5} {label:<34} {value:9.1f}")
        print(f"  {name:<5} {'peak (best of the above)':<34} {max(values.values()):9.1f}")
    print(
        f"\nDPO step: {args.model}{' LoRA' if args.lora else ', full fine-tuning'}, "
        f"batch {args.batch_size}, {dtype} matmuls (--precision {args.precision}), "
        f"{summary['measured_steps']} measured steps after {args.warmup} warm-up; per step "
        f"{summary['tokens_per_step']:.0f} tokens in packed rows "
        f"({summary['padded_positions_per_step']:.0f} positions with padding, "
        f"{summary['unpacked_tokens_per_step']:.0f} unpacked), "
        f"{summary['predicted_per_step']:.0f} LM-head rows; N_dec {params['dec'] / 1e6:.1f}M "
        f"({params['dec_train'] / 1e6:.1f}M train), N_head {params['head'] / 1e6:.1f}M"
    )
    print(table(summary, head, peak, dtype))
    print(
        f"\noverall: {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of the measured {dtype} "
        f"matmul peak ({peak:.1f} GFLOP/s); "
        f"{summary['tokens_per_step'] / summary['seconds']['step_s']:.1f} packed tokens/s, "
        f"{summary['unpacked_tokens_per_step'] / summary['seconds']['step_s']:.1f} unpacked"
    )
    fastest = step_flop / summary["fastest_step_s"] / 1e9
    print(
        f"fastest measured step: {fastest:.1f} GFLOP/s = {fastest / peak:.1%} of peak (the peak "
        "is a best-of-rounds figure too: on a busy machine compare these two)"
    )
    attn = summary["attention_flops"]
    trl = summary["trl_equivalent_flops"] / summary["seconds"]["step_s"] / 1e9
    print(
        f"not counted: attention scores/values {attn / 1e9:.2f} GFLOP/step "
        f"(+{attn / step_flop:.0%}); TRL-equivalent 6·N_all·T_unpacked {trl:.1f} GFLOP/s "
        f"({trl / peak:.1%} of peak)"
    )
    if trainer.profile_table:
        print("\ntop operators of one step (torch.profiler):\n" + trainer.profile_table)
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1) and device.type == "cpu":
        print(f"WARNING: load average {load:.1f} on {os.cpu_count()} cores: timings under load")
    if args.json:
        from alignkit.io import atomic_write_text

        report = {
            "machine": machine_info(args.precision),
            "machine_text": machine,
            "args": vars(args),
            "params": params,
            "summary": summary,
            "lm_head_seconds": head,
            "matmul_gflops": peaks,
            "peak_gflops": peak,
            "peak_dtype": dtype,
            "achieved_gflops": achieved,
            "fraction_of_peak": achieved / peak,
            "fastest_step_fraction_of_peak": fastest / peak,
            "steps": trainer.steps,
            "loadavg": load,
        }
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
