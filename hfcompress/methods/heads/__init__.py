"""Attention-head pruning by importance, physically removed."""

# Ranked by gate-gradient importance, shared with the other unit kind (heads / FFN neurons).
from ...importance import prune_by_importance
from ...registry import MethodSpec, register_method
from .config import HeadPruningConfig
from .model import SHAPE_KEYS, describe_heads, prune_heads, rebuild_heads

register_method(MethodSpec(
    name=HeadPruningConfig.name, config_cls=HeadPruningConfig, title="attention-head pruning", tag="head-pruning",
    apply=prune_by_importance, rebuild=rebuild_heads, describe=describe_heads, shape_keys=SHAPE_KEYS,
    prunes_units=True,
))

__all__ = ["HeadPruningConfig", "prune_heads", "rebuild_heads"]
