"""Settings of ALBERT-style cross-layer weight sharing (Lan et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig
from ...calibration import check_max_batches

SHARE = ("layer", "attention", "ffn")
INITS = ("first", "mean", "regmean")
PATTERNS = ("consecutive", "cycle")


@dataclass
class WeightSharingConfig(MethodConfig):
    """Tie encoder layers into groups that use one set of weights.

    Give explicit ``groups`` (lists of layer indices) or ``group_size`` (every n consecutive
    layers; ``group_size`` = number of layers shares one layer across the model). With
    ``pattern="cycle"`` a group of ``group_size`` takes layers L/n apart instead (Takase & Kiyono
    2021): for 6 layers and n=2, [0, 3], [1, 4], [2, 5], so with ``init="first"`` the model starts
    as its first 3 layers run twice (0 1 2 0 1 2). ``share``
    picks what is tied: whole layers, only attention (q, k, v, output), or only the FFN.
    The shared weights start as the group's first layer (``init="first"``), the mean of the
    group (``"mean"``), or, for the linears, the weights that best reproduce every member's
    outputs on calibration data (``"regmean"``, RegMean: W = (sum_i W_i G_i)(sum_i G_i)^-1 with
    G_i the second moment of layer i's inputs; other parameters take the mean; needs
    ``compress(..., dataloader=...)``, ``max_batches`` of it). Fine-tune afterwards.
    ``linear_weights_only=True`` ties only the linears' weight matrices: every layer keeps its
    own biases and LayerNorms (about 1% of a layer's parameters), so tied layers can still
    shift and rescale differently at almost no cost in size.

    Example:
        >>> compress(model, WeightSharingConfig(group_size=2, share="layer", init="mean"))
        >>> compress(model, WeightSharingConfig(group_size=2, init="regmean", max_batches=32), dataloader=loader)
        >>> compress(model, WeightSharingConfig(group_size=2, linear_weights_only=True))
        >>> compress(model, WeightSharingConfig(group_size=2, pattern="cycle"))
    """

    name: ClassVar[str] = "sharing"

    groups: list[list[int]] | None = field(default=None, metadata={"help": "Explicit groups of layer indices."})
    group_size: int | None = field(default=None, metadata={"help": "Tie groups of n layers (see pattern)."})
    pattern: str = field(default="consecutive", metadata={
        "help": "How group_size groups layers: consecutive (0+1, 2+3, ...) | cycle (for 6 layers, n=2: 0+3, 1+4, 2+5)."})
    share: str = field(default="layer", metadata={"help": "What to tie: layer | attention | ffn."})
    init: str = field(default="first", metadata={"help": "Shared weights start as: first | mean | regmean."})
    max_batches: int | None = field(default=None, metadata={"help": "Calibration batches for init=regmean."})
    linear_weights_only: bool = field(default=False, metadata={
        "help": "Tie only the linears' weight matrices; each layer keeps its own biases and LayerNorms."})

    def __post_init__(self) -> None:
        if (self.groups is None) == (self.group_size is None):
            raise ValueError("Give exactly one of groups=[[0, 1], [2, 3]] or group_size=n.")
        if self.group_size is not None and self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one shares nothing); got {self.group_size}.")
        if self.groups is not None:
            flat = [i for group in self.groups for i in group]
            if any(len(group) < 2 for group in self.groups):
                raise ValueError(f"Every group needs at least 2 layers; got {self.groups}.")
            if len(flat) != len(set(flat)) or any(not isinstance(i, int) or i < 0 for i in flat):
                raise ValueError(f"groups must hold distinct non-negative layer indices; got {self.groups}.")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}; got {self.pattern!r}.")
        if self.groups is not None and self.pattern != "consecutive":
            raise ValueError("pattern applies to group_size; explicit groups already say which layers share.")
        if self.share not in SHARE:
            raise ValueError(f"share must be one of {SHARE}; got {self.share!r}.")
        check_max_batches(self.max_batches)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}.")

    def resolve_groups(self, num_layers: int) -> list[list[int]]:
        """The explicit groups for a model with ``num_layers`` layers."""
        if self.groups is not None:
            bad = [i for group in self.groups for i in group if i >= num_layers]
            if bad:
                raise ValueError(f"groups name layers {bad}, but the model has layers 0..{num_layers - 1}.")
            return [list(group) for group in self.groups]
        if num_layers % self.group_size:
            raise ValueError(f"group_size={self.group_size} does not divide the model's {num_layers} layers; "
                             f"use one of {[n for n in range(2, num_layers + 1) if num_layers % n == 0]} or explicit groups.")
        if self.pattern == "cycle":
            stride = num_layers // self.group_size
            return [list(range(start, num_layers, stride)) for start in range(stride)]
        return [list(range(start, start + self.group_size)) for start in range(0, num_layers, self.group_size)]

    @property
    def requires_dataloader(self) -> bool:
        """Whether ``compress`` needs ``dataloader=`` for this config."""
        return self.init == "regmean"

