"""The model a study process keeps for all its cells: loaded once, handed to each cell as a
fresh run would load it.

A cell's run (`study.run.CellTrainer`) seeds torch's generator and then asks for its model,
as `alignkit train` does. A fresh load draws no random numbers (`models.load_causal_lm`),
so the kept model gives the cell exactly what a fresh load gives:

- LoRA: the previous cell's adapter is removed unmerged (the base weights were frozen) and a
  new adapter is made (`models.with_new_adapter`): its weights are the seeded draw a fresh
  run makes, its parameters have the same names (peft's `default`);
- full fine-tuning: the weights are restored from a copy on the CPU, made before the first
  cell that trains them (no copy in a study of LoRA cells);
- a saved adapter (an adapter spec): merged into its base once; a cell without `lora`
  trains a fresh adapter of the saved one's shape on it, as `load_training_model` does;
- dropout off unless the cell keeps it (`disable_dropout`, as `Trainer.build_scorer`); a
  cell that keeps it after one that turned it off gets the model loaded again;
- eval mode, every base weight trainable (as `from_pretrained` returns them), gradient
  checkpointing off unless the cell turns it on.

The optimizer, scheduler and batch order are the cell's own (a new `Trainer` per cell).
"""

from __future__ import annotations

import torch
from torch import nn

from alignkit.models import (
    LoraSettings,
    disable_dropout,
    disable_gradient_checkpointing,
    is_peft,
    load_causal_lm,
    saved_adapter_settings,
    with_new_adapter,
)


class KeptModel:
    """The study model `spec`, loaded once; `fresh` gives it to the next cell."""

    def __init__(self, spec: str, trust_remote_code: bool = False) -> None:
        self.key = (spec, trust_remote_code)
        self._load()

    def _load(self) -> None:
        spec, trust_remote_code = self.key
        model = load_causal_lm(spec, trust_remote_code=trust_remote_code)
        self.saved_adapter: object | None = None  # a saved adapter's settings
        if is_peft(model):  # a saved adapter (an SFT model): merged, as `load_training_model`
            self.saved_adapter = saved_adapter_settings(model)
            model = model.merge_and_unload()  # type: ignore[operator]
        self.model: nn.Module = model
        self._pristine: dict[str, torch.Tensor] | None = None  # weights as loaded, on the CPU
        self._trained_in_place = False  # a full fine-tuning cell changed the base weights
        self._checkpointing = False
        self._dropout_off = False

    def fresh(
        self, lora: LoraSettings | None, checkpointing: bool = False, keep_dropout: bool = True
    ) -> nn.Module:
        """The model as `load_training_model(spec, lora=lora)` returns it (with dropout off
        unless `keep_dropout`), on the device it was left on (the cell moves it). With a new
        adapter (`lora`, or a saved adapter's shape), it draws from torch's generator now:
        seed it first."""
        if keep_dropout and self._dropout_off:  # the dropout rates are gone: load again
            self.model = None  # type: ignore[assignment]
            self._load()
        adapter = lora if lora is not None else self.saved_adapter
        model = self.model.unload() if is_peft(self.model) else self.model  # type: ignore[operator]
        if self._trained_in_place:
            assert self._pristine is not None
            model.load_state_dict(self._pristine)
            self._trained_in_place = False
        if self._checkpointing and not checkpointing:
            disable_gradient_checkpointing(model)
        self._checkpointing = checkpointing
        model.eval()
        model.requires_grad_(True)
        if adapter is None:  # this cell trains the base weights: keep them first
            if self._pristine is None:
                self._pristine = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            self._trained_in_place = True
        else:
            model = with_new_adapter(model, adapter)
        if not keep_dropout:
            disable_dropout(model)
            self._dropout_off = True
        self.model = model
        return model
