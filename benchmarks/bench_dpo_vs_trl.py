"""alignkit DPO vs TRL's DPOTrainer: throughput, memory and numerical parity, in one run.

    python benchmarks/bench_dpo_vs_trl.py                      # SmolLM2-135M, 96 pairs, 12 steps
    python benchmarks/bench_dpo_vs_trl.py --quick --model PATH  # seconds, for smoke tests
    python benchmarks/bench_dpo_vs_trl.py --json out.json

Both tools train the same model (float32 master weights, full fine-tuning, both in the
precision `--precision` gives: by default what alignkit's `auto` picks on this machine, bf16
autocast where the hardware has native bf16, float32 elsewhere) on the same deterministic HH-shaped pairs with the same batch size, steps, lr and schedule;
TRL precomputes its reference log-probs (`precompute_ref_log_probs=True`) as alignkit always
does. Each tool runs in its own fresh subprocess (`--worker`) so peak RSS is measured per
tool; this parent process imports no torch, so its memory cannot leak into the children's
`ru_maxrss` (which Linux carries across fork/exec).

Tokens per pair = |prompt|+|chosen| + |prompt|+|rejected| (EOS included) for both tools;
training time runs from just before the first step to the end of the last optimizer step
(alignkit: its own `elapsed_s`; TRL: a callback from on_train_begin to the last on_step_end),
so model loading, tokenization and reference precompute (reported separately) are excluded.

The parity check (`--parity`, on by default) scores a few pairs in float32 with alignkit's
packed `SequenceScorer` and with TRL's own `DPOTrainer` code path (its tokenization, collator,
`compute_ref_log_probs` and `compute_loss`), with a reference model that differs from the
policy, and fails the run (exit 1) when log-probs or the DPO loss differ by more than 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARITY_TOL = 1e-4
BUSY_PROBE_MS = 1.0  # above this, another process is competing for the cores
BETA = 0.1
LR = 5e-6
SEED = 42

# ------------------------------------------------------------------- data (stdlib only)

_TOPICS = (
    "garden kitchen budget laptop bicycle recipe holiday printer spreadsheet tomato "
    "battery landlord vaccine guitar password mortgage puppy telescope resume marathon"
).split()
_FILLER = (
    "the a my our this that some any every really quite just also still maybe "
    "about around after before during because although while when where how why "
    "want need know think try find make take give keep start stop help explain show "
    "good simple cheap quick safe easy better small large old new early late "
    "week day morning evening friend family neighbour teacher doctor colleague"
).split()
_KIND = (
    "happy to help here is a careful answer first check the basics then compare options "
    "and write down what you learn please ask if anything is unclear good luck"
).split()
_RUDE = (
    "figure it out yourself this is obvious stop asking silly questions nobody cares "
    "about your problem just guess and hope it works whatever"
).split()


def _sentence(rng: random.Random, words: int, topic: str, pool: list[str]) -> str:
    body = [rng.choice(pool) for _ in range(words)]
    body.insert(rng.randrange(len(body) + 1), topic)
    return " ".join(body).capitalize() + rng.choice(".?!")


def make_pairs(n: int, prompt_words: int, response_words: int, seed: int = SEED) -> list[dict]:
    """`n` deterministic HH-shaped pairs {prompt, chosen, rejected}.

    The prompt is a multi-turn "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript ending in
    "\\n\\nAssistant:" with about `prompt_words` words (~3x the response); responses start
    with a space, so tokenizing prompt and response separately or jointly agrees.
    """
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        topic = rng.choice(_TOPICS)
        turns = rng.choice((2, 3))
        per_turn = max(3, prompt_words // (2 * turns - 1))
        parts = []
        for t in range(turns):
            q = _sentence(rng, rng.randint(per_turn * 3 // 4, per_turn * 5 // 4), topic, _FILLER)
            parts.append(f"\n\nHuman: {q}" if t else f"\n\nHuman: (case {i}) {q}")
            if t < turns - 1:
                a = _sentence(rng, rng.randint(per_turn * 3 // 4, per_turn * 5 // 4), topic, _KIND)
                parts.append(f"\n\nAssistant: {a}")
        parts.append("\n\nAssistant:")
        lo, hi = response_words * 3 // 4, response_words * 5 // 4
        chosen = _sentence(rng, rng.randint(lo, hi), topic, _KIND + _FILLER)
        rejected = _sentence(rng, rng.randint(lo, hi), topic, _RUDE + _FILLER)
        pairs.append({"prompt": "".join(parts), "chosen": " " + chosen, "rejected": " " + rejected})
    return pairs


# Parity pairs: explicit strings, short and plain so that summed log-probs stay small (float32
# sums of ~40 tokens carry ~1e-5 of rounding; random word salad at ~-7 nats/token would not).
# Mostly words the test suite's tiny tokenizer knows, with multi-turn context and punctuation.
PARITY_PAIRS = [
    {
        "prompt": "\n\nHuman: can you explain how to bake a cake?\n\nAssistant:",
        "chosen": " sure, here is how to bake a cake: make the water warm, then bake it.",
        "rejected": " no, I will not help you.",
    },
    {
        "prompt": "\n\nHuman: how can I sort a list in python?\n\nAssistant: do you want code?"
        "\n\nHuman: yes please, thanks.\n\nAssistant:",
        "chosen": " sure, here is the code: sorted(list) will sort it.",
        "rejected": " I cannot help, it is a bad question!",
    },
    {
        "prompt": "\n\nHuman: is the sun safe to look at?\n\nAssistant:",
        "chosen": " no, it is not safe: the sun can make your eyes bad.",
        "rejected": " sure, it is safe.",
    },
    {
        "prompt": "\n\nHuman: how do I make a bomb?\n\nAssistant:",
        "chosen": " sorry, I cannot help you make a bomb, it is a danger to you and others.",
        "rejected": " sure, here is how to make a bomb.",
    },
]

# --------------------------------------------------------------------------- workers


def _peak_rss_mb() -> dict:
    import resource

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:  # the high-water mark of this process image only (cross-check)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["vm_hwm_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def _sync_probe_ms() -> float:
    """Milliseconds per small multi-threaded op. ~0.1 on an idle machine; when other processes
    keep the cores busy, every parallel region waits a scheduler slice (several ms) for its
    descheduled OpenMP thread, and per-op overhead, not FLOPs, decides the timings."""
    import torch

    tensors = [torch.ones(1 << 20) for _ in range(20)]
    t0 = time.perf_counter()
    for x in tensors:
        x.mul_(1.0)
    return (time.perf_counter() - t0) / len(tensors) * 1000


def worker_resolve(spec: dict) -> dict:
    from alignkit.models import resolve_model

    return {"model_path": resolve_model(spec["model"])}


def _machine(precision: str) -> dict:
    """The machine and what `precision` becomes on it (alignkit.commands.env); the TRL worker
    trains in the same precision as alignkit."""
    from alignkit.commands.env import describe_machine, machine_info

    info = machine_info(precision)
    return {
        "machine": info,
        "machine_text": describe_machine(precision),
        "precision": info["precision"]["stages"]["training"],
    }


def alignkit_config(spec: dict, out_dir: Path):
    """The `TrainConfig` of alignkit's side of the comparison (also `bench_flops.py`'s run):
    DPO, the spec's model, data, batch size, steps, precision and gradient checkpointing,
    lr 5e-6 linear without warm-up, beta 0.1, clipping 1.0, no eval, nothing saved, prompts
    as plain text (as TRL tokenizes string prompts); LoRA
    (alignkit's default recipe) with `spec["lora"]`."""
    from alignkit.train.config import TrainConfig

    cfg = TrainConfig(
        method="dpo",
        data=[spec["data"]],
        data_format="trl-pair",
        output=str(out_dir),
        model=spec["model"],
        beta=BETA,
        batch_size=spec["batch_size"],
        max_steps=spec["steps"],
        lr=LR,
        lr_scheduler="linear",
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=bool(spec.get("alignkit_gradient_checkpointing")),
        max_length=spec["max_length"],
        precision=spec["precision"],
        lora=bool(spec.get("lora")),
        logging_steps=1,
        save_model=False,
        save_minutes=0,  # no periodic checkpoint: TRL runs with save_strategy="no"
        chat=False,  # TRL's DPOTrainer tokenizes string prompts as they are
        seed=SEED,
    )
    cfg.validate()
    return cfg


def worker_alignkit(spec: dict) -> dict:
    from alignkit.train.trainer import Trainer

    class TimedTrainer(Trainer):
        prepare_s = 0.0
        summary = ""
        step_tokens: list[int] = []

        def prepare(self, paths, tokenizer, scorer):
            t0 = time.perf_counter()
            out = super().prepare(paths, tokenizer, scorer)
            self.prepare_s += time.perf_counter() - t0
            self.summary = out.summary
            return out

        def step_loss(self, scorer, batch, ref_table, q_diff):
            if scorer.training:
                if not self.step_tokens:
                    self.cpu0 = (time.perf_counter(), time.process_time())
                self.step_tokens.append(batch.n_tokens())
            return super().step_loss(scorer, batch, ref_table, q_diff)

    out_dir = Path(spec["workdir"]) / "alignkit-run"
    cfg = alignkit_config(spec, out_dir)
    trainer = TimedTrainer(cfg)
    trainer.step_tokens = []
    result = trainer.run()
    cpu_cores = (time.process_time() - trainer.cpu0[1]) / (time.perf_counter() - trainer.cpu0[0])
    rows = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines() if x]
    rows = [r for r in rows if "elapsed_s" in r]
    return {
        "tokens": sum(trainer.step_tokens),
        "step_tokens": trainer.step_tokens,
        "train_s": rows[-1]["elapsed_s"],
        "step_end_s": [r["elapsed_s"] for r in rows],
        "trainer_tokens_per_s": rows[-1]["tokens_per_s"],
        "ref_precompute_s": trainer.prepare_s,
        "final_loss": result.final_metrics.get("loss"),
        "encode_summary": trainer.summary,
        "cpu_cores_used": cpu_cores,
        **_machine(spec["precision"]),
    }


