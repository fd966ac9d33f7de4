"""SmoothQuant channel scaling (Xiao et al. 2022, arXiv 2211.10438) before dynamic int8.

Dynamic int8 gives a whole activation tensor one scale, so the few input features that carry
large values at every token (BERT's FFN inputs have them) coarsen the grid of all the others.
Dividing input feature j by ``s_j`` and multiplying the weight's column j by ``s_j`` leaves the
layer's output unchanged and moves that range into the weights, which have a scale per output
row: ``s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha)``; a larger ``alpha`` moves more.

In a post-LayerNorm BERT the FFN input also feeds the residual connection and the FFN output
linear reads GELU, so the division cannot be folded into the layer before: it stays one
elementwise multiply per linear (``input_smoothing``), small next to the GEMM it serves.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...calibration import input_absmax
from ...structure import replace_submodule


def check_smoothing(alpha: float | None) -> None:
    """Reject a migration strength outside (0, 1] (None: no smoothing).

    Example:
        >>> check_smoothing(0.8)
    """
    if alpha is None:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ValueError(f"smoothing is SmoothQuant's migration strength alpha and must lie in (0, 1], or be None "
                         f"for no smoothing; got {alpha!r}. 0.8 measured best on SST-2 (benchmarks/RESULTS.md).")


def smoothing_factors(weight: torch.Tensor, input_peak: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-input-feature ``s`` for a Linear ``weight`` (out x in) whose inputs peak at ``input_peak`` (in).

    Features that never fire (peak 0) or have no weight keep ``s = 1``.

    Example:
        >>> s = smoothing_factors(linear.weight, peaks["fc"], alpha=0.8)
    """
    weight_peak = weight.detach().abs().amax(dim=0).float().cpu()
    input_peak = input_peak.float().cpu()
    factors = input_peak.pow(alpha) / weight_peak.pow(1 - alpha)
    usable = (input_peak > 0) & (weight_peak > 0) & torch.isfinite(factors) & (factors > 0)
    return torch.where(usable, factors, torch.ones_like(factors))


def smoothing_targets(model: PreTrainedModel, among: list[str] | None = None) -> list[str]:
    """The encoder's FFN Linears (in and out; those of ``among`` when given): what smoothing applies to.

    A clear error when there are none (not selected, or already factorized by low-rank).

    Example:
        >>> smooth_linears(model, smoothing_targets(model), loader, alpha=0.8)
    """
    names = get_adapter(model).linear_names(model, ["ffn_in", "ffn_out"])
    if among is not None:
        selected = set(among)
        names = [name for name in names if name in selected]
    if not names:
        raise ValueError("smoothing applies to the FFN linears, and none of them is a Linear being quantized: include "
                         "'ffn' (or 'ffn_in' / 'ffn_out') in modules, smooth before factorizing them (low-rank), or set "
                         "smoothing=None.")
    return names


class InputSmoothedLinear(nn.Module):
    """``linear(x * input_smoothing)``: the form a smoothed Linear takes until it is quantized.

    Example:
        >>> layer = InputSmoothedLinear(nn.Linear(384, 1536), torch.ones(384))
    """

    def __init__(self, linear: nn.Linear, input_smoothing: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("input_smoothing", input_smoothing.to(device=linear.weight.device, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.input_smoothing.to(x.dtype))


def smooth_linears(
    model: PreTrainedModel, names: list[str], dataloader, alpha: float, max_batches: int | None = None
) -> dict[str, InputSmoothedLinear]:
    """Replace the named Linears of ``model`` in place by :class:`InputSmoothedLinear` (same outputs in
    exact arithmetic), with factors from one calibration pass; returns ``{name: new module}``.

    Example:
        >>> smoothed = smooth_linears(model, ["bert.encoder.layer.0.intermediate.dense"], loader, alpha=0.8)
    """
    check_smoothing(alpha)
    for name in names:
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise ValueError(f"Smoothing needs a Linear at {name!r}; found {type(module).__name__}.")
    peaks = input_absmax(model, names, dataloader, max_batches)
    smoothed = {}
    with torch.no_grad():
        for name in names:
            linear = model.get_submodule(name)
            factors = smoothing_factors(linear.weight, peaks[name], alpha)
            linear.weight.mul_(factors.to(linear.weight)[None, :])
            smoothed[name] = InputSmoothedLinear(linear, 1.0 / factors)
            replace_submodule(model, name, smoothed[name])
    return smoothed
