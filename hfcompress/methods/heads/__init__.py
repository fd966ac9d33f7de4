"""Attention-head pruning by importance, physically removed."""

from ...registry import MethodSpec, register_method
from .config import HeadPruningConfig
from .model import SHAPE_KEYS, apply_head_pruning, describe_heads, prune_heads, rebuild_heads

register_method(MethodSpec(
    name=HeadPruningConfig.name, config_cls=HeadPruningConfig, title="attention-head pruning", tag="head-pruning",
    apply=apply_head_pruning, rebuild=rebuild_heads, describe=describe_heads, shape_keys=SHAPE_KEYS,
))

__all__ = ["HeadPruningConfig", "prune_heads", "rebuild_heads"]
