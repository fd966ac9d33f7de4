"""Settings of retraining-free structured pruning (Fisher mask search under a FLOPs budget, then reconstruction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...calibration import check_max_batches
from ...method_config import MethodConfig, check_range


@dataclass
class StructuredPruningConfig(MethodConfig):
    """Remove attention heads and FFN neurons together so that ``kept_flops`` of the encoder's head and FFN
    FLOPs remain, with no fine-tuning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
    Transformers").

    Each head and neuron gets the diagonal Fisher information of a mask on its output (the squared loss
    gradient of each calibration row, summed; without ``labels`` the model's own predictions stand in). The kept set maximises the kept Fisher mass under the FLOPs budget, heads and neurons
    solved jointly across layers. With ``reconstruct`` each layer's attention-output and FFN-output
    projections are then refitted, layer by layer from the bottom, by ridge least squares so that on
    the calibration tokens the pruned layer reproduces the dense layer's projection outputs.

    Example:
        >>> compress(model, StructuredPruningConfig(kept_flops=0.5), dataloader=calibration_loader)
    """

    name: ClassVar[str] = "structured"
    kept_flops: float = field(default=0.5, metadata={"help": "Fraction of the encoder's head + FFN FLOPs to keep."})
    seq_length: int | None = field(default=None, metadata={
        "help": "Sequence length the FLOPs are counted at (attention's share grows with it); default: the mean "
                "real length of the calibration batches."})
    reconstruct: bool = field(default=True, metadata={"help": "Refit the output projections by least squares."})
    ridge: float = field(default=1e-3, metadata={
        "help": "Ridge term of the refit, relative to the mean input energy of each projection."})
    max_batches: int | None = field(default=None, metadata={"help": "Calibration batches used (default: all)."})

    def __post_init__(self) -> None:
        check_range("kept_flops", self.kept_flops, 0, 1, low_open=True, high_open=True,
                    what="fraction of head + FFN FLOPs to keep")
        check_range("seq_length", self.seq_length, 1, allow_none=True)
        check_range("ridge", self.ridge, 0, low_open=True)
        check_max_batches(self.max_batches)

    @property
    def requires_dataloader(self) -> bool:
        return True
