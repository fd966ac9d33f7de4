"""ALBERT-style cross-layer weight sharing."""

from ...registry import MethodSpec, register_method
from .config import WeightSharingConfig
from .model import SHAPE_KEYS, describe_sharing, rebuild_sharing, share_weights, tie_map

register_method(MethodSpec(
    name=WeightSharingConfig.name, config_cls=WeightSharingConfig, title="cross-layer weight sharing",
    tag="weight-sharing", apply=share_weights, rebuild=rebuild_sharing, describe=describe_sharing,
    shape_keys=SHAPE_KEYS,
))

__all__ = ["WeightSharingConfig", "share_weights", "tie_map"]
