"""Int8 rounding simulated inside float linears (fake quantization with straight-through gradients).

The rounding is the one the int8 kernels apply at inference, so a model evaluated with it attached scores what
its int8 conversion will score: weights symmetric per output channel on the int8 grid of the chosen backend,
inputs asymmetric per tensor over [min(x, 0), max(x, 0)] (torch's ``linear_dynamic`` and ONNX Runtime's
``DynamicQuantizeLinear`` both choose activation scales this way).

The linears keep their class, parameters and state-dict names: only the instance's ``forward`` is replaced, so a
checkpoint written mid-training is an ordinary float checkpoint and resumes as one.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

ATTRIBUTE = "_hfcompress_fake_quant"


def weight_qmax(weight_bits: int, backend: str) -> int:
    """Largest integer of the symmetric weight grid: torch keeps [-63, 63] at 7 bits, ONNX Runtime's
    ``reduce_range`` [-64, 64]; both use [-127, 127] at 8 bits."""
    if weight_bits == 8:
        return 127
    return 64 if backend == "onnxruntime" else 63


def fake_quant_weight(weight: torch.Tensor, qmax: int) -> torch.Tensor:
    """``weight`` rounded per row to ``round(w / s) * s`` with ``s = max|row| / qmax``; identity gradient."""
    scale = weight.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / qmax
    rounded = torch.clamp(torch.round(weight / scale), -qmax, qmax) * scale
    return weight + (rounded - weight).detach()


def fake_quant_activation(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` rounded per tensor on an unsigned ``bits``-bit grid spanning [min(x, 0), max(x, 0)]; identity gradient."""
    qmax = 2 ** bits - 1
    detached = x.detach()
    low, high = detached.min().clamp(max=0), detached.max().clamp(min=0)
    scale = ((high - low) / qmax).clamp(min=1e-12)
    zero_point = torch.clamp(torch.round(-low / scale), 0, qmax)
    rounded = (torch.clamp(torch.round(detached / scale) + zero_point, 0, qmax) - zero_point) * scale
    return x + (rounded - detached)


def _fake_quant_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    weight_max, activation_bits = getattr(self, ATTRIBUTE)
    return F.linear(fake_quant_activation(x, activation_bits), fake_quant_weight(self.weight, weight_max), self.bias)


def attach_fake_quant(linear: nn.Linear, weight_max: int, activation_bits: int) -> None:
    """Make ``linear`` compute with int8-rounded weights and inputs (idempotent)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"quantization-aware training simulates int8 in Linear layers; got {type(linear).__name__}.")
    setattr(linear, ATTRIBUTE, (weight_max, activation_bits))
    linear.forward = types.MethodType(_fake_quant_forward, linear)


def detach_fake_quant(linear: nn.Module) -> bool:
    """Give ``linear`` its float forward back; whether it had the simulated one."""
    if not hasattr(linear, ATTRIBUTE):
        return False
    delattr(linear, ATTRIBUTE)
    if "forward" in linear.__dict__:
        del linear.__dict__["forward"]
    return True
