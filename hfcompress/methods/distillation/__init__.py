"""Knowledge distillation from a teacher, for methods that need one."""

from .config import DistillationConfig
from .loss import distillation_loss, hidden_state_loss

__all__ = ["DistillationConfig", "distillation_loss", "hidden_state_loss"]
