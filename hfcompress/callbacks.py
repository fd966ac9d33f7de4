"""``CompressionCallback``: what every hfcompress callback may offer a ``Trainer`` beyond ``TrainerCallback``.

A plain ``transformers.Trainer`` never calls these hooks, so a callback must do its work there
without them (hfcompress callbacks do) or refuse at ``on_init_end``. ``CompressionTrainer`` calls
them where a callback alone cannot reach: the optimizer as it is built (so a resumed run loads
its state into the right groups) and the distillation loss.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import TrainerCallback


class CompressionCallback(TrainerCallback):
    """Base of hfcompress's callbacks.

    Example:
        >>> class MyCallback(CompressionCallback):
        ...     def extend_optimizer(self, optimizer, scheduler, model):
        ...         optimizer.add_param_group({"params": [model.extra], "lr": 1e-2})
    """

    def extend_optimizer(self, optimizer: Any, scheduler: Any, model: nn.Module) -> None:
        """Called by ``CompressionTrainer`` right after it builds the optimizer (before a resume loads its state)."""

    def hidden_state_depths(self, model: nn.Module) -> list[float] | None:
        """Depth fractions (0..1) of the last forward's layer outputs, when the layer stack changes per forward.

        Hidden-state distillation matches each student output to the teacher layer at the same depth.
        """
        return None
