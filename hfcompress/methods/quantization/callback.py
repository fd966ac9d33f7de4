"""Quantize as the last step of a ``Trainer`` run."""

from __future__ import annotations

from typing import Any

from ...callbacks import CompressionCallback

from .config import DynamicQuantConfig, QuantAwareConfig
from .model import finish_quant_aware, quantize_dynamic_int8, simulate_int8


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


class QuantAwareCallback(CompressionCallback):
    """Simulate int8 in the selected linears from the first step; at ``on_train_end`` convert (see
    :class:`QuantAwareConfig`). Evaluation during training sees the simulated int8 model.

    Example:
        >>> Trainer(model=model, args=args, train_dataset=train, callbacks=[QuantAwareCallback(QuantAwareConfig())])
        >>> trainer.train(); trainer.model.save_pretrained("int8")   # Int8DynamicLinear modules, reloads as int8
    """

    def __init__(self, config: QuantAwareConfig | None = None) -> None:
        self.config = config or QuantAwareConfig()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        simulate_int8(model, self.config)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        finish_quant_aware(model, self.config, steps=state.global_step)
