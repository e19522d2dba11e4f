"""The policy of an online run: where it starts from, and the optional initial SFT.

The PLE paper starts from an SFT model. With --sft-data the core `Trainer` (method `sft`)
trains it once into OUTPUT/sft; the online loop then starts from that run (full weights, or
with --lora its adapter merged into the base and a fresh adapter on top), and keeps training.
"""

from __future__ import annotations

import logging
from pathlib import Path

from accelerate import Accelerator
from torch import nn

from alignkit.models import load_training_model
from alignkit.online.config import OnlineConfig
from alignkit.train.trainer import Trainer

log = logging.getLogger(__name__)


def load_policy(config: OnlineConfig, model: str) -> nn.Module:
    """The policy trained from model spec `model` (`load_training_model`: with --lora, or
    when `model` is an adapter, a fresh adapter whose disabled state is `model` itself)."""
    return load_training_model(
        model, lora=config.lora_settings(), trust_remote_code=config.trust_remote_code
    )


def policy_source(config: OnlineConfig, output: Path) -> str:
    """The model spec the loop starts from (and its reference): the initial SFT's run when
    there is one, else --model."""
    return str(sft_dir(output)) if config.sft_data else config.model


def sft_dir(output: Path) -> Path:
    return output / "sft"


class _KeepProcessGroup(Accelerator):
    """An accelerator whose `end_training` leaves the process group alone: the initial SFT
    runs the core Trainer in the middle of our run, and the core's teardown would end the
    run's process group under torchrun."""

    def end_training(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def initial_sft(config: OnlineConfig, output: Path) -> None:
    """SFT on --sft-data into OUTPUT/sft with the core Trainer (once; skipped when done)."""
    target = sft_dir(output)
    if (target / "summary.json").exists():
        log.info("initial SFT already done in %s", target)
        return
    train = config.train_config(
        output=str(target),
        epochs=config.sft_epochs,
        resume=False,
        save_model=True,
        report_to=["none"],
    )
    train.validate()
    log.info("initial SFT on %s", ", ".join(train.data))
    Trainer(train, _KeepProcessGroup()).run()  # the policy as `train_config` says
