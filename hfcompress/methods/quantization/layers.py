"""Int8 modules that survive ``save_pretrained`` / ``from_pretrained``.

``torch.ao.quantization.quantize_dynamic`` keeps weights in opaque packed params, which
``save_pretrained`` cannot store: the model reloads at full size with wrong outputs. Here the
int8 weights and their scales are ordinary buffers (saved as safetensors tensors); the packed
form the kernel needs is rebuilt from them lazily and never saved.
"""

from __future__ import annotations

import types
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .config import WEIGHT_BITS
from ...cpu import full_range_int8_kernels


def _quantize_rows(weight: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 with ``bits`` of range: ``weight ~= int8 * scale[:, None]``."""
    weight = weight.detach().float()
    qmax = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / qmax
    return torch.clamp(torch.round(weight / scale[:, None]), -qmax, qmax).to(torch.int8), scale


_WARNED_DEVICES: set[str] = set()


def _warn_not_cpu(device: torch.device) -> None:
    """Once per device type: the int8 kernels are CPU kernels, so elsewhere the layer runs in float."""
    if device.type not in _WARNED_DEVICES:
        _WARNED_DEVICES.add(device.type)
        warnings.warn(f"hfcompress int8 linears run int8 kernels on CPU only; on {device.type} they compute with their "
                      "dequantized float weights (same results as int8 weights, no int8 speed-up). For int8 speed on a "
                      "GPU use a GPU int8 backend; for CPU serving keep the model on CPU.", stacklevel=3)


def kernel_activation_bits(weight_bits: int) -> int:
    """Activation bits this process's kernels pair with ``weight_bits``-bit weights: 8, except 8-bit weights where
    8 x 8-bit products would saturate (7, torch.ao's ``reduce_range``)."""
    return 8 if weight_bits == 7 or full_range_int8_kernels() else 7


class Int8DynamicLinear(nn.Module):
    """A Linear with int8 per-channel weights and dynamically quantized activations.

    Where the CPU's int8 kernels saturate 8-bit x 8-bit products (no VNNI, see
    :func:`full_range_int8_kernels`), one side must give up a bit. ``weight_bits=7`` takes it
    from the weights (per-channel scales make that nearly free) and keeps 8-bit activations
    everywhere; ``weight_bits=8`` uses 8-bit activations where the kernels allow it and 7-bit
    ones (torch.ao's ``reduce_range``) elsewhere, which on MRPC cost ~1 F1
    (benchmarks/RESULTS.md). The choice is made when the layer is built, on the machine that runs
    it, so a checkpoint quantized on a VNNI CPU stays correct on an AVX2 one.
    ``smoothed=True`` adds an ``input_smoothing`` buffer that multiplies
    the input per feature before it is quantized (SmoothQuant, see ``smoothing.py``).

    Example:
        >>> layer = Int8DynamicLinear.from_linear(nn.Linear(384, 1536), weight_bits=7)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, weight_bits: int = 8,
                 smoothed: bool = False) -> None:
        super().__init__()
        if weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}; got {weight_bits!r}.")
        self.in_features, self.out_features, self.weight_bits = in_features, out_features, weight_bits
        self.activation_bits = kernel_activation_bits(weight_bits)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.register_buffer("bias", torch.zeros(out_features, device=device) if bias else None)
        self.register_buffer("input_smoothing", torch.ones(in_features, device=device) if smoothed else None)
        self._packed = None
        self._packed_from: tuple | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight_bits: int = 8,
                    rounded: tuple[torch.Tensor, torch.Tensor] | None = None,
                    input_smoothing: torch.Tensor | None = None) -> "Int8DynamicLinear":
        """``rounded``: integer weights and row scales chosen elsewhere (GPTQ); default: nearest.
        ``input_smoothing``: per-feature input multiplier of a smoothed linear (its weight already scaled)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, device=linear.weight.device,
                    weight_bits=weight_bits, smoothed=input_smoothing is not None)
        if input_smoothing is not None:
            layer.input_smoothing.copy_(input_smoothing)
        weight_int8, scale = rounded if rounded is not None else _quantize_rows(linear.weight, weight_bits)
        layer.weight_int8.copy_(weight_int8)
        layer.weight_scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def weight_tensors(self) -> list[torch.Tensor | None]:
        """The weights kept as buffers (not parameters), for parameter counts."""
        return [self.weight_int8, self.bias]

    def _packed_params(self):
        # Repack when a buffer is replaced (from_pretrained, .to()) or changed in place (version).
        # Read through _buffers: nn.Module.__getattr__ costs ~2 us per access, which over the
        # 36 linears of a MiniLM was 2% of a batch-1 forward (benchmarks/int8_kernels.py).
        buffers = self._buffers
        weight, scale, bias = buffers["weight_int8"], buffers["weight_scale"], buffers["bias"]
        key = (weight._version, scale._version, None if bias is None else bias._version)
        cached = self._packed_from
        if cached is None or cached[0] is not weight or cached[1] is not scale or cached[2] is not bias or cached[3] != key:
            with warnings.catch_warnings():
                # torch marks quantized tensor creation deprecated; it is still the only
                # route to the fbgemm/x86 int8 kernels in eager mode.
                warnings.simplefilter("ignore")
                quantized = torch._make_per_channel_quantized_tensor(
                    weight.cpu(), scale.double().cpu(), torch.zeros(self.out_features, dtype=torch.long), 0,
                )
                self._packed = torch.ops.quantized.linear_prepack(quantized, None if bias is None else bias.float().cpu())
            self._packed_from = (weight, scale, bias, key)
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smoothing = self._buffers["input_smoothing"]
        if smoothing is not None:
            x = x * smoothing.to(x.dtype)
        if not x.is_cpu:
            _warn_not_cpu(x.device)
            return F.linear(x, self.dequantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        reduce_range = self.activation_bits == 7
        if x.dtype is torch.float32:  # the common case, without two no-op conversions per call
            return torch.ops.quantized.linear_dynamic(x, self._packed_params(), reduce_range)
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed_params(), reduce_range).to(x.dtype)

    def train(self, mode: bool = True) -> "Int8DynamicLinear":
        # Int8 weights are buffers without gradients: a Trainer would "train" nothing. Say what works instead.
        if mode:
            raise RuntimeError("This model has int8 linears (hfcompress Int8DynamicLinear), which do not train. "
                               "Fine-tune the float model with int8 simulated instead (QuantAwareConfig / "
                               "QuantAwareCallback: quantization-aware training, then the same int8 conversion), "
                               "or fine-tune before quantizing. Evaluation and prediction work as they are.")
        return super().train(False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8 (weights {self.weight_bits}-bit, activations {self.activation_bits}-bit)" + (
            ", input smoothed" if self.input_smoothing is not None else "")


def _version(tensor: torch.Tensor) -> int | None:
    # Tensors made under torch.inference_mode have no version counter (and cannot be written in place outside it).
    return None if tensor.is_inference() else tensor._version


class Int8StoredEmbedding(nn.Module):
    """A word embedding stored as int8 rows + scales; looked up from a float copy made once."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, device=None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, dtype=torch.float32, device=device))
        self._float: torch.Tensor | None = None
        self._float_from: tuple | None = None

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> "Int8StoredEmbedding":
        layer = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx,
                    device=embedding.weight.device)
        weight_int8, scale = _quantize_rows(embedding.weight)
        layer.weight_int8.copy_(weight_int8)
        layer.weight_scale.copy_(scale)
        return layer

    def weight_tensors(self) -> list[torch.Tensor]:
        """The int8 table kept as a buffer (not a parameter), for parameter counts."""
        return [self.weight_int8]

    @property
    def weight(self) -> torch.Tensor:
        # Rebuilt when the copy itself was written into (a family's weight init while a checkpoint loads), and once
        # per inference mode: a copy made under torch.inference_mode is unusable where autograd records.
        key = (self.weight_int8.data_ptr(), _version(self.weight_int8), _version(self.weight_scale),
               torch.is_inference_mode_enabled())
        if self._float is None or (*key, _version(self._float)) != self._float_from:
            self._float = self.weight_int8.float() * self.weight_scale[:, None]
            self._float_from = (*key, _version(self._float))
        return self._float

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight, self.padding_idx)


# --- int8 simulated in float linears (quantization-aware fine-tuning) ---------------------------------------
# Int8 rounding simulated inside float linears (fake quantization with straight-through gradients).
#
# The rounding is the one the int8 kernels apply at inference, so a model evaluated with it attached scores what
# its int8 conversion will score: weights symmetric per output channel on the int8 grid of the chosen backend,
# inputs asymmetric per tensor over [min(x, 0), max(x, 0)] (torch's ``linear_dynamic`` and ONNX Runtime's
# ``DynamicQuantizeLinear`` both choose activation scales this way).
#
# The linears keep their class, parameters and state-dict names: only the instance's ``forward`` is replaced, so a
# checkpoint written mid-training is an ordinary float checkpoint and resumes as one.

FAKE_QUANT_ATTRIBUTE = "_hfcompress_fake_quant"


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
    weight_max, activation_bits = getattr(self, FAKE_QUANT_ATTRIBUTE)
    return F.linear(fake_quant_activation(x, activation_bits), fake_quant_weight(self.weight, weight_max), self.bias)


def attach_fake_quant(linear: nn.Linear, weight_max: int, activation_bits: int) -> None:
    """Make ``linear`` compute with int8-rounded weights and inputs (idempotent)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"quantization-aware training simulates int8 in Linear layers; got {type(linear).__name__}.")
    setattr(linear, FAKE_QUANT_ATTRIBUTE, (weight_max, activation_bits))
    linear.forward = types.MethodType(_fake_quant_forward, linear)


def detach_fake_quant(linear: nn.Module) -> bool:
    """Give ``linear`` its float forward back; whether it had the simulated one."""
    if not hasattr(linear, FAKE_QUANT_ATTRIBUTE):
        return False
    delattr(linear, FAKE_QUANT_ATTRIBUTE)
    if "forward" in linear.__dict__:
        del linear.__dict__["forward"]
    return True
