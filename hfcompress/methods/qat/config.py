"""Settings of quantization-aware fine-tuning (int8 weights and activations simulated while training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig, check_choice
from ..quantization.config import MODULE_GROUPS, WEIGHT_BITS

BACKENDS = ("torch", "onnxruntime")


@dataclass
class QuantAwareConfig(MethodConfig):
    """Fine-tune with the int8 rounding simulated, so the weights settle where int8 loses least; then convert.

    Every selected linear computes, in training and evaluation alike, what the int8 kernels compute: weights
    rounded per output channel to ``weight_bits`` (symmetric, the grid :class:`DynamicQuantConfig` uses) and
    inputs rounded per tensor to 8 (or 7) bits over their own [min, max] range, as the dynamic kernels of torch
    and ONNX Runtime quantize activations; gradients pass the rounding unchanged (straight-through). At the end
    of training ``backend="torch"`` converts the model with ``DynamicQuantConfig(modules, weight_bits,
    embeddings)``: the same int8 modules, record, save/load and card as post-training int8. With
    ``backend="onnxruntime"`` the model stays float, ready for ``export_onnx(model, folder, int8=True,
    weight_bits=...)`` (same grid).

    Example:
        >>> trainer = CompressionTrainer(model=model, args=args, train_dataset=train, teacher=float_model,
        ...                              distillation=DistillationConfig(), compression=[QuantAwareConfig()])
        >>> Trainer(model=model, args=args, train_dataset=train, callbacks=[QuantAwareCallback(QuantAwareConfig())])
    """

    name: ClassVar[str] = "qat"
    backend: str = field(default="torch", metadata={
        "help": "torch (convert to int8 modules at the end) or onnxruntime (stay float; export_onnx(int8=True))"})
    modules: list[str] = field(default_factory=lambda: ["attention", "ffn"],
                               metadata={"help": "Linear groups trained for int8: attention ffn (or ffn_in, ffn_out)"})
    weight_bits: int | None = field(default=None, metadata={
        "help": "7 or 8; default: what DynamicQuantConfig picks on this CPU (torch), 7 (onnxruntime, as export_onnx)"})
    embeddings: bool = field(default=False, metadata={"help": "torch backend: also store the word embedding as int8"})

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, BACKENDS)
        if self.weight_bits is not None and self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be 7 or 8 (or unset); got {self.weight_bits!r}.")
        unknown = [m for m in self.modules if m not in MODULE_GROUPS]
        if unknown or not self.modules:
            raise ValueError(f"modules must be a non-empty list of {', '.join(MODULE_GROUPS)}; got {self.modules!r}.")