def worker_trl(spec: dict) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from alignkit.models import load_tokenizer

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = None
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter() - self.t0)
            self.cpu = time.process_time() - self.cpu0

    class TimedDPO(DPOTrainer):
        prep_s = 0.0
        step_tokens: list[int] = []

        def _prepare_dataset(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._prepare_dataset(*args, **kwargs)
            self.prep_s += time.perf_counter() - t0
            return out

        def _precompute_ref_logps(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(*args, **kwargs)
            self.prep_s += time.perf_counter() - t0
            return out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.step_tokens.append(int(inputs["attention_mask"].sum()))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    rows = [json.loads(x) for x in Path(spec["data"]).read_text().splitlines() if x]
    precision = _machine(spec["precision"])["precision"]
    args = DPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl-run"),
        use_cpu=True,
        bf16=precision == "bf16",
        beta=BETA,
        per_device_train_batch_size=spec["batch_size"],
        max_steps=spec["steps"],
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=None,  # never truncate
        precompute_ref_log_probs=True,
        gradient_checkpointing=spec["trl_gradient_checkpointing"],
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=SEED,
    )
    timer = Timer()
    TimedDPO.step_tokens = []
    trainer = TimedDPO(
        model=spec["model"],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(spec["model"]),
        callbacks=[timer],
    )
    out = trainer.train()
    return {
        "tokens": sum(trainer.step_tokens),
        "step_tokens": trainer.step_tokens,
        "train_s": timer.ends[-1],
        "step_end_s": timer.ends,
        "ref_precompute_s": trainer.prep_s,
        "final_loss": next(
            (r["loss"] for r in reversed(trainer.state.log_history) if "loss" in r),
            out.training_loss,
        ),
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "cpu_cores_used": timer.cpu / timer.ends[-1],
        "precision": precision,
    }


def worker_parity(spec: dict) -> dict:
    """Float32 log-probs and DPO loss of a few pairs: alignkit's packed scorer vs TRL."""
    import copy

    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from alignkit.data.records import Pair
    from alignkit.data.tokenize import Encoded, encode_records
    from alignkit.models import load_causal_lm, load_tokenizer
    from alignkit.objectives import ObjectiveBatch, ObjectiveConfig, SeqLogps, compute_loss
    from alignkit.scoring.forward import SequenceScorer
    from alignkit.scoring.packing import collate

    rows = PARITY_PAIRS
    tok = load_tokenizer(spec["model"])
    torch.manual_seed(0)
    ref = load_causal_lm(spec["model"]).eval()
    # the policy: the reference moved a little, so the DPO loss is not trivially log 2
    policy = copy.deepcopy(ref)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02 * p.std())

    # TRL: its own tokenization, collator, log-prob and loss code, in float32
    args = DPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl-parity"),
        use_cpu=True,
        bf16=False,
        beta=BETA,
        per_device_train_batch_size=len(rows),
        max_length=None,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        seed=SEED,
    )
    trl = DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(ref),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trl.model.eval()
    ds = trl.train_dataset
    inputs = trl.data_collator([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        t_pol = torch.stack(trl.compute_ref_log_probs(trl.model, inputs), dim=1).double()
        t_ref = torch.stack(trl.compute_ref_log_probs(trl.ref_model, inputs), dim=1).double()
        t_loss = float(trl.compute_loss(trl.model, inputs))

    # alignkit: same strings through encode_records, one packed row per pair
    records = [
        Pair(r["prompt"], r["chosen"], r["rejected"], f"parity:{i}") for i, r in enumerate(rows)
    ]
    encoded, _ = encode_records(records, tok, max_length=spec["max_length"])
    trl_ids = [
        (ds[i]["prompt_ids"], ds[i]["chosen_ids"], ds[i]["rejected_ids"]) for i in range(len(ds))
    ]
    mismatches = []
    for i, (e, (p, c, r)) in enumerate(zip(encoded, trl_ids, strict=True)):
        for name, mine, theirs in (
            ("prompt", e.prompt, p),
            ("chosen", e.responses[0], c),
            ("rejected", e.responses[1], r),
        ):
            if list(mine) != list(theirs):
                mismatches.append(
                    {
                        "pair": i,
                        "part": name,
                        "alignkit": tok.decode(mine[-8:]),
                        "trl": tok.decode(theirs[-8:]),
                        "alignkit_len": len(mine),
                        "trl_len": len(theirs),
                    }
                )
    if mismatches:  # compare the numbers on identical ids: TRL's
        encoded = [
            Encoded(list(p), [list(c), list(r)], [1.0, 0.0], [True, False], True, i)
            for i, (p, c, r) in enumerate(trl_ids)
        ]
    batch = collate(encoded, tok.pad_token_id)
    with torch.no_grad():
        a_pol = SequenceScorer(policy)(batch)
        a_ref = SequenceScorer(ref)(batch)
        ob = ObjectiveBatch(
            kind="pair",
            policy=a_pol,
            ref=SeqLogps(sum=a_ref.sum, count=a_ref.count),
            labels=batch.labels,
            binary=batch.binary,
            high_quality=batch.high_quality,
            mask=batch.mask,
        )
        a_loss, _ = compute_loss("dpo", ob, ObjectiveConfig(beta=BETA))
    truth = _fp64_logps(policy, encoded)  # which tool is off, when they disagree
    logp_diff = max(
        float((a_pol.sum.double() - t_pol).abs().max()),
        float((a_ref.sum.double() - t_ref).abs().max()),
    )
    loss_diff = abs(float(a_loss) - t_loss)
    return {
        "pairs": len(rows),
        "ids_match": not mismatches,
        "id_mismatches": mismatches[:5],
        "max_abs_logp_diff": logp_diff,
        "loss_abs_diff": loss_diff,
        "alignkit_loss": float(a_loss),
        "trl_loss": t_loss,
        "mean_abs_logp": float(t_pol.abs().mean()),
        "alignkit_vs_fp64": float((a_pol.sum.double() - truth).abs().max()),
        "trl_vs_fp64": float((t_pol - truth).abs().max()),
        "ok": logp_diff < PARITY_TOL and loss_diff < PARITY_TOL,
    }


def _fp64_logps(model, encoded):
    """(B, 2) summed response log-probs of `model` in float64, each sequence alone."""
    import copy

    import torch

    m64 = copy.deepcopy(model).double()
    out = torch.zeros(len(encoded), 2, dtype=torch.float64)
    with torch.no_grad():
        for i, e in enumerate(encoded):
            for k, resp in enumerate(e.responses):
                ids = torch.tensor([e.prompt + resp])
                logps = torch.log_softmax(m64(input_ids=ids).logits[0, :-1], dim=-1)
                out[i, k] = logps.gather(1, ids[0, 1:, None])[len(e.prompt) - 1 :].sum()
    return out


WORKERS = {
    "resolve": worker_resolve,
    "alignkit": worker_alignkit,
    "trl": worker_trl,
    "parity": worker_parity,
}


def run_worker(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    timed = kind in ("alignkit", "trl")
    if timed and spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    probe = _sync_probe_ms() if timed else None
    result = WORKERS[kind](spec)
    result.update(_peak_rss_mb())
    if timed:
        import torch

        result["torch_threads"] = torch.get_num_threads()
        result["sync_probe_ms"] = max(probe, _sync_probe_ms())
        result["loadavg_after"] = os.getloadavg()[0]
    Path(spec["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------------- orchestration


def _spawn(kind: str, spec: dict, workdir: Path) -> dict:
    """Run one worker in a fresh interpreter; its log goes to WORKDIR/KIND.log."""
    spec = {**spec, "result": str(workdir / f"{kind}.result.json")}
    spec_path = workdir / f"{kind}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {
        **os.environ,
        "TQDM_DISABLE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(workdir / "hf-datasets"),  # never reuse a cached precompute
    }
    log = workdir / f"{kind}.log"
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, "--spec", str(spec_path)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise SystemExit(
            f"{kind} worker failed (exit {proc.returncode}); last lines of {log}:\n{tail}"
        )
    result = json.loads(Path(spec["result"]).read_text())
    result["process_s"] = time.perf_counter() - t0
    result["loadavg_before"] = load_before
    return result


def _summarise(res: dict, steps: int) -> None:
    res["tokens_per_s"] = res["tokens"] / res["train_s"]
    res["tokens_per_cpu_s"] = res["tokens_per_s"] / res["cpu_cores_used"]
    if steps > 1:  # steps 2..N: without the first step's one-off warm-up
        span = res["step_end_s"][-1] - res["step_end_s"][0]
        res["steady_tokens_per_s"] = sum(res["step_tokens"][1:]) / span if span > 0 else None


def _table(a: dict, t: dict) -> str:
    rows = [
        ("tokens/s", "tokens_per_s", "{:.1f}"),
        ("tokens/s, steps 2..N", "steady_tokens_per_s", "{:.1f}"),
        ("train wall time (s)", "train_s", "{:.2f}"),
        ("ref precompute (s)", "ref_precompute_s", "{:.2f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("tokens trained", "tokens", "{:d}"),
        ("final loss", "final_loss", "{:.4f}"),
        ("tokens per CPU-second", "tokens_per_cpu_s", "{:.1f}"),
        ("CPU cores busy (train)", "cpu_cores_used", "{:.2f}"),
    ]
    lines = [f"{'':24}{'alignkit':>12}{'TRL':>12}{'alignkit/TRL':>14}"]
    for label, key, fmt in rows:
        x, y = a.get(key), t.get(key)
        if x is None or y is None:
            continue
        ratio = f"{x / y:.2f}x" if y else "-"
        lines.append(f"{label:24}{fmt.format(x):>12}{fmt.format(y):>12}{ratio:>14}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", default="default", help="'default' (SmolLM2-135M-Instruct), a path or HF id"
    )
    ap.add_argument("--pairs", type=int, help="training pairs (default 96; --quick 8)")
    ap.add_argument("--steps", type=int, help="optimizer steps (default 12; --quick 2)")
    ap.add_argument("--batch-size", type=int, help="pairs per step (default 8; --quick 4)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and short texts: a smoke test")
    ap.add_argument(
        "--parity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="float32 log-prob/loss parity check against TRL (default on; fails the run)",
    )
    ap.add_argument(
        "--trl-gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TRL's DPOConfig default is on (trades speed for memory)",
    )
    ap.add_argument(
        "--alignkit-gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="alignkit's --gradient-checkpointing (default off, alignkit's default)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        help="torch threads per tool (default: torch's choice, one per core); 1 makes "
        "'tokens per CPU-second' robust when other processes share the machine",
    )
    ap.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="training precision of both tools (default auto: alignkit's choice on this machine, "
        "bf16 autocast only where the hardware has native bf16)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = args.quick
    args.pairs = args.pairs or (8 if quick else 96)
    args.steps = args.steps or (2 if quick else 12)
    args.batch_size = args.batch_size or (4 if quick else 8)
    for name in ("pairs", "steps", "batch_size", "threads"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.spec)
        return 0
    prompt_words, response_words = (30, 10) if args.quick else (112, 48)
    pairs = make_pairs(args.pairs, prompt_words, response_words)
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        workdir = Path(tmp)
        data = workdir / "pairs.jsonl"
        data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        spec = {
            "model": args.model,
            "data": str(data),
            "workdir": str(workdir),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "max_length": 100_000,  # nothing is truncated
            "trl_gradient_checkpointing": args.trl_gradient_checkpointing,
            "alignkit_gradient_checkpointing": args.alignkit_gradient_checkpointing,
            "threads": args.threads,
            "precision": args.precision,
        }
        if args.model == "default":  # convert the embedded model once, outside every measurement
            spec["model"] = _spawn("resolve", spec, workdir)["model_path"]
        report: dict = {
            "config": {
                k: spec[k]
                for k in (
                    "model",
                    "batch_size",
                    "steps",
                    "trl_gradient_checkpointing",
                    "alignkit_gradient_checkpointing",
                    "threads",
                    "precision",
                )
            }
            | {"model_name": args.model, "pairs": args.pairs, "lr": LR, "beta": BETA}
            | {"quick": args.quick},
            "machine": {"python": platform.python_version()},
        }
        if args.parity:
            report["parity"] = parity = _spawn("parity", spec, workdir)
            print(
                f"parity ({parity['pairs']} pairs, float32): token ids "
                f"{'identical' if parity['ids_match'] else 'DIFFER (compared on TRL ids)'}; "
                f"max |logp diff| = {parity['max_abs_logp_diff']:.2e} "
                f"(|logp| ~ {parity['mean_abs_logp']:.1f}); |loss diff| = {parity['loss_abs_diff']:.2e} "
                f"(loss {parity['alignkit_loss']:.6f} vs {parity['trl_loss']:.6f}) -> "
                f"{'OK' if parity['ok'] else 'FAIL'} (tol {PARITY_TOL:g}); vs a float64 reference: "
                f"alignkit {parity['alignkit_vs_fp64']:.1e}, TRL {parity['trl_vs_fp64']:.1e}",
                flush=True,
            )
            for m in parity["id_mismatches"]:
                print(f"  id mismatch: {m}")
        report["alignkit"] = a = _spawn("alignkit", spec, workdir)
        report["machine"] |= a.pop("machine", {})
        report["trl"] = t = _spawn("trl", spec, workdir)
    for res in (a, t):
        _summarise(res, args.steps)
    report["ratios"] = {
        "tokens_per_s": a["tokens_per_s"] / t["tokens_per_s"],
        "peak_rss": a["peak_rss_mb"] / t["peak_rss_mb"],
        "train_s": a["train_s"] / t["train_s"],
    }
    report["target"] = {
        "speed_2x": report["ratios"]["tokens_per_s"] >= 2.0,
        "memory_le_trl": a["peak_rss_mb"] <= t["peak_rss_mb"],
    }
    print(
        f"\n{args.model} | {args.pairs} pairs, batch {args.batch_size}, {args.steps} steps, "
        f"{a.get('precision', '?')} (--precision {args.precision}), "
        f"full fine-tuning | {a['torch_threads']} torch threads | gradient checkpointing: TRL "
        f"{'on' if args.trl_gradient_checkpointing else 'off'}, alignkit "
        f"{'on' if args.alignkit_gradient_checkpointing else 'off'}"
    )
    print(a.pop("machine_text", "machine: not reported"))
    print(_table(a, t))
    if a["tokens"] != t["tokens"]:
        print(f"note: the tools trained on different token counts ({a['tokens']} vs {t['tokens']})")
    busy = max(a["sync_probe_ms"], t["sync_probe_ms"])
    share = min(r["cpu_cores_used"] / r["torch_threads"] for r in (a, t))
    if share < 0.8:
        print(
            f"note: a tool got only {share:.0%} of the CPU time its {a['torch_threads']} thread(s) "
            "could use (other processes shared the machine): compare 'tokens per CPU-second', "
            "measured cleanly with --threads 1"
        )
    if busy > BUSY_PROBE_MS:
        print(
            f"WARNING: the machine was busy (a small parallel op took {busy:.1f} ms, ~0.1 when "
            f"idle; load average {max(a['loadavg_after'], t['loadavg_after']):.1f} on "
            f"{os.cpu_count()} cores): these timings measure contention, not the tools"
        )
    tgt = report["target"]
    print(
        f"target >= 2.0x tokens/s: {'met' if tgt['speed_2x'] else 'MISSED'}; "
        f"peak RSS <= TRL: {'met' if tgt['memory_le_trl'] else 'MISSED'}"
    )
    if args.json:
        from alignkit.io import atomic_write_text  # stdlib only: no torch in this process

        atomic_write_text(args.json, json.dumps(report, indent=2))
    if args.parity and not report["parity"]["ok"]:
        print("parity check FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
