"""Int8: dynamic quantization (torch modules that save and reload through the Auto classes; ONNX Runtime export,
dynamic or static), its accuracy guard, and quantization-aware fine-tuning that ends in the same int8 forms."""

from ...registry import MethodSpec, register_method
from ...runtimes import RuntimeSpec, register_runtime
from .callback import DynamicQuantCallback, QuantAwareCallback
from .config import DynamicQuantConfig, OnnxExportConfig, QuantAwareConfig
from .layers import Int8DynamicLinear, Int8StoredEmbedding, fake_quant_activation, fake_quant_weight
from .model import (SHAPE_KEYS, describe_int8, describe_qat, finish_quant_aware, quantize_dynamic_int8, rebuild_int8,
                    simulate_int8, stop_simulating)
from .onnx import ONNX_FILE, OnnxSequenceClassifier, export_onnx

register_method(MethodSpec(
    name=DynamicQuantConfig.name, config_cls=DynamicQuantConfig, title="dynamic int8 quantization", tag="int8",
    apply=quantize_dynamic_int8, rebuild=rebuild_int8, describe=describe_int8, shape_keys=SHAPE_KEYS,
    runtime_quantized=True,
))
# Quantization-aware fine-tuning: its conversion is an int8_dynamic step; this step is provenance only.
register_method(MethodSpec(
    name=QuantAwareConfig.name, config_cls=QuantAwareConfig, title="quantization-aware fine-tuning", tag="qat",
    callback=QuantAwareCallback, rebuild=None, describe=describe_qat, loads_without_hfcompress=True,
    # Converted to torch int8 modules at the end of training; an ONNX-bound QAT model stays float here.
    leaves_int8=lambda config: config.backend == "torch",
))

register_runtime(RuntimeSpec(
    name="onnxruntime", config_cls=OnnxExportConfig, export=export_onnx, runner=OnnxSequenceClassifier,
    marker=ONNX_FILE, record_key="hfcompress_onnx", formats={"onnx": {"int8": False}, "onnx_int8": {"int8": True}},
))

__all__ = ["DynamicQuantCallback", "DynamicQuantConfig", "Int8DynamicLinear", "OnnxExportConfig", "Int8StoredEmbedding",
           "OnnxSequenceClassifier", "QuantAwareCallback", "QuantAwareConfig", "export_onnx", "fake_quant_activation",
           "fake_quant_weight", "finish_quant_aware", "quantize_dynamic_int8", "simulate_int8", "stop_simulating"]
