"""Settings of attention-head pruning by importance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...calibration import check_max_batches
from ...method_config import MethodConfig, check_choice, check_range

SCOPES = ("global", "layer")


@dataclass
class HeadPruningConfig(MethodConfig):
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
    target: float = field(default=0.5, metadata={"help": "Fraction of attention heads to remove, in (0, 1)."})
    scope: str = field(default="global", metadata={"help": "Rank heads across the model (global) or per layer."})
    iterations: int = field(default=1, metadata={"help": "Prune in this many rounds, recomputing importance."})
    max_batches: int | None = field(default=None, metadata={"help": "Batches of the dataloader used for importance."})

    def __post_init__(self) -> None:
        check_range("target", self.target, 0, 1, low_open=True, high_open=True,
                    what="fraction of attention heads to remove")
        check_choice("scope", self.scope, SCOPES)
        check_range("iterations", self.iterations, 1)
        check_max_batches(self.max_batches)

    @property
    def requires_dataloader(self) -> bool:
        return True
