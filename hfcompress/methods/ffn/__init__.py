"""FFN-neuron pruning by importance, physically removed."""

from ...registry import MethodSpec, register_method
from .config import FFNPruningConfig
from .model import SHAPE_KEYS, apply_ffn_pruning, describe_ffn, prune_ffn_neurons, rebuild_ffn

register_method(MethodSpec(
    name=FFNPruningConfig.name, config_cls=FFNPruningConfig, title="FFN-neuron pruning", tag="ffn-pruning",
    apply=apply_ffn_pruning, rebuild=rebuild_ffn, describe=describe_ffn, shape_keys=SHAPE_KEYS,
))

__all__ = ["FFNPruningConfig", "prune_ffn_neurons", "rebuild_ffn"]
