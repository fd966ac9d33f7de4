"""Quantization-aware fine-tuning inside a ``Trainer``: simulate int8 while training, convert at the end."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PreTrainedModel

from ...callbacks import CompressionCallback
from ...integration import append_step, make_step
from ..quantization import DynamicQuantConfig, quantize_dynamic_int8
from ..quantization.kernels import default_weight_bits, full_range_int8_kernels
from ..quantization.model import target_linear_names
from .config import QuantAwareConfig
from .layers import attach_fake_quant, detach_fake_quant, weight_qmax


def resolved_weight_bits(config: QuantAwareConfig) -> int:
    """The weight bits the conversion will use: the config's, or the backend's default on this CPU."""
    if config.weight_bits is not None:
        return config.weight_bits
    return default_weight_bits() if config.backend == "torch" else 7


def activation_bits(config: QuantAwareConfig) -> int:
    """Bits of the dynamically quantized inputs at inference: 8, except torch's 8-bit weights on CPUs whose int8
    kernels would saturate (7, torch.ao's reduce_range), as :class:`Int8DynamicLinear` decides."""
    if config.backend == "onnxruntime" or resolved_weight_bits(config) == 7 or full_range_int8_kernels():
        return 8
    return 7


def simulate_int8(model: PreTrainedModel, config: QuantAwareConfig) -> list[str]:
    """Attach the int8 simulation to the linears ``config.modules`` selects; their names.

    Example:
        >>> simulate_int8(model, QuantAwareConfig(modules=["attention", "ffn"]))
    """
    names = target_linear_names(model, DynamicQuantConfig(modules=list(config.modules)))
    weight_max, bits = weight_qmax(resolved_weight_bits(config), config.backend), activation_bits(config)
    for name in names:
        attach_fake_quant(model.get_submodule(name), weight_max, bits)
    return names


def stop_simulating(model: nn.Module) -> int:
    """Remove the int8 simulation from every linear of ``model``; how many had it."""
    return sum(detach_fake_quant(module) for module in model.modules())


def finish_quant_aware(model: PreTrainedModel, config: QuantAwareConfig, steps: int | None = None) -> PreTrainedModel:
    """Stop simulating, record the fine-tune, and (torch backend) convert to the int8 modules of
    ``DynamicQuantConfig`` with the same bits; in place."""
    stop_simulating(model)
    bits = resolved_weight_bits(config)
    append_step(model, make_step(config.name, config, {}, {"weight_bits": bits, "activation_bits": activation_bits(config),
                                                           "steps": steps}))
    if config.backend == "torch":
        quantize_dynamic_int8(model, DynamicQuantConfig(modules=list(config.modules), weight_bits=bits,
                                                        embeddings=config.embeddings))
    return model


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
