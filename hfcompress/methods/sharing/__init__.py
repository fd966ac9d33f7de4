"""ALBERT-style cross-layer weight sharing."""

from ...compress import register_post_training_method
from .config import WeightSharingConfig
from .model import share_weights, tie_map

register_post_training_method(WeightSharingConfig, lambda model, config, dataloader=None: share_weights(model, config))

__all__ = ["WeightSharingConfig", "share_weights", "tie_map"]
