"""hfcompress: make fine-tuned BERT-family classifiers smaller and faster, and keep them
ordinary ``transformers`` models.

Importing this package registers the ``"hfcompress"`` quantization method with transformers,
so ``AutoModel*.from_pretrained`` rebuilds compressed checkpoints.
"""

from . import integration  # noqa: F401  (registers quant_method="hfcompress")
from .adapters import get_adapter, supported_model_types
from .integration import HfCompressConfig, get_record
from .methods.heads import prune_heads

__version__ = "0.1.0"

__all__ = [
    "HfCompressConfig",
    "get_adapter",
    "get_record",
    "prune_heads",
    "supported_model_types",
]
