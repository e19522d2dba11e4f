"""The engines `accelerate launch` can hand the training loop: the `Accelerator` as the
launcher configured it (DDP, FSDP2 or DeepSpeed ZeRO — all three also over gloo on CPU), the FSDP2
settings alignkit cannot honour refused early, decoder layers as shard units, and DeepSpeed's
batch settings filled from the run's options (configs in `configs/accelerate/`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.tracking import TensorBoardTracker
from accelerate.utils import (
    DistributedType,
    FullyShardedDataParallelPlugin,
    InitProcessGroupKwargs,
)
from torch import nn

from alignkit.errors import AlignkitError
from alignkit.models import is_peft
from alignkit.train.config import DataTrainingOptions, TrackingOptions

log = logging.getLogger(__name__)


def tracker_setup(tracking: TrackingOptions, output: str) -> tuple[list[Any], dict[str, Any]]:
    """(log_with, init_kwargs) of the run's trackers: TensorBoard writes to
    TRACKER_DIR/RUN_NAME (a tracker object: accelerate would put it under the project's
    name), W&B and MLflow get the run name (W&B also the folder); every other tracker gets
    the project only (`init_trackers(project, ...)`)."""
    name, folder = tracking.tracking_run_name(output), tracking.tracking_dir(output)
    log_with: list[Any] = [
        TensorBoardTracker(name, folder) if t == "tensorboard" else t for t in tracking.trackers()
    ]
    init_kwargs = {"wandb": {"name": name, "dir": folder}, "mlflow": {"run_name": name}}
    return log_with, init_kwargs


def make_accelerator(tracking: TrackingOptions | None, output: str | None) -> Accelerator:
    """The run's `Accelerator`, as `accelerate launch` configured it (DDP, FSDP2, DeepSpeed),
    with the trackers of `tracking` (none: no trackers).

    cpu=True without CUDA: that is what makes accelerate pick up torchrun's gloo ranks. On CPU
    accelerate then always takes DDP, even when the launcher asked for FSDP: torch's
    `fully_shard` runs over gloo as well, so the launcher's FSDP settings are applied here
    (this is how `configs/accelerate/fsdp2.yaml` is tested on CPU). DeepSpeed on CPU (its CPU
    accelerator) is the exception: with cpu=True accelerate would silently train DDP instead,
    so a DeepSpeed launch without CUDA gets cpu=False and the gloo backend, which accelerate
    hands to `deepspeed.comm` (without a backend it would count one process per rank).
    """
    log_with = tracker_setup(tracking, output or ".")[0] if tracking else []
    cpu = not torch.cuda.is_available()
    handlers = []
    if cpu and _launched_with_deepspeed():
        cpu, handlers = False, [InitProcessGroupKwargs(backend="gloo")]
    acc = Accelerator(
        log_with=log_with or None, project_dir=output or None, cpu=cpu, kwargs_handlers=handlers
    )
    if acc.distributed_type == DistributedType.MULTI_CPU and _env_true("ACCELERATE_USE_FSDP"):
        acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # read from the launcher's env
        # both shared states: accelerate rebuilds AcceleratorState from PartialState's later
        PartialState().distributed_type = acc.state.distributed_type = DistributedType.FSDP
    if acc.distributed_type == DistributedType.FSDP:
        check_fsdp(acc.state.fsdp_plugin)
    if (
        acc.distributed_type == DistributedType.DEEPSPEED
        and acc.state.deepspeed_plugin.zero3_init_flag
    ):
        # zero.Init partitions the weights while they load: the reference pass, before
        # `prepare`, would see empty tensors (FSDP's cpu_ram_efficient_loading, likewise)
        raise AlignkitError(
            "zero3_init_flag: true is not supported: alignkit scores the reference log-probs on "
            "every rank's full copy of the model before DeepSpeed partitions it; set "
            "zero3_init_flag: false (as configs/accelerate/zero3.yaml does)"
        )
    return acc


def _launched_with_deepspeed() -> bool:
    """`accelerate launch --use_deepspeed` (or a DeepSpeed config) started this rank."""
    return _env_true("ACCELERATE_USE_DEEPSPEED") and int(os.environ.get("LOCAL_RANK", -1)) != -1


def _env_true(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def check_fsdp(plugin: FullyShardedDataParallelPlugin) -> None:
    """Refuse the FSDP settings alignkit cannot honour, before any model is loaded."""
    if plugin.fsdp_version != 2:
        raise AlignkitError(
            "alignkit supports FSDP2 only: set fsdp_version: 2 in the accelerate config "
            "(configs/accelerate/fsdp2.yaml)"
        )
    if plugin.cpu_ram_efficient_loading:
        # with it, transformers loads real weights on rank 0 only; the others hold empty
        # tensors until `prepare` broadcasts rank 0's, but the reference log-probs are scored
        # before that, on every rank's own copy
        raise AlignkitError(
            "fsdp_cpu_ram_efficient_loading: true is not supported: alignkit scores the "
            "reference log-probs on every rank's full copy of the model before sharding it; "
            "set fsdp_cpu_ram_efficient_loading: false (as configs/accelerate/fsdp2.yaml does)"
        )


def fsdp_layers_to_wrap(plugin: FullyShardedDataParallelPlugin, model: nn.Module) -> None:
    """With TRANSFORMER_BASED_WRAP and no fsdp_transformer_layer_cls_to_wrap, shard every
    decoder layer of the model, whatever its family: the classes of its `_no_split_modules`
    (accelerate reads them from the module it is given, here alignkit's scorer, which has
    none, so the whole model would be one unit)."""
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    if plugin.auto_wrap_policy is not transformer_auto_wrap_policy:
        return  # another policy, or already resolved
    if not plugin.transformer_cls_names_to_wrap:
        base = model.get_base_model() if is_peft(model) else model  # type: ignore[operator]
        layers = list(getattr(base, "_no_split_modules", None) or [])
        if not layers:
            raise AlignkitError(
                f"{type(base).__name__} names no decoder layer class (_no_split_modules): give "
                "it to accelerate launch, e.g. --fsdp_transformer_layer_cls_to_wrap "
                "LlamaDecoderLayer"
            )
        plugin.transformer_cls_names_to_wrap = layers
    log.info("FSDP2: one shard unit per %s", ", ".join(plugin.transformer_cls_names_to_wrap))


@contextlib.contextmanager
def full_weights_loading(acc: Accelerator) -> Iterator[None]:
    """Around loading the trained model: every rank loads the full weights. Under DeepSpeed
    accelerate registers its config with transformers whatever zero3_init_flag says (its
    `zero3_init_context_manager(enable=False)` does nothing when the flag is already false),
    and `from_pretrained` then partitions a ZeRO-3 model while loading (zero.Init): the
    reference pass before `prepare` would fail on the empty tensors ("Padding_idx must be
    within num_embeddings"). alignkit refuses zero3_init_flag: true (`make_accelerator`)."""
    if acc.distributed_type != DistributedType.DEEPSPEED:
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        acc.state.deepspeed_plugin.set_deepspeed_weakref()  # as accelerate left it


def configure_deepspeed(acc: Accelerator, cfg: DataTrainingOptions) -> None:
    """Fill the DeepSpeed config from the run's options before `prepare`: accelerate takes the
    micro-batch size from a dataloader, and alignkit batches by hand (no dataloader)."""
    ds = acc.state.deepspeed_plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds["train_batch_size"] = cfg.batch_size * cfg.grad_accum * acc.num_processes
    ds["gradient_clipping"] = float(cfg.max_grad_norm)  # the engine clips (0: off)
    acc.gradient_accumulation_steps = cfg.grad_accum
    stage = ds.get("zero_optimization", {}).get("stage")
    log.info("DeepSpeed: ZeRO stage %s on %d ranks", stage, acc.num_processes)
