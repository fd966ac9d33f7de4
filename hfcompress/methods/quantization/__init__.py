"""Dynamic int8 quantization: torch (saves and reloads through the Auto classes) and ONNX Runtime."""

from ...compress import register_post_training_method
from .callback import DynamicQuantCallback
from .config import DynamicQuantConfig
from .dynamic import Int8DynamicLinear, Int8StoredEmbedding, quantize_dynamic_int8
from .onnx import OnnxSequenceClassifier, export_onnx


def _compress(model, config: DynamicQuantConfig, dataloader=None):
    if config.backend != "torch":
        raise ValueError("compress() keeps a torch model; for backend='onnxruntime' call "
                         "hfcompress.export_onnx(model, folder, int8=True) (or `hfcompress export --onnx --int8`).")
    return quantize_dynamic_int8(model, config, dataloader=dataloader)


register_post_training_method(DynamicQuantConfig, _compress)

__all__ = ["DynamicQuantCallback", "DynamicQuantConfig", "Int8DynamicLinear", "Int8StoredEmbedding", "OnnxSequenceClassifier",
           "export_onnx", "quantize_dynamic_int8"]
