"""Layer truncation: keep the first or evenly spaced encoder layers (fine-tune, ideally distil, afterwards)."""

from ...registry import MethodSpec, register_method
from .config import TruncationConfig
from .model import describe_truncation, kept_layer_indices, truncate_layers

# The result is a standard architecture with fewer layers: the record step is provenance only.
register_method(MethodSpec(
    name=TruncationConfig.name, config_cls=TruncationConfig, title="layer truncation", tag="layer-truncation",
    apply=truncate_layers, rebuild=None, describe=describe_truncation, loads_without_hfcompress=True,
))

__all__ = ["TruncationConfig", "kept_layer_indices", "truncate_layers"]
