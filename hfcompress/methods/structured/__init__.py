"""Retraining-free structured pruning: heads and FFN neurons removed under a FLOPs budget, layers refitted."""

from ...registry import MethodSpec, register_method
from .config import StructuredPruningConfig
from ...reconstruction import reconstruct
from .model import SHAPE_KEYS, describe_structured, fisher_information, prune_retraining_free, rebuild_structured, search_masks

register_method(MethodSpec(
    name=StructuredPruningConfig.name, config_cls=StructuredPruningConfig,
    title="retraining-free structured pruning (Fisher mask search, least-squares reconstruction)",
    tag="structured-pruning", apply=prune_retraining_free, rebuild=rebuild_structured, describe=describe_structured,
    shape_keys=SHAPE_KEYS,
))

__all__ = ["StructuredPruningConfig", "fisher_information", "prune_retraining_free", "reconstruct", "search_masks"]
