"""ALBERT-style cross-layer weight sharing."""

from ...compress import register_post_training_method
from .config import WeightSharingConfig
from .model import share_weights, tie_map

register_post_training_method(WeightSharingConfig, share_weights)

__all__ = ["WeightSharingConfig", "share_weights", "tie_map"]
