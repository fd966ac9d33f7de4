"""Quantization-aware fine-tuning: int8 rounding simulated while training, then the same int8 conversion as
post-training dynamic quantization (torch) or an ONNX Runtime int8 export."""

from ...registry import MethodSpec, register_method
from .callback import QuantAwareCallback, finish_quant_aware, simulate_int8, stop_simulating
from .config import QuantAwareConfig
from .layers import fake_quant_activation, fake_quant_weight


def describe_qat(step: dict) -> dict:
    info = step.get("info", {})
    described = {"fine-tuned with int8 simulated": f"{info.get('steps')} steps" if info.get("steps") else "yes",
                 "weight bits": info.get("weight_bits"), "activation bits": info.get("activation_bits"),
                 "converted to": "torch int8 modules (next step)" if step["config"].get("backend") == "torch"
                 else "float, for export_onnx(int8=True)"}
    return {k: v for k, v in described.items() if v is not None}


# The conversion is its own int8_dynamic step; this step is provenance only.
register_method(MethodSpec(
    name=QuantAwareConfig.name, config_cls=QuantAwareConfig, title="quantization-aware fine-tuning", tag="qat",
    callback=QuantAwareCallback, rebuild=None, describe=describe_qat, loads_without_hfcompress=True,
))

__all__ = ["QuantAwareCallback", "QuantAwareConfig", "fake_quant_activation", "fake_quant_weight",
           "finish_quant_aware", "simulate_int8", "stop_simulating"]
