"""FFN-neuron pruning by importance, physically removed."""

# Ranked by gate-gradient importance, shared with the other unit kind (heads / FFN neurons).
from ...importance import prune_by_importance
from ...registry import MethodSpec, register_method
from .config import FFNPruningConfig
from .model import SHAPE_KEYS, describe_ffn, prune_ffn_neurons, rebuild_ffn

register_method(MethodSpec(
    name=FFNPruningConfig.name, config_cls=FFNPruningConfig, title="FFN-neuron pruning", tag="ffn-pruning",
    apply=prune_by_importance, rebuild=rebuild_ffn, describe=describe_ffn, shape_keys=SHAPE_KEYS,
    prunes_units=True,
))

__all__ = ["FFNPruningConfig", "prune_ffn_neurons", "rebuild_ffn"]
