"""Layer truncation: keep the first or evenly spaced encoder layers (fine-tune, ideally distil, afterwards)."""

from ...registry import LayerStage, MethodSpec, register_method
from .config import TruncationConfig
from .model import describe_truncation, kept_layer_indices, truncate_layers

# Truncation alone loses most of what the dropped layers knew: a recipe's stage distils logits and every layer's
# output from the original unless it says otherwise.
DEFAULT_DISTILLATION = {"teacher": "original", "alpha": 0.5, "temperature": 2.0, "hidden_weight": 1.0}

# The result is a standard architecture with fewer layers: the record step is provenance only.
register_method(MethodSpec(
    name=TruncationConfig.name, config_cls=TruncationConfig, title="layer truncation", tag="layer-truncation",
    apply=truncate_layers, rebuild=None, describe=describe_truncation, loads_without_hfcompress=True,
    layer_stage=LayerStage("truncate", keys=("keep",), distillation=DEFAULT_DISTILLATION,
                           build=lambda layers, stage: TruncationConfig.from_dict(
                               {"layers": layers, "keep": stage.get("keep", "evenly")})),
))

__all__ = ["TruncationConfig", "kept_layer_indices", "truncate_layers"]
