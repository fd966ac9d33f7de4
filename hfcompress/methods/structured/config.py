"""Settings of retraining-free structured pruning (Fisher mask search under a FLOPs budget, then reconstruction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...calibration import check_max_batches
from ...method_config import MethodConfig, check_range


@dataclass
class StructuredPruningConfig(MethodConfig):
    """Remove attention heads and FFN neurons together so that ``kept_flops`` of the encoder's head and FFN
    FLOPs remain (or so that the batch-1 forward takes at most ``max_latency_ms`` on this machine), with no
    fine-tuning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
    Transformers").

    Each head and neuron gets the diagonal Fisher information of a mask on its output (the squared loss
    gradient of each calibration row, summed; without ``labels`` the model's own predictions stand in). The kept set maximises the kept Fisher mass under the FLOPs budget, heads and neurons
    solved jointly across layers. A latency budget is measured, not assumed: the model is timed with every layer
    cut to each head count and to a grid of FFN widths at ``seq_length`` tokens (in ``latency_runtime``: torch, or
    each shape exported to ONNX Runtime / OpenVINO), from whatever shape it has (already pruned or truncated), and
    a knapsack over layers keeps the most Fisher mass whose predicted time fits; the chosen shape is then timed. With ``reconstruct`` each layer's attention-output and FFN-output
    projections are then refitted, layer by layer from the bottom, by ridge least squares so that on
    the calibration tokens the pruned layer reproduces the dense layer's projection outputs.

    Example:
        >>> compress(model, StructuredPruningConfig(kept_flops=0.5), dataloader=calibration_loader)
        >>> compress(model, StructuredPruningConfig(max_latency_ms=8.0), dataloader=calibration_loader)
        >>> compress(model, StructuredPruningConfig(max_latency_ms=4.0, latency_runtime="openvino_int8"),
        ...          dataloader=calibration_loader)  # met by the OpenVINO int8 export of the result
    """

    name: ClassVar[str] = "structured"
    kept_flops: float | None = field(default=None, metadata={
        "help": "Fraction of the encoder's head + FFN FLOPs to keep (default 0.5 unless max_latency_ms is given)."})
    max_latency_ms: float | None = field(default=None, metadata={
        "help": "Batch-1 forward time to fit within, measured on this machine at seq_length tokens (instead of "
                "kept_flops)."})
    latency_runtime: str = field(default="torch", metadata={
        "help": "Where max_latency_ms must hold: 'torch' (fp32, this process) or an export format ('onnx', "
                "'onnx_int8', 'openvino', 'openvino_int8'); each shape timed is then exported to it and timed by "
                "its runner."})
    latency_margin: float = field(default=0.03, metadata={
        "help": "Fraction under max_latency_ms the search aims at, so that a later timing of the result (a few "
                "percent of noise between runs) still lands within the budget; 0 aims at the budget itself."})
    seq_length: int | None = field(default=None, metadata={
        "help": "Sequence length the FLOPs are counted at (attention's share grows with it); default: the mean "
                "real length of the calibration batches."})
    rearrange: bool = field(default=False, metadata={
        "help": "Kwon et al.'s mask rearrangement: within each layer, re-choose which heads and neurons stay (same "
                "counts) by the per-row gradients' block interaction, not the diagonal Fisher alone."})
    tune_masks: bool = field(default=False, metadata={
        "help": "Kwon et al.'s mask tuning: one least-squares scale per kept head and neuron before the refit."})
    remove_layers: bool = field(default=True, metadata={
        "help": "Let the kept_flops search drop whole layers (no head and no neuron left) when that keeps more "
                "Fisher mass; the layer is removed, not kept as an empty residual block. Off: every layer keeps "
                "at least one head and one neuron."})
    reconstruct: bool = field(default=True, metadata={"help": "Refit the output projections by least squares."})
    ridge: float = field(default=1e-3, metadata={
        "help": "Ridge term of the refit, relative to the mean input energy of each projection."})
    max_batches: int | None = field(default=None, metadata={"help": "Calibration batches used (default: all)."})

    def __post_init__(self) -> None:
        if self.kept_flops is not None and self.max_latency_ms is not None:
            raise ValueError("StructuredPruningConfig takes one budget: kept_flops or max_latency_ms, not both.")
        if self.max_latency_ms is None and self.kept_flops is None:
            self.kept_flops = 0.5
        check_range("kept_flops", self.kept_flops, 0, 1, low_open=True, high_open=True, allow_none=True,
                    what="fraction of head + FFN FLOPs to keep")
        check_range("max_latency_ms", self.max_latency_ms, 0, low_open=True, allow_none=True)
        if self.latency_runtime != "torch":
            from ...runtimes import export_formats

            formats = export_formats()
            if formats and self.latency_runtime not in formats:
                raise ValueError(f"latency_runtime must be 'torch' or an export format ({', '.join(formats)}); got "
                                 f"{self.latency_runtime!r}.")
            if self.max_latency_ms is None:
                raise ValueError("latency_runtime says where max_latency_ms must hold; give max_latency_ms too.")
        check_range("latency_margin", self.latency_margin, 0, 0.5, high_open=True,
                    what="fraction under max_latency_ms to aim at")
        check_range("seq_length", self.seq_length, 1, allow_none=True)
        check_range("ridge", self.ridge, 0, low_open=True)
        check_max_batches(self.max_batches)

    @property
    def requires_dataloader(self) -> bool:
        return True
