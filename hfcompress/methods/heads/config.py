"""Settings of attention-head pruning by importance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...importance import UnitPruningConfig


@dataclass
class HeadPruningConfig(UnitPruningConfig):
    """Remove the least important attention heads (Michel et al. 2019).

    Importance of head h is E_x |∂L/∂ξ_h| for a gate ξ_h on the head's output, accumulated over
    the dataloader and L2-normalised per layer. ``target`` heads (a fraction of all heads) are
    removed, ranked across the model (``scope="global"``) or within each layer (``"layer"``),
    in ``iterations`` rounds with importance recomputed in between. A layer keeps at least one
    head.

    Example:
        >>> compress(model, HeadPruningConfig(target=0.5), dataloader=train_loader)
    """

    name: ClassVar[str] = "heads"
    unit_description: ClassVar[str] = "attention heads"
    target: float = field(default=0.5, metadata={"help": "Fraction of attention heads to remove, in (0, 1)."})
