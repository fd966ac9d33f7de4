"""Settings of FFN-neuron pruning by importance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...calibration import check_max_batches
from ...method_config import MethodConfig, check_choice, check_range

SCOPES = ("global", "layer")


@dataclass
class FFNPruningConfig(MethodConfig):
    """Remove the least important FFN neurons (intermediate units), by gate-gradient importance.

    Importance of neuron n is E_x |∂L/∂ξ_n| for a gate on its activation (Michel et al. 2019's
    head importance applied to neurons), L2-normalised per layer; ``target`` is the fraction removed,
    ranked within each layer (``scope="layer"``) or across the model, in ``iterations`` rounds.

    Example:
        >>> compress(model, FFNPruningConfig(target=0.5), dataloader=train_loader)
    """

    name: ClassVar[str] = "ffn"
    target: float = field(default=0.5, metadata={"help": "Fraction of FFN neurons to remove, in (0, 1)."})
    scope: str = field(default="layer", metadata={"help": "Rank neurons across the model (global) or per layer."})
    iterations: int = field(default=1, metadata={"help": "Prune in this many rounds, recomputing importance."})
    max_batches: int | None = field(default=None, metadata={"help": "Batches of the dataloader used for importance."})

    def __post_init__(self) -> None:
        check_range("target", self.target, 0, 1, low_open=True, high_open=True,
                    what="fraction of FFN neurons to remove")
        check_choice("scope", self.scope, SCOPES)
        check_range("iterations", self.iterations, 1)
        check_max_batches(self.max_batches)

    @property
    def requires_dataloader(self) -> bool:
        return True
