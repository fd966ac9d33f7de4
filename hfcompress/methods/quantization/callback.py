"""Quantize as the last step of a ``Trainer`` run."""

from __future__ import annotations

from ...callbacks import CompressionCallback

from .config import DynamicQuantConfig
from .model import quantize_dynamic_int8


class DynamicQuantCallback(CompressionCallback):
    """At ``on_train_end``, turn the trained model's linears into int8 (torch backend).

    Put it after other compression callbacks so it quantizes their final model.

    Example:
        >>> trainer = Trainer(..., callbacks=[TheseusCallback(theseus), DynamicQuantCallback(DynamicQuantConfig())])
        >>> trainer.train(); trainer.model.save_pretrained("int8-successor")
    """

    def __init__(self, config: DynamicQuantConfig | None = None) -> None:
        self.config = config or DynamicQuantConfig()

    def on_train_end(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        # rounding="gptq" calibrates on the run's own training batches.
        quantize_dynamic_int8(model, self.config, dataloader=train_dataloader if self.config.requires_dataloader else None)
