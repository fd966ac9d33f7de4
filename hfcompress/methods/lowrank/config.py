"""Settings of low-rank factorization by truncated SVD."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig
from ...calibration import check_max_batches

TARGETS = ("attention", "ffn", "embeddings")
ALLOCATIONS = ("uniform", "global")


@dataclass
class LowRankConfig(MethodConfig):
    """Replace W (out x in) by two factors (out x r)(r x in) from a truncated SVD.

    Choose r with exactly one of: ``rank`` (fixed r), ``energy`` (smallest r keeping that
    fraction of the squared singular values, per matrix), or ``param_ratio`` (r so that the two
    factors hold that fraction of W's parameters). ``targets``: "attention", "ffn",
    "embeddings" (ALBERT's factorized V x E + E x H word embedding).

    ``allocation`` (with ``param_ratio``): "uniform" gives every encoder matrix the same share;
    "global" treats ``param_ratio`` as one budget over all targeted encoder matrices and spends it
    where a rank removes the most squared reconstruction error per parameter, so ranks differ per
    layer and role (on MiniLM-L6 SST-2 uniform was the better start before fine-tuning: see
    benchmarks/RESULTS.md). Matrices that would need (nearly) full rank stay dense; the
    embedding, if targeted, keeps the uniform share.

    ``activation_aware=True`` fits each factorization to the layer's outputs on calibration data
    instead of to its weights (SVD-LLM's whitened SVD): pass ``compress(..., dataloader=...)``;
    ``max_batches`` of it are run through the model once. Ranks (``energy``, ``global``) are then
    chosen on the whitened spectrum too. The word embedding, if targeted, uses the plain SVD.

    Example:
        >>> compress(model, LowRankConfig(param_ratio=0.5, targets=["attention", "ffn"]))
        >>> compress(model, LowRankConfig(param_ratio=0.5, allocation="global"))
        >>> compress(model, LowRankConfig(param_ratio=0.5, activation_aware=True, max_batches=32), dataloader=loader)
    """

    name: ClassVar[str] = "lowrank"

    rank: int | None = field(default=None, metadata={"help": "Fixed rank r for every target."})
    energy: float | None = field(default=None, metadata={"help": "Fraction of singular-value energy to keep."})
    param_ratio: float | None = field(
        default=None, metadata={"help": "Fraction of the parameters kept: per matrix, or in total with allocation=global."}
    )
    targets: list[str] = field(default_factory=lambda: ["attention", "ffn"],
                               metadata={"help": "What to factorize: attention ffn embeddings"})
    allocation: str = field(default="uniform", metadata={"help": "With param_ratio: uniform (each matrix) or "
                                                                 "global (one budget, ranks per layer)."})
    activation_aware: bool = field(default=False, metadata={"help": "Fit factors to layer outputs on calibration "
                                                                    "data (needs a dataloader)."})
    max_batches: int | None = field(default=None, metadata={"help": "Calibration batches for activation_aware."})

    def __post_init__(self) -> None:
        given = [n for n in ("rank", "energy", "param_ratio") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"Give exactly one of rank, energy, param_ratio; got {given or 'none'}.")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank must be a positive integer; got {self.rank!r}.")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(f"energy must lie in (0, 1]; got {self.energy}.")
        if self.param_ratio is not None and not 0 < self.param_ratio < 1:
            raise ValueError(f"param_ratio must lie in (0, 1) (1 or more would not compress); got {self.param_ratio}.")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}; got {self.allocation!r}.")
        if self.allocation == "global" and self.param_ratio is None:
            raise ValueError("allocation='global' spends a parameter budget: give param_ratio (not rank or energy).")
        check_max_batches(self.max_batches)
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"targets must be a non-empty subset of {TARGETS}; got {self.targets!r}.")

    @property
    def requires_dataloader(self) -> bool:
        """Whether ``compress`` needs ``dataloader=`` for this config."""
        return self.activation_aware

