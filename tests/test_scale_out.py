"""Scaling out with accelerate: FSDP2 over 2 gloo ranks on CPU equals one process (full
fine-tuning and LoRA, reference log-probs precomputed, held-out metrics), resumes exactly after
SIGKILL and saves a model `from_pretrained` loads; so do DeepSpeed ZeRO-2 and ZeRO-3 (its CPU
accelerator, gloo) where deepspeed is installed; the shipped configs (`configs/accelerate/`)
parse and configure what their comments say.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import BIN, free_port, pair_rows, run_launched, write_jsonl

from alignkit.package_data import ACCELERATE_CONFIGS_DIR

CONFIGS = ACCELERATE_CONFIGS_DIR  # shipped in the package (configs/ at the root links to it)
ACCELERATE = BIN / "accelerate"
STEPS, SAVE = 12, 4
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
needs_launcher = pytest.mark.skipif(
    importlib.util.find_spec("accelerate") is None or not ACCELERATE.exists(),
    reason="accelerate (and its `accelerate launch`) is not installed",
)
needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (pip install deepspeed): ZeRO-2/3 on CPU not run",
)
cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason="on a CUDA machine the ranks would go to the GPUs"
)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_args(model: str, data: tuple[str, str], out: Path, batch: int, *extra: str) -> list[str]:
    return ["train", "--method", "dpo", "--data", data[0], "--eval-data", data[1],
            "--model", model, "--precision", "fp32", "--max-steps", str(STEPS), "--lr", "1e-3",
            "--save-steps", str(SAVE), "--batch-size", str(batch), "--output", str(out),
            *extra]  # fmt: skip


def fsdp2(*args: str) -> list[str]:
    """`alignkit ARGS` on 2 gloo ranks with the shipped FSDP2 config."""
    config = str(CONFIGS / "fsdp2.yaml")
    launch = [str(ACCELERATE), "launch", "--config_file", config, "--num_processes", "2"]
    return [*launch, "--main_process_port", "0", "-m", "alignkit", *args]


def zero(stage: int, *args: str) -> list[str]:
    """`alignkit ARGS` on 2 gloo ranks with the shipped DeepSpeed ZeRO-`stage` config."""
    config = str(CONFIGS / f"zero{stage}.yaml")
    launch = [str(ACCELERATE), "launch", "--config_file", config, "--num_processes", "2"]
    return [*launch, "--main_process_port", "0", "-m", "alignkit", *args]


def launch(cmd: list[str], env: dict[str, str] = ENV) -> str:
    """Run `cmd` (a launcher and its ranks) to success; its stderr."""
    return run_launched(cmd, env).stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("scale-out-data")
    return (
        write_jsonl(root / "pairs.jsonl", pair_rows(16)),
        write_jsonl(root / "held.jsonl", pair_rows(10, seed=3)),  # 3 eval chunks on 2 ranks
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model, data):
    """`runs(kind)`: (2-rank FSDP2 run, 1-process run with the same global batch, launcher
    log) of full fine-tuning or LoRA, each made once.

    LoRA without dropout: its masks are drawn per rank, so 2 ranks cannot equal 1 process."""
    from alignkit.cli import main

    made: dict[str, SimpleNamespace] = {}

    def make(kind: str) -> SimpleNamespace:
        if kind in made:
            return made[kind]
        root = tmp_path_factory.mktemp(f"scale-out-{kind}")
        extra = ["--lora", "--lora-dropout", "0", "--lr", "1e-2"] if kind == "lora" else []
        two, one = root / "two", root / "one"
        log = launch(fsdp2(*train_args(tiny_model, data, two, 2, *extra)))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the ranks (OMP_NUM_THREADS=1): the same float32 kernels
        try:
            assert main(train_args(tiny_model, data, one, 4, *extra)) == 0
        finally:
            torch.set_num_threads(threads)
        made[kind] = SimpleNamespace(two=two, one=one, kind=kind, log=log)
        return made[kind]

    return make


def metric_diff(a: dict, b: dict) -> float:
    """Largest difference of the metrics two logged rows share (timings aside)."""
    keys = [k for k in a if k in b and k not in ("tokens_per_s", "elapsed_s")]
    assert len(keys) > 5
    if max(abs(a.get("rewards/margins", 1.0)), abs(b.get("rewards/margins", 1.0))) < 1e-5:
        # the first step: policy = reference (no dropout), every margin 0 up to float noise,
        # so whether it is > 0 (the accuracy) is that noise
        keys.remove("rewards/accuracies")
    return max(abs(a[k] - b[k]) for k in keys)


# ----------------------------------------------------------------- FSDP2 runs


@needs_launcher
@cpu_only
@pytest.mark.parametrize("kind", ["full", "lora"])
def test_fsdp2_two_ranks_equal_one_process(runs, kind):
    """Every logged row (held-out metrics before and after, every training step) of 2 FSDP2
    ranks with --batch-size 2 equals 1 process with --batch-size 4. metrics.jsonl rounds to
    1e-6; what differs is the order of float32 sums (2 half-batch gradients averaged over gloo
    against one sum over the whole batch), amplified by Adam's normalised steps."""
    run = runs(kind)
    assert "FSDP2: one shard unit per LlamaDecoderLayer" in run.log  # the layers, generically
    a, b = rows(run.two / "metrics.jsonl"), rows(run.one / "metrics.jsonl")
    assert [r["step"] for r in a] == [0, *range(1, STEPS + 1), STEPS]
    assert [r["step"] for r in b] == [r["step"] for r in a]
    assert a[0]["eval/rewards/margins"] == 0.0  # the precomputed reference is the policy
    assert max(metric_diff(x, y) for x, y in zip(a, b, strict=True)) < 1e-5
    assert a[-1]["eval/rewards/margins"] > 0.01  # it trained
    # the checkpoints are FSDP's sharded state dicts (every rank wrote its shard)
    ckpt = run.two / "checkpoints" / f"step-{STEPS - SAVE}"
    assert (ckpt / "pytorch_model_fsdp_0").is_dir() and (ckpt / "optimizer_0").is_dir()
    assert (ckpt / "random_states_1.pkl").exists()


