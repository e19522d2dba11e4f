"""The one-GPU check of alignkit (run by scripts/gpu_check.sh; no network, <= 8 minutes).

On a random-initialised ~1B Llama-shaped model (built from a config, no download) with a
tokenizer trained here and synthetic HH-shaped pairs, in bf16 autocast on CUDA:

  1. DPO with LoRA (alignkit): tokens/s, pairs/s, peak GPU memory, MFU
  2. DPO full fine-tuning (alignkit): the same
  3. TRL's DPOTrainer, full fine-tuning, same model/data/batch/steps (if trl imports): the same
     and the ratio alignkit / TRL
  4. FSDP2 on one GPU: `accelerate launch --config_file configs/accelerate/fsdp2.yaml
     --num_processes 1 -m alignkit train ...`, and the gathered OUTPUT/model loads
  5. one PLE iteration: `alignkit ple` with a function reward (`gpu_check:length_reward`)

Each step runs in its own subprocess (fresh CUDA memory statistics, a crash or OOM stays in
its step), within its own timeout and the script's overall budget; a failing step is reported
FAILED with its error and the next one runs. One Markdown table is printed at the end and
written to $OUT/gpu_check.md (and the raw numbers to $OUT/gpu_check.json) when OUT is set.

Tokens are counted the same way for both tools: |prompt|+|chosen| + |prompt|+|rejected| per
pair (alignkit encodes the shared prompt once, so it computes fewer). Timings start after
the warm-up steps and synchronise CUDA at every step end. MFU = model FLOPs actually needed
by the tool's own forward/backward / time / the GPU's dense bf16 peak: per processed token
2 x (decoder linear weights) + attention 2 x layers x d x row length, per LM-head row
2 x d x vocab (alignkit: response positions only; TRL: every position), times 3 for full
fine-tuning (forward + backward) and 2 for LoRA (frozen weights: no weight gradients).
The peak is looked up by device name (ALIGNKIT_PEAK_TFLOPS overrides it).

    scripts/gpu_check.sh                    # on the GPU machine
    ALIGNKIT_GPU_CHECK_TINY=1 scripts/gpu_check.sh --no-install   # CPU smoke run, tiny model
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# dense bf16 tensor-core peaks (TFLOP/s), first match of a fragment of the device name wins
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0),
    ("H800", 989.0), ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0),
    ("L40S", 362.0),
]  # fmt: skip
SIZES = {
    # ~1.07B parameters (Llama-3.2-1B-like body, SmolLM2's 49152 vocabulary, tied head)
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=49152),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=512),
}  # fmt: skip
RUN = {  # pairs, batch size, steps, warm-up steps not timed, prompt/response words, timeouts
    "1b": dict(pairs=96, batch=8, steps=12, warmup=3, prompt_words=150, response_words=50),
    "tiny": dict(pairs=16, batch=4, steps=4, warmup=1, prompt_words=30, response_words=10),
}
BETA = 0.1


def length_reward(prompts: list, responses: list[str]) -> list[float]:
    """PLE's reward here: longer answers (up to 40 words) score higher; deterministic, free."""
    return [min(len(r.split()), 40) / 40.0 for r in responses]


