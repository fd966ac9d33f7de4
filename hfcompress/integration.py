"""The compression record and its save/load integration with ``transformers``.

Importing hfcompress registers ``quant_method="hfcompress"`` with transformers, the way its own
quantizers are registered. A compressed model carries its record in
``config.quantization_config = {"quant_method": "hfcompress", "steps": [...]}``; on
``from_pretrained`` transformers builds the standard skeleton, hands it to
:class:`HfCompressQuantizer`, which replays each step's *structure* (not its weights), and then
loads the safetensors weights into the reshaped skeleton.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

from transformers import PreTrainedModel
from transformers.quantizers.auto import register_quantization_config, register_quantizer
from transformers.quantizers.base import HfQuantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

logger = logging.getLogger(__name__)

QUANT_METHOD = "hfcompress"

Rebuilder = Callable[[PreTrainedModel, dict], None]
_REBUILDERS: dict[str, Rebuilder | None] = {}
_RUNTIME_QUANTIZED: set[str] = set()


def register_step(method: str, rebuild: Rebuilder | None, *, runtime_quantized: bool = False) -> None:
    """Declare a record step type.

    ``rebuild(model, step)`` reshapes a freshly built (usually meta-device) model so the saved
    weights fit; ``None`` means the step leaves a standard architecture and is provenance only.
    ``runtime_quantized`` steps keep the model flagged as quantized after loading (int8 modules).
    """
    _REBUILDERS[method] = rebuild
    if runtime_quantized:
        _RUNTIME_QUANTIZED.add(method)


def registered_steps() -> list[str]:
    return sorted(_REBUILDERS)


@register_quantization_config(QUANT_METHOD)
class HfCompressConfig(QuantizationConfigMixin):
    """The compression record: ordered steps, each a dict with a ``method`` key.

    Example:
        >>> HfCompressConfig(steps=[{"method": "heads", "kept_heads": [[0, 2], [1]]}]).to_dict()["quant_method"]
        'hfcompress'
    """

    def __init__(self, steps: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        kwargs.pop("quant_method", None)
        self.quant_method = QUANT_METHOD
        self.steps = [dict(step) for step in (steps or [])]
        for step in self.steps:
            if "method" not in step:
                raise ValueError(f"Every hfcompress record step needs a 'method' key; got {step!r}.")
        # Keep unknown top-level fields (written by a newer hfcompress) rather than dropping them.
        self.extra = kwargs

    def to_dict(self) -> dict[str, Any]:
        return {"quant_method": QUANT_METHOD, "steps": copy.deepcopy(self.steps), **copy.deepcopy(self.extra)}

    def to_diff_dict(self) -> dict[str, Any]:
        return self.to_dict()


def get_record(model: PreTrainedModel) -> HfCompressConfig | None:
    """The model's compression record, or ``None`` for an uncompressed model."""
    record = getattr(model.config, "quantization_config", None)
    if record is None:
        return None
    if isinstance(record, dict):
        if record.get("quant_method") != QUANT_METHOD:
            raise ValueError(
                f"The model already carries a quantization_config of another method "
                f"({record.get('quant_method')!r}); hfcompress cannot add its record to it."
            )
        return HfCompressConfig(**record)
    if isinstance(record, HfCompressConfig):
        return record
    raise ValueError(
        f"The model is quantized with {getattr(record, 'quant_method', record)!r}; hfcompress only records "
        "steps on models it compressed itself. Start from the unquantized model."
    )


def append_step(model: PreTrainedModel, step: dict[str, Any]) -> None:
    """Add one step to the model's record (creating the record if needed)."""
    record = get_record(model) or HfCompressConfig()
    record.steps.append(copy.deepcopy(step))
    _set_record(model, record)


def _set_record(model: PreTrainedModel, record: HfCompressConfig) -> None:
    model.config.quantization_config = record
    base = getattr(model, "base_model", None)
    if base is not None and base is not model and getattr(base, "config", None) is not model.config:
        base.config.quantization_config = record


def rebuild_structure(model: PreTrainedModel, steps: list[dict[str, Any]]) -> None:
    """Replay the structural part of every step, in order, on a freshly built model."""
    for step in steps:
        method = step["method"]
        if method not in _REBUILDERS:
            raise ValueError(
                f"This checkpoint's hfcompress record has a step {method!r} that this version of "
                f"hfcompress does not know (known: {', '.join(registered_steps())}). Upgrade hfcompress."
            )
        rebuild = _REBUILDERS[method]
        if rebuild is not None:
            rebuild(model, step)


@register_quantizer(QUANT_METHOD)
class HfCompressQuantizer(HfQuantizer):
    """Rebuilds the compressed skeleton before ``from_pretrained`` loads the weights."""

    requires_calibration = False

    def __init__(self, quantization_config: HfCompressConfig, **kwargs: Any) -> None:
        super().__init__(quantization_config, **kwargs)
        if not self.pre_quantized:
            raise ValueError(
                "The hfcompress record describes a model that is already compressed; it cannot be "
                "passed to from_pretrained(quantization_config=...) to compress a model. Use "
                "hfcompress.compress(model, config) or a hfcompress callback instead."
            )

    def validate_environment(self, *args: Any, **kwargs: Any) -> None:
        return None

    def _process_model_before_weight_loading(self, model: PreTrainedModel, **kwargs: Any) -> PreTrainedModel:
        rebuild_structure(model, self.quantization_config.steps)
        return model

    def _process_model_after_weight_loading(self, model: PreTrainedModel, **kwargs: Any) -> PreTrainedModel:
        if not self._runtime_quantized():
            # Only the shapes differ from the standard model: it is a plain float model that
            # trains, casts (.half()) and saves like any other, with the record kept in its config.
            model.hf_quantizer = None
            model.is_quantized = False
            model.quantization_method = None
            for module in model.modules():
                if isinstance(module, PreTrainedModel) and hasattr(module.config, "_is_quantized"):
                    module.config._is_quantized = False
        return model

    def is_serializable(self, **kwargs: Any) -> bool:
        return True

    def _runtime_quantized(self) -> bool:
        return any(step["method"] in _RUNTIME_QUANTIZED for step in self.quantization_config.steps)

    @property
    def is_trainable(self) -> bool:
        # Reshaped float models train like any other; int8 weights are inference-only.
        return not self._runtime_quantized()

    @property
    def is_qat_trainable(self) -> bool:
        return not self._runtime_quantized()
