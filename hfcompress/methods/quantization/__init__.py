"""Dynamic int8 quantization: torch (saves and reloads through the Auto classes) and ONNX Runtime export."""

from ...registry import MethodSpec, register_method
from .callback import DynamicQuantCallback
from .config import DynamicQuantConfig
from .layers import Int8DynamicLinear, Int8StoredEmbedding
from .model import SHAPE_KEYS, describe_int8, quantize_dynamic_int8, rebuild_int8
from .onnx import OnnxSequenceClassifier, export_onnx

register_method(MethodSpec(
    name=DynamicQuantConfig.name, config_cls=DynamicQuantConfig, title="dynamic int8 quantization", tag="int8",
    apply=quantize_dynamic_int8, rebuild=rebuild_int8, describe=describe_int8, shape_keys=SHAPE_KEYS,
    runtime_quantized=True,
))

__all__ = ["DynamicQuantCallback", "DynamicQuantConfig", "Int8DynamicLinear", "Int8StoredEmbedding",
           "OnnxSequenceClassifier", "export_onnx", "quantize_dynamic_int8"]