# ------------------------------------------------------------------------ workers


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def worker_setup(spec: dict) -> dict:
    """Tokenizer (byte-level BPE trained on the synthetic text, chat template), model (random
    init from a Llama config, saved float32), pairs and PLE queries."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bench = importlib.util.spec_from_file_location(
        "bench_dpo_vs_trl", ROOT / "benchmarks" / "bench_dpo_vs_trl.py"
    )
    module = importlib.util.module_from_spec(bench)  # type: ignore[arg-type]
    bench.loader.exec_module(module)  # type: ignore[union-attr]
    run = RUN[spec["size"]]
    pairs = module.make_pairs(run["pairs"], run["prompt_words"], run["response_words"])
    work = Path(spec["workdir"])
    model_dir = work / "model"
    with open(work / "pairs.jsonl", "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in pairs)
    with open(work / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"prompt": p["prompt"].split("\n\n")[1][7:]}) + "\n" for p in pairs)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [p[k] for p in pairs for k in ("prompt", "chosen", "rejected")]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=4000,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token="<|endoftext|>", pad_token="<|im_end|>",
    )  # fmt: skip
    fast.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    fast.save_pretrained(model_dir)

    size = dict(SIZES[spec["size"]])  # the vocabulary holds at least the tokenizer's
    size["vocab_size"] = max(size["vocab_size"], -(-len(fast) // 64) * 64)
    config = LlamaConfig(
        **size, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init on the GPU: seconds instead of a minute
        model = LlamaForCausalLM(config)
    model.to("cpu").save_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "params": params,
        "tokenizer_vocab": len(fast),
        "pairs": len(pairs),
        "model_dir": str(model_dir),
    }


def _model_config(spec: dict) -> dict:
    return json.loads((Path(spec["model"]) / "config.json").read_text())


def _flops_per_layer_token(cfg: dict) -> float:
    """2 x the decoder linear weights of one layer (forward FLOPs per token)."""
    d, inter = cfg["hidden_size"], cfg["intermediate_size"]
    kv = d // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    return 2.0 * (2 * d * d + 2 * d * kv + 3 * d * inter)


def _forward_flops(cfg: dict, row_lengths: list[int], head_rows: int) -> float:
    layers, d = cfg["num_hidden_layers"], cfg["hidden_size"]
    tokens = sum(row_lengths)
    body = layers * _flops_per_layer_token(cfg) * tokens
    attention = sum(2.0 * layers * d * n * n for n in row_lengths)  # causal QK^T + AV
    return body + attention + 2.0 * d * cfg["vocab_size"] * head_rows


def worker_alignkit(spec: dict) -> dict:
    from alignkit.scoring.packing import PAD_SEGMENT
    from alignkit.train.config import TrainConfig
    from alignkit.train.trainer import Trainer

    cfg_model, lora = _model_config(spec), spec["lora"]

    class Timed(Trainer):
        steps: list[dict] = []
        current: dict = {}

        def train_step(self, *args, **kwargs):
            self.current = {"tokens": 0, "flops": 0.0}
            _sync()
            t0 = time.perf_counter()
            out = super().train_step(*args, **kwargs)
            _sync()
            self.steps.append({**self.current, "s": time.perf_counter() - t0})
            return out

        def step_loss(self, scorer, batch, ref_table, q_diff):
            if scorer.training:
                rows = (batch.segments != PAD_SEGMENT).sum(1).tolist()
                fwd = _forward_flops(cfg_model, rows, int(batch.counts.sum()))
                self.current["tokens"] += batch.n_tokens()
                self.current["flops"] += fwd * (2 if lora else 3)
            return super().step_loss(scorer, batch, ref_table, q_diff)

    run = RUN[spec["size"]]
    cfg = TrainConfig(
        method="dpo", data=[spec["data"]], data_format="trl-pair", model=spec["model"],
        output=str(Path(spec["workdir"]) / ("alignkit-lora" if lora else "alignkit-full")),
        beta=BETA, batch_size=run["batch"], max_steps=run["steps"],
        lr=1e-4 if lora else 5e-6, lr_scheduler="linear", warmup_ratio=0.0, weight_decay=0.0,
        max_grad_norm=1.0, max_length=2048, precision=spec["precision"], logging_steps=1,
        save_model=False, seed=42, lora=lora,
    )  # fmt: skip
    cfg.validate()
    trainer = Timed(cfg)
    trainer.steps = []
    result = trainer.run()
    rates = _rates(trainer.steps[run["warmup"] :], run["batch"])
    return {**rates, "peak_gib": _peak_gib(), "final_loss": result.final_metrics.get("loss")}


def _rates(steps: list[dict], batch: int) -> dict:
    seconds = sum(s["s"] for s in steps)
    return {
        "timed_steps": len(steps),
        "seconds": seconds,
        "tokens_per_s": sum(s["tokens"] for s in steps) / seconds,
        "pairs_per_s": batch * len(steps) / seconds,
        "tflops": sum(s["flops"] for s in steps) / seconds / 1e12,
    }


def worker_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from alignkit.models import load_tokenizer

    cfg_model, run = _model_config(spec), RUN[spec["size"]]
    steps: list[dict] = []
    current: dict = {}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            _sync()
            current.update(t0=time.perf_counter(), tokens=0, flops=0.0)

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            steps.append({"s": time.perf_counter() - current["t0"], "tokens": current["tokens"],
                          "flops": current["flops"]})  # fmt: skip

    class Counted(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                rows = inputs["attention_mask"].sum(1).tolist()
                current["tokens"] += int(sum(rows))
                current["flops"] += 3 * _forward_flops(cfg_model, rows, int(sum(rows)))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    rows = [json.loads(x) for x in Path(spec["data"]).read_text().splitlines() if x]
    args = DPOConfig(
        output_dir=str(Path(spec["workdir"]) / "trl-run"), use_cpu=not torch.cuda.is_available(),
        bf16=True, beta=BETA, per_device_train_batch_size=run["batch"], max_steps=run["steps"],
        learning_rate=5e-6, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_length=None, precompute_ref_log_probs=True,
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", eval_strategy="no",
        report_to=[], disable_tqdm=True, seed=42,
    )  # fmt: skip
    trainer = Counted(
        model=spec["model"],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(spec["model"]),
        callbacks=[Timer()],
    )
    trainer.train()
    return {**_rates(steps[run["warmup"] :], run["batch"]), "peak_gib": _peak_gib()}


def worker_load(spec: dict) -> dict:
    """The saved OUTPUT/model loads with from_pretrained and gives finite logits."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 5, 9, 12]])).logits
    return {"params": sum(p.numel() for p in model.parameters()),
            "finite": bool(torch.isfinite(logits).all())}  # fmt: skip


