"""hfcompress: make fine-tuned BERT-family classifiers smaller and faster, and keep them
ordinary ``transformers`` models.

Importing this package registers the ``"hfcompress"`` quantization method with transformers,
so ``AutoModel*.from_pretrained`` rebuilds compressed checkpoints.

Example:
    >>> import hfcompress
    >>> from hfcompress import TheseusCallback, TheseusConfig
    >>> trainer = Trainer(model=model, args=args, train_dataset=train,
    ...                   callbacks=[TheseusCallback(TheseusConfig(successor_layers=3, steps_for_replacing=300))])
"""

from . import integration  # noqa: F401  (registers quant_method="hfcompress")
from .adapters import get_adapter, supported_model_types
from .callbacks import CompressionCallback
from .compress import CompressCallback, compress
from .importance import IterativePruningCallback
from .integration import HfCompressConfig, get_record
from .method_config import MethodConfig
from .distillation import DistillationConfig
from .methods.ffn import FFNPruningConfig, prune_ffn_neurons
from .methods.heads import HeadPruningConfig, prune_heads
from .methods.lowrank import LowRankConfig
from .methods.movement import MovementPruningCallback, MovementPruningConfig, store_sparse
from .methods.quantization import (DynamicQuantCallback, DynamicQuantConfig, OnnxExportConfig, OnnxSequenceClassifier,
                                   QuantAwareCallback, QuantAwareConfig, export_onnx)
from .methods.sharing import WeightSharingConfig
from .methods.structured import StructuredPruningConfig
from .methods.theseus import TheseusCallback, TheseusConfig
from .methods.truncation import TruncationConfig
from .methods.vocabulary import VocabularyPruningConfig, prune_vocabulary
from .pipeline import run_pipeline
from .runtimes.openvino import OpenVINOExportConfig, OpenVINOSequenceClassifier, export_openvino
from .registry import MethodSpec, register_method
from .search import search
from .trainer import CompressionTrainer
from .hub import install_model_push_card

install_model_push_card()  # model.push_to_hub of a compressed model uploads hfcompress's card

__version__ = "0.1.0"

__all__ = [
    "CompressCallback",
    "CompressionCallback",
    "CompressionTrainer",
    "DistillationConfig",
    "DynamicQuantCallback",
    "DynamicQuantConfig",
    "FFNPruningConfig",
    "HeadPruningConfig",
    "HfCompressConfig",
    "IterativePruningCallback",
    "LowRankConfig",
    "MethodConfig",
    "MethodSpec",
    "MovementPruningCallback",
    "MovementPruningConfig",
    "OnnxExportConfig",
    "OnnxSequenceClassifier",
    "OpenVINOExportConfig",
    "OpenVINOSequenceClassifier",
    "QuantAwareCallback",
    "QuantAwareConfig",
    "StructuredPruningConfig",
    "TheseusCallback",
    "TheseusConfig",
    "TruncationConfig",
    "VocabularyPruningConfig",
    "WeightSharingConfig",
    "compress",
    "export_onnx",
    "export_openvino",
    "get_adapter",
    "get_record",
    "prune_ffn_neurons",
    "prune_heads",
    "prune_vocabulary",
    "register_method",
    "run_pipeline",
    "search",
    "store_sparse",
    "supported_model_types",
]
