"""Structured pruning by importance: attention heads and FFN neurons, physically removed."""

from ...compress import register_post_training_method
from .callback import IterativePruningCallback
from .config import FFNPruningConfig, HeadPruningConfig
from .importance import compute_importance
from .prune import (
    prune_by_importance,
    prune_by_importance_round,
    prune_ffn_neurons,
    prune_heads,
    select_units_to_prune,
)

register_post_training_method(HeadPruningConfig, prune_by_importance)
register_post_training_method(FFNPruningConfig, prune_by_importance)

__all__ = [
    "FFNPruningConfig",
    "HeadPruningConfig",
    "IterativePruningCallback",
    "compute_importance",
    "prune_by_importance",
    "prune_by_importance_round",
    "prune_ffn_neurons",
    "prune_heads",
    "select_units_to_prune",
]