WORKERS = {
    "setup": worker_setup,
    "alignkit": worker_alignkit,
    "trl": worker_trl,
    "load": worker_load,
}


# ------------------------------------------------------------------------ the parent


class Check:
    """Runs the steps within the budget and collects one table row per step."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.t0 = args, time.perf_counter()
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.info: dict = {}
        self.peak_tflops: float | None = None
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                  str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))}  # fmt: skip

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t0)

    def subprocess(self, cmd: list[str], timeout: float) -> str:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=ROOT
        )
        log = self.work / f"log-{len(self.rows)}.txt"
        log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {_error_line(done.stderr)} (log: {log})")
        return done.stdout

    def worker(self, name: str, spec: dict, timeout: float) -> dict:
        spec = {"workdir": str(self.work), "size": self.args.size, **spec}
        out = self.subprocess(
            [sys.executable, str(Path(__file__)), "--worker", name, json.dumps(spec)], timeout
        )
        return json.loads(out.strip().splitlines()[-1])

    def step(self, name: str, fn, timeout: float) -> dict | None:
        row: dict = {"step": name}
        self.rows.append(row)
        budget = min(timeout, self.left() - 5)
        if budget < 20:
            row.update(status="SKIPPED", note="out of the time budget")
            print(f"[gpu_check] {name}: SKIPPED (time)", flush=True)
            return None
        print(f"[gpu_check] {name} (timeout {budget:.0f} s) ...", flush=True)
        t = time.perf_counter()
        try:
            result = fn(budget)
            row.update(status="ok", **(result or {}))
        except Exception as exc:  # fail soft: report and go on
            message = str(exc) if not isinstance(exc, subprocess.TimeoutExpired) else "timeout"
            row.update(status="FAILED", note=f"{type(exc).__name__}: {message}"[:300])
            traceback.print_exc()
            result = None
        row["wall_s"] = time.perf_counter() - t
        print(f"[gpu_check] {name}: {row['status']} in {row['wall_s']:.0f} s", flush=True)
        return result

    def mfu(self, tflops: float | None) -> float | None:
        return tflops / self.peak_tflops if tflops and self.peak_tflops else None


def _error_line(stderr: str) -> str:
    """The last line of a traceback that names an exception (else the last line)."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    named = [x for x in lines if re.match(r"^(\[rank\d+\]: )?[\w.]+(Error|Exception)\b", x)]
    return (named or lines or ["no output"])[-1][-300:]


def peak_for(device: str) -> float | None:
    if os.environ.get("ALIGNKIT_PEAK_TFLOPS"):
        return float(os.environ["ALIGNKIT_PEAK_TFLOPS"])
    return next((peak for frag, peak in PEAK_BF16_TFLOPS if frag in device), None)


