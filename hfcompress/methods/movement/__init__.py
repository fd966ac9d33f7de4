"""Movement pruning (Sanh et al. 2020) with the magnitude baseline."""

from ...integration import register_step
from ...trainer import register_training_method
from .callback import MovementPruningCallback, add_scores_group, attach_masks, score_parameters
from .config import MovementPruningConfig
from .layers import MaskedLinear
from .scheduler import regularization_weight, schedule_value
from .sparse import SparseStoredLinear, store_sparse

# Folded masks leave a standard-shaped model (zeros); structured results add heads/ffn steps.
register_step("movement", None)
register_training_method(MovementPruningConfig, MovementPruningCallback)

__all__ = ["MaskedLinear", "MovementPruningCallback", "MovementPruningConfig", "add_scores_group", "attach_masks",
           "SparseStoredLinear", "regularization_weight", "schedule_value", "score_parameters", "store_sparse"]