@needs_launcher
@cpu_only
@pytest.mark.parametrize("kind", ["full", "lora"])
def test_fsdp2_saved_model_loads_and_scores_as_trained(runs, kind, data):
    """OUTPUT/model (gathered from the shards) loads with `from_pretrained` (LoRA: peft's);
    its log-probs of the held-out pairs are those the sharded model logged after training, its
    logits those of the 1-process run's model."""
    from alignkit.data import load_records
    from alignkit.data.prompts import chat_records
    from alignkit.data.tokenize import encode_records
    from alignkit.models import load_tokenizer
    from alignkit.scoring.forward import naive_sequence_logps
    from alignkit.scoring.packing import collate

    run = runs(kind)
    two, one = (load(folder / "model", kind) for folder in (run.two, run.one))
    tok = load_tokenizer(str(run.two / "model"))
    # the prompts as the runs were trained on them (the chat template, their config.json says)
    records = chat_records(load_records([data[1]])[0], tok, True)
    batch = collate(encode_records(records, tok, 1024)[0], tok.pad_token_id)
    with torch.no_grad():
        logps = naive_sequence_logps(two, batch)
        logits = [m(input_ids=batch.input_ids).logits for m in (two, one)]
    after = json.loads((run.two / "summary.json").read_text())["eval_after"]
    assert after["eval/logps/chosen"] == pytest.approx(float(logps[:, 0].mean()), abs=1e-4)
    assert after["eval/logps/rejected"] == pytest.approx(float(logps[:, 1].mean()), abs=1e-4)
    assert (logits[0] - logits[1]).abs().max() < 1e-4


def load(folder: Path, kind: str) -> torch.nn.Module:
    if kind == "full":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(folder).eval()
    from peft import AutoPeftModelForCausalLM

    return AutoPeftModelForCausalLM.from_pretrained(folder).eval()


@needs_launcher
@cpu_only
def test_fsdp2_resume_after_sigkill_matches_uninterrupted_run(runs, tmp_path, tiny_model, data):
    """SIGKILL the launcher and both ranks after the first checkpoint, relaunch with --resume:
    metrics.jsonl and the saved model are exactly those of the uninterrupted run."""
    from safetensors.torch import load_file

    full, killed = runs("full").two, tmp_path / "killed"
    args = fsdp2(*train_args(tiny_model, data, killed, 2))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("step-*")) and time.time() < deadline:
        time.sleep(0.01)
    kill_tree(proc.pid)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "model").exists()  # it really died before the end
    assert max(r["step"] for r in rows(killed / "metrics.jsonl")) < STEPS

    launch([*args, "--resume"])
    a, b = rows(full / "metrics.jsonl"), rows(killed / "metrics.jsonl")
    assert [r["step"] for r in b] == [r["step"] for r in a]  # no gap, no duplicate
    assert max(metric_diff(x, y) for x, y in zip(a, b, strict=True)) == 0.0
    w1, w2 = (load_file(run / "model" / "model.safetensors") for run in (full, killed))
    assert sorted(w1) == sorted(w2)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) == 0.0