def run_checks(check: Check) -> None:
    args = check.args
    setup = check.step(
        "setup: model, tokenizer, pairs", lambda t: check.worker("setup", {}, t), 240
    )
    if setup is None:
        return
    check.info.update(setup)
    check.peak_tflops = peak_for(setup["device"])
    model, data = setup["model_dir"], str(check.work / "pairs.jsonl")
    precision = "bf16" if setup["device"] != "cpu" else "auto"
    common = {"model": model, "data": data, "precision": precision}
    rates = {}
    for lora in (True, False):
        name = f"DPO {'LoRA' if lora else 'full'} (alignkit)"
        rates[lora] = check.step(
            name, lambda t, lora=lora: check.worker("alignkit", {**common, "lora": lora}, t), 150
        )
    if importlib.util.find_spec("trl") and importlib.util.find_spec("datasets"):
        trl = check.step("DPO full (TRL DPOTrainer)", lambda t: check.worker("trl", common, t), 180)
        if trl and rates[False]:
            check.rows[-1]["note"] = (
                f"alignkit full / TRL: {rates[False]['tokens_per_s'] / trl['tokens_per_s']:.2f}x "
                "tokens/s"
            )
    else:
        check.rows.append({"step": "DPO full (TRL DPOTrainer)", "status": "SKIPPED",
                           "note": "trl or datasets is not importable (carry their wheels in "
                                   "shared/wheels/)"})  # fmt: skip
    run = RUN[args.size]

    def fsdp(timeout: float) -> dict:
        out = check.work / "fsdp2"
        check.subprocess(
            [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
             str(ROOT / "src/alignkit/configs/accelerate/fsdp2.yaml"), "--num_processes", "1",
             "--main_process_port", "0", "-m", "alignkit", "train", "--method", "dpo",
             "--data", data, "--data-format", "trl-pair", "--model", model, "--output", str(out),
             "--batch-size", str(run["batch"]), "--max-steps", str(run["steps"] // 2),
             "--precision", precision, "--lr", "5e-6"],
            timeout * 0.75,
        )  # fmt: skip
        last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
        loaded = check.worker("load", {"model": str(out / "model")}, timeout * 0.25)
        note = f"OUTPUT/model loads ({loaded['params'] / 1e9:.2f}B params, finite logits: "
        return {"tokens_per_s": last["tokens_per_s"], "note": note + f"{loaded['finite']})"}

    check.step("FSDP2, 1 GPU (accelerate launch, full)", fsdp, 180)

    def ple(timeout: float) -> dict:
        out = check.work / "ple"
        check.subprocess(
            [sys.executable, "-m", "alignkit", "ple", "--model", model, "--queries",
             str(check.work / "queries.jsonl"), "--reward-model", "gpu_check:length_reward",
             "--iterations", "1", "--queries-per-iteration", str(run["batch"]),
             "--batch-size", str(run["batch"] // 2), "--max-new-tokens", "32",
             "--precision", precision, "--output", str(out), "--no-save-model"],
            timeout,
        )  # fmt: skip
        last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
        keys = ("time/generate_s", "time/train_s", "loss")
        return {"note": ", ".join(f"{k}={last[k]:.3g}" for k in keys if k in last)}

    check.step("PLE, 1 iteration (alignkit ple)", ple, 150)


def table(check: Check) -> str:
    info = check.info
    peak = f"{check.peak_tflops:g} TFLOP/s bf16 dense" if check.peak_tflops else "unknown"
    head = [
        f"GPU check: {info.get('device', '?')} (peak {peak}), torch {info.get('torch', '?')}, "
        f"model {info.get('params', 0) / 1e9:.2f}B params ({check.args.size}), "
        f"{info.get('pairs', '?')} pairs, batch {RUN[check.args.size]['batch']}, "
        f"total {time.perf_counter() - check.t0:.0f} s",
        "",
        "| step | status | tokens/s | pairs/s | peak GPU mem | MFU | wall s | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, spec: str, suffix: str = "") -> str:
        return "–" if value is None else f"{value:{spec}}{suffix}"

    for r in check.rows:
        mfu = check.mfu(r.get("tflops"))
        head.append(
            f"| {r['step']} | {r['status']} | {fmt(r.get('tokens_per_s'), ',.0f')} | "
            f"{fmt(r.get('pairs_per_s'), '.2f')} | {fmt(r.get('peak_gib'), '.1f', ' GiB')} | "
            f"{fmt(mfu and 100 * mfu, '.1f', ' %')} | {fmt(r.get('wall_s'), '.0f')} | "
            f"{str(r.get('note', '')).replace('|', '/')} |"
        )
    return "\n".join(head) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model: CPU smoke run")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all steps")
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temp dir)")
    parser.add_argument("--no-install", action="store_true", help="(used by gpu_check.sh)")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, spec = args.worker
        print(json.dumps(WORKERS[name](json.loads(spec))))
        return 0
    args.size = "tiny" if args.tiny or os.environ.get("ALIGNKIT_GPU_CHECK_TINY") == "1" else "1b"
    if not args.workdir:
        import tempfile

        args.workdir = tempfile.mkdtemp(prefix="alignkit-gpu-check-")
    check = Check(args)
    run_checks(check)
    text = table(check)
    print("\n" + text)
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_check.md").write_text(text)
        Path(out, "gpu_check.json").write_text(
            json.dumps({"info": check.info, "rows": check.rows}, indent=2, default=str)
        )
    return 0 if all(r["status"] != "FAILED" for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
