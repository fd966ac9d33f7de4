"""Error-compensated weight rounding (GPTQ, Frantar et al. 2022, arXiv 2210.17323).

Rounding each int8 weight to its nearest grid point ignores how the layer's inputs are
correlated; GPTQ rounds one input column at a time and pushes each column's rounding error onto
the columns not yet rounded, weighted by the inverse of the inputs' second moment, so the
layer's outputs (not its weights) stay close. The grid is the plain per-row symmetric one
(``scale = max|w_row| / qmax``), so the result runs on the same kernels at the same speed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ...calibration import input_second_moments


def gptq_round(
    weight: torch.Tensor, moment: torch.Tensor, qmax: int, damping: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer weights in [-qmax, qmax] and per-row scales for ``weight`` (out x in).

    ``moment`` is E[x x^T] of the layer's inputs (in x in). Each row's largest-magnitude weight
    is kept exactly on the grid's end (+-qmax): the scale then stays ``max|w_row| / qmax``, so a
    quantizer that recomputes the scale from the rounded weights (ONNX Runtime) finds the same
    grid and reproduces the integers.

    Example:
        >>> q, scale = gptq_round(linear.weight, moments["fc"], qmax=63)
        >>> linear.weight.data = q * scale[:, None]  # on the grid
    """
    original = weight.detach().double().cpu()
    work = original.clone()
    columns = work.shape[1]
    hessian = moment.detach().double().cpu().clone()
    dead = hessian.diagonal() == 0  # inputs that never fire: their weights cannot matter
    hessian[dead, dead] = 1.0
    work[:, dead] = 0.0
    hessian += damping * hessian.diagonal().mean() * torch.eye(columns, dtype=hessian.dtype)
    # Upper Cholesky factor of H^-1: row j holds how column j's error spreads to later columns.
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
    scale = original.abs().amax(dim=1).clamp(min=1e-12) / qmax
    rows = torch.arange(work.shape[0])
    anchor = original.abs().argmax(dim=1)
    anchor_value = original[rows, anchor]
    quantized = torch.empty_like(work)
    for j in range(columns):
        q = torch.clamp(torch.round(work[:, j] / scale), -qmax, qmax)
        quantized[:, j] = q
        error = (work[:, j] - q * scale) / inverse[j, j]
        work[:, j + 1:] -= error[:, None] * inverse[j, j + 1:][None, :]
        later = anchor > j
        work[rows[later], anchor[later]] = anchor_value[later]
    return quantized, scale


def gptq_linears(
    model: PreTrainedModel, names: list[str], dataloader, qmax: int, max_batches: int | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (integer weights, per-row scales)}`` for the named linears, from calibration batches.

    Every linear sees the inputs of the float model (one pass over the data for all of them).

    Example:
        >>> rounded = gptq_linears(model, ["bert.encoder.layer.0.output.dense"], loader, qmax=63)
    """
    linears = {name: model.get_submodule(name) for name in names}
    for name, linear in linears.items():  # before the calibration pass, not after it
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"GPTQ rounding needs a Linear at {name!r}; found {type(linear).__name__}.")
    moments = input_second_moments(model, names, dataloader, max_batches)
    return {name: gptq_round(linear.weight, moments[name], qmax) for name, linear in linears.items()}
