"""Settings of FFN-neuron pruning by importance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...importance import UnitPruningConfig


@dataclass
class FFNPruningConfig(UnitPruningConfig):
    """Remove the least important FFN neurons (intermediate units), by gate-gradient importance.

    Importance of neuron n is E_x |∂L/∂ξ_n| for a gate on its activation (Michel et al. 2019's
    head importance applied to neurons), L2-normalised per layer; ``target`` is the fraction removed,
    ranked within each layer (``scope="layer"``) or across the model, in ``iterations`` rounds.

    Example:
        >>> compress(model, FFNPruningConfig(target=0.5), dataloader=train_loader)
    """

    name: ClassVar[str] = "ffn"
    unit_description: ClassVar[str] = "FFN neurons"
    target: float = field(default=0.5, metadata={"help": "Fraction of FFN neurons to remove, in (0, 1)."})
    scope: str = field(default="layer", metadata={"help": "Rank neurons across the model (global) or per layer."})
