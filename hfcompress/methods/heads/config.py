"""Settings of structured pruning by importance: attention heads and FFN neurons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...calibration import check_max_batches

SCOPES = ("global", "layer")


def _check(target: float, scope: str, iterations: int, max_batches: int | None, what: str) -> None:
    if not 0 < target < 1:
        raise ValueError(f"target is the fraction of {what} to remove and must lie in (0, 1); got {target}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}; got {scope!r}.")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1; got {iterations}.")
    check_max_batches(max_batches)


@dataclass
class HeadPruningConfig:
    """Remove the least important attention heads (Michel et al. 2019).

    Importance of head h is E_x |∂L/∂ξ_h| for a gate ξ_h on the head's output, accumulated over
    the dataloader and L2-normalised per layer. ``target`` heads (a fraction of all heads) are
    removed, ranked across the model (``scope="global"``) or within each layer (``"layer"``),
    in ``iterations`` rounds with importance recomputed in between. A layer keeps at least one
    head.

    Example:
        >>> compress(model, HeadPruningConfig(target=0.5), dataloader=train_loader)
    """

    target: float = field(default=0.5, metadata={"help": "Fraction of attention heads to remove, in (0, 1)."})
    scope: str = field(default="global", metadata={"help": "Rank heads across the model (global) or per layer."})
    iterations: int = field(default=1, metadata={"help": "Prune in this many rounds, recomputing importance."})
    max_batches: int | None = field(default=None, metadata={"help": "Batches of the dataloader used for importance."})
    method: str = field(default="heads", init=False)

    def __post_init__(self) -> None:
        _check(self.target, self.scope, self.iterations, self.max_batches, "heads")

    @property
    def requires_dataloader(self) -> bool:
        """Whether ``compress`` needs ``dataloader=`` for this config."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FFNPruningConfig:
    """Remove the least important FFN neurons (intermediate units), by the same gate-gradient importance.

    Example:
        >>> compress(model, FFNPruningConfig(target=0.5), dataloader=train_loader)
    """

    target: float = field(default=0.5, metadata={"help": "Fraction of FFN neurons to remove, in (0, 1)."})
    scope: str = field(default="layer", metadata={"help": "Rank neurons across the model (global) or per layer."})
    iterations: int = field(default=1, metadata={"help": "Prune in this many rounds, recomputing importance."})
    max_batches: int | None = field(default=None, metadata={"help": "Batches of the dataloader used for importance."})
    method: str = field(default="ffn", init=False)

    def __post_init__(self) -> None:
        _check(self.target, self.scope, self.iterations, self.max_batches, "FFN neurons")

    @property
    def requires_dataloader(self) -> bool:
        """Whether ``compress`` needs ``dataloader=`` for this config."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
