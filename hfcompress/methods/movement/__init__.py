"""Movement pruning (Sanh et al. 2020) with the magnitude baseline, and compact sparse storage."""

from ...registry import MethodSpec, register_method
from .callback import MovementPruningCallback, add_scores_group
from .config import MovementPruningConfig
from .layers import MaskedLinear, SparseStoredLinear
from .model import (SHAPE_KEYS, SPARSE_SHAPE_KEYS, SPARSE_STEP, attach_masks, describe_movement, describe_sparse,
                    fold_masks, rebuild_movement, rebuild_sparse, score_parameters, store_sparse)
from .scheduler import regularization_weight, schedule_value

register_method(MethodSpec(
    name=MovementPruningConfig.name, config_cls=MovementPruningConfig, title="movement pruning",
    tag="movement-pruning", callback=MovementPruningCallback, rebuild=rebuild_movement, describe=describe_movement,
    shape_keys=SHAPE_KEYS,
))
# Written by store_sparse (movement's sparse_storage=True, or called on any sparse model).
register_method(MethodSpec(
    name=SPARSE_STEP, config_cls=None, title="compact sparse storage (kept values + bit mask)", tag="sparse",
    rebuild=rebuild_sparse, describe=describe_sparse, shape_keys=SPARSE_SHAPE_KEYS,
))

__all__ = ["MaskedLinear", "MovementPruningCallback", "MovementPruningConfig", "SparseStoredLinear", "add_scores_group",
           "attach_masks", "fold_masks", "regularization_weight", "schedule_value", "score_parameters", "store_sparse"]