@needs_launcher
@cpu_only
def test_two_machines_of_multi_node_config_equal_one_process(runs, tiny_model, data):
    """multi_node.yaml's launch, as two machines on localhost (one rank each, the same line
    with --machine_rank 0 and 1, meeting at 127.0.0.1): the ranks find each other and train
    as the 1-process run does."""
    one = runs("full").one
    port = str(free_port())
    out = one.parent / "two-machines"
    config = str(CONFIGS / "multi_node.yaml")

    def machine(rank: int) -> subprocess.CompletedProcess:
        return run_launched(
            [str(ACCELERATE), "launch", "--config_file", config, "--machine_rank", str(rank),
             "--num_processes", "2", "--main_process_ip", "127.0.0.1",
             "--main_process_port", port, "-m", "alignkit",
             *train_args(tiny_model, data, out, 2)],
            ENV,
        )  # fmt: skip

    with ThreadPoolExecutor(2) as machines:  # both at once: each waits for the other
        list(machines.map(machine, (0, 1)))
    a, b = rows(out / "metrics.jsonl"), rows(one / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert max(metric_diff(x, y) for x, y in zip(a, b, strict=True)) < 1e-5


# ------------------------------------------------------- DeepSpeed ZeRO on CPU


@needs_launcher
@needs_deepspeed
@cpu_only
@pytest.mark.parametrize(("stage", "kind"), [(2, "full"), (3, "full"), (3, "lora")])
def test_zero_two_ranks_equal_one_process(runs, stage, kind, tiny_model, data, tmp_path):
    """DeepSpeed ZeRO-2/3 (CPU accelerator, gloo) on 2 ranks with --batch-size 2: every logged
    row equals 1 process with --batch-size 4 (as FSDP2 above), the checkpoints are DeepSpeed's
    (so it really ran: accelerate used to fall back to DDP silently on CPU), and the saved
    model gives the 1-process run's logits (ZeRO-3: gathered from the partitions)."""
    from safetensors.torch import load_file

    one = runs(kind).one
    out = tmp_path / f"zero{stage}"
    extra = ["--lora", "--lora-dropout", "0", "--lr", "1e-2"] if kind == "lora" else []
    log = launch(
        zero(stage, *train_args(tiny_model, data, out, 2, *extra)), {**ENV, "DS_ACCELERATOR": "cpu"}
    )
    assert f"DeepSpeed: ZeRO stage {stage} on 2 ranks" in log
    ckpt = out / "checkpoints" / f"step-{STEPS - SAVE}"
    assert (ckpt / "pytorch_model").is_dir() and (ckpt / "zero_to_fp32.py").exists()
    a, b = rows(out / "metrics.jsonl"), rows(one / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert a[0]["eval/rewards/margins"] == 0.0  # the reference pass saw the full weights
    assert max(metric_diff(x, y) for x, y in zip(a, b, strict=True)) < 1e-5
    assert a[-1]["eval/rewards/margins"] > 0.01  # it trained
    name = "model.safetensors" if kind == "full" else "adapter_model.safetensors"
    w1, w2 = (load_file(run / "model" / name) for run in (out, one))
    assert sorted(w1) == sorted(w2)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it (torch elastic starts each rank in a
    session of its own: a kill of the launcher's process group would miss the ranks)."""
    import psutil

    parent = psutil.Process(pid)
    for proc in [*parent.children(recursive=True), parent]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


# ------------------------------------------------------------ shipped configs


def launch_env(name: str, *flags: str) -> tuple[SimpleNamespace, dict[str, str]]:
    """What `accelerate launch --config_file configs/accelerate/NAME.yaml FLAGS` would hand its
    ranks: (the launcher's arguments, the environment accelerate configures itself from)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIGS / name), *flags, "-m", "alignkit"])
    _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ""  # set by `launch_command` itself
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, env


@pytest.mark.parametrize(
    "name", ["ddp.yaml", "fsdp2.yaml", "zero2.yaml", "zero3.yaml", "multi_node.yaml"]
)
def test_shipped_config_parses_with_valid_keys(name):
    """accelerate's own loader reads it (it refuses unknown top-level keys); every key of its
    fsdp_config / deepspeed_config is an option of `accelerate launch` (accelerate copies them
    onto its arguments without checking: a misspelt key would be silently ignored); the
    header gives its launch line."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(CONFIGS / name))
    options = {action.dest for action in launch_command_parser()._actions}
    nested = {**config.fsdp_config, **config.deepspeed_config}
    assert set(nested) <= options, set(nested) - options
    assert (
        f"accelerate launch --config_file configs/accelerate/{name}" in (CONFIGS / name).read_text()
    )


def test_fsdp2_config_is_full_shard_of_decoder_layers(tiny_model, monkeypatch):
    """fsdp2.yaml gives FSDP2, resharding after forward, sharded checkpoints, per-rank loading
    of real weights, and a transformer-layer wrap policy that alignkit completes with the
    model's decoder layer class (an explicit class name wins)."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from alignkit.models import LoraSettings, load_causal_lm
    from alignkit.train.engines import check_fsdp, fsdp_layers_to_wrap

    _, env = launch_env("fsdp2.yaml")
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_USE_FSDP")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert plugin.cpu_ram_efficient_loading is False
    assert type(plugin.cpu_offload).__name__ == "OffloadPolicy"  # the base class: no offload
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    check_fsdp(plugin)  # what alignkit accepts
    fsdp_layers_to_wrap(plugin, load_causal_lm(tiny_model, lora=LoraSettings()))
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]

    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "MyLayer")
    plugin = FullyShardedDataParallelPlugin()
    fsdp_layers_to_wrap(plugin, load_causal_lm(tiny_model))
    assert plugin.transformer_cls_names_to_wrap == ["MyLayer"]


def test_fsdp_settings_alignkit_cannot_honour_are_refused(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    from alignkit.errors import AlignkitError
    from alignkit.train.engines import check_fsdp

    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    with pytest.raises(AlignkitError, match="fsdp_cpu_ram_efficient_loading"):
        check_fsdp(FullyShardedDataParallelPlugin(fsdp_version=2))
    with pytest.raises(AlignkitError, match="FSDP2 only"):
        check_fsdp(SimpleNamespace(fsdp_version=1, cpu_ram_efficient_loading=False))


@pytest.mark.parametrize(("name", "stage"), [("zero2.yaml", 2), ("zero3.yaml", 3)])
def test_zero_configs_give_the_deepspeed_plugin_alignkit_fills(name, stage, monkeypatch):
    """The DeepSpeed plugin accelerate builds from zero2/zero3.yaml (deepspeed itself is not
    needed for that): the stage, no zero.Init (refused by alignkit), ZeRO-3 gathering the
    weights for `save_pretrained`; `configure_deepspeed` then sets the batch settings from
    alignkit's options, as accelerate cannot (there is no dataloader to read them from)."""
    from accelerate.utils import DeepSpeedPlugin

    from alignkit.train.engines import configure_deepspeed

    _, env = launch_env(name)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == stage and plugin.zero3_init_flag is False
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
    acc = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=4)
    options = SimpleNamespace(batch_size=2, grad_accum=3, max_grad_norm=0.5)
    configure_deepspeed(acc, options)  # type: ignore[arg-type]
    ds = plugin.deepspeed_config
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (2, 3)
    assert ds["train_batch_size"] == 2 * 3 * 4 and ds["gradient_clipping"] == 0.5
    assert acc.gradient_accumulation_steps == 3


def test_multi_node_config_meets_at_machine_0():
    """multi_node.yaml: 2 machines x 8 ranks meeting at main_process_ip; each machine runs
    the same line with its own --machine_rank."""
    args, env = launch_env("multi_node.yaml", "--machine_rank", "1")
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    endpoint = getattr(args, "rdzv_endpoint", None) or f"{args.master_addr}:{args.master_port}"
    assert endpoint == "10.0.0.1:29500"
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"


def test_slurm_example_is_valid_bash_with_one_launch_per_node():
    script = CONFIGS / "slurm_example.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "srun" in text
    assert "accelerate launch \\\n    --config_file configs/accelerate/fsdp2.yaml" in text
    assert '--machine_rank "$SLURM_NODEID"' in text
