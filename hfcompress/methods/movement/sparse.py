"""Compact storage for unstructured sparsity: each pruned linear saved as its nonzero values + a bit mask.

A dense checkpoint of a 90%-sparse model is as large as the unpruned one (the zeros are stored).
``store_sparse`` swaps every encoder linear that has zeros for a :class:`SparseStoredLinear`,
whose state dict holds only the kept values (float) and one bit per weight; the record lists
each layer's number of kept values so ``from_pretrained`` rebuilds the same buffers before loading.
The dense weight is materialized once for inference (same math, same speed as the dense model);
fine-tuning a loaded model trains the kept values and keeps the sparsity pattern fixed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ...adapters import expand_roles, get_adapter
from ...integration import append_step, register_step
from ...shapes import replace_submodule

STEP = "sparse_storage"
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as uint8 bytes, 8 entries per byte (most significant bit first)."""
    flat = mask.flatten().to(torch.uint8)
    flat = F.pad(flat, (0, (-flat.numel()) % 8))
    return (flat.view(-1, 8) * _BIT_WEIGHTS.to(flat.device)).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` bits as a flat bool tensor."""
    bits = packed[:, None].bitwise_and(_BIT_WEIGHTS.to(packed.device)) != 0
    return bits.flatten()[:numel]


class SparseStoredLinear(nn.Module):
    """A Linear saved as (kept values, bit mask); computes with the dense weight it rebuilds.

    Example:
        >>> layer = SparseStoredLinear.from_linear(pruned_linear)  # pruned_linear.weight has zeros
        >>> layer.weight_values.numel() == int((pruned_linear.weight != 0).sum())
        True
    """

    def __init__(self, in_features: int, out_features: int, nnz: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_values = nn.Parameter(torch.zeros(nnz, device=device, dtype=dtype))
        self.register_buffer("weight_bitmask", torch.zeros((in_features * out_features + 7) // 8,
                                                           dtype=torch.uint8, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        self._dense: torch.Tensor | None = None
        self._dense_from: tuple | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "SparseStoredLinear":
        weight = linear.weight.detach()
        keep = weight != 0
        layer = cls(linear.in_features, linear.out_features, int(keep.sum()), linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight_values.copy_(weight[keep])
            layer.weight_bitmask.copy_(pack_bits(keep))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def _dense_weight(self) -> torch.Tensor:
        mask = unpack_bits(self.weight_bitmask, self.in_features * self.out_features)
        if mask.sum() != self.weight_values.numel():
            raise ValueError(
                f"Sparse weight is inconsistent: the bit mask keeps {int(mask.sum())} entries but "
                f"{self.weight_values.numel()} values were loaded. The checkpoint is damaged; save it again."
            )
        dense = torch.zeros(self.out_features * self.in_features, dtype=self.weight_values.dtype,
                            device=self.weight_values.device)
        dense = dense.masked_scatter(mask, self.weight_values)
        return dense.view(self.out_features, self.in_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight (zeros where pruned)."""
        if torch.is_grad_enabled() and self.weight_values.requires_grad:
            return self._dense_weight()  # differentiable: fine-tuning updates the kept values only
        key = (self.weight_values.data_ptr(), self.weight_values._version, self.weight_bitmask._version,
               self.weight_values.dtype, self.weight_values.device)
        if self._dense is None or key != self._dense_from:
            with torch.no_grad():
                self._dense = self._dense_weight()
            self._dense_from = key
        return self._dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def to_linear(self) -> nn.Linear:
        """A plain dense Linear with the same weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight_values.device, dtype=self.weight_values.dtype)
        with torch.no_grad():
            linear.weight.copy_(self._dense_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        density = self.weight_values.numel() / max(self.in_features * self.out_features, 1)
        return f"in_features={self.in_features}, out_features={self.out_features}, density={density:.3f}"


def store_sparse(model: PreTrainedModel, min_sparsity: float = 0.5) -> PreTrainedModel:
    """Switch the encoder linears that are at least ``min_sparsity`` zeros to compact sparse storage.

    Below about 50% zeros the (values + 1 bit per weight) form is not smaller than dense, so
    those layers stay dense. Idempotent. ``save_pretrained`` then writes the compact form and
    ``from_pretrained`` (after ``import hfcompress``) restores it.

    Example:
        >>> store_sparse(pruned_model).save_pretrained("pruned-sparse")  # ~13% of dense at 90% sparsity
    """
    if not 0 <= min_sparsity < 1:
        raise ValueError(f"min_sparsity must lie in [0, 1); got {min_sparsity}.")
    adapter = get_adapter(model)
    roles = expand_roles(["attention", "ffn"])
    layers: dict[str, int] = {}
    for name in adapter.linear_names(model, roles):
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            continue
        zeros = float((module.weight == 0).float().mean())
        if zeros < min_sparsity:
            continue
        sparse = SparseStoredLinear.from_linear(module)
        replace_submodule(model, name, sparse)
        layers[name] = {"in_features": sparse.in_features, "out_features": sparse.out_features,
                        "nnz": sparse.weight_values.numel(), "bias": sparse.bias is not None}
    if layers:
        append_step(model, {"method": STEP, "layers": layers})
    return model


def rebuild_sparse(model: PreTrainedModel, step: dict[str, Any]) -> None:
    for name, shape in step["layers"].items():
        try:
            current = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"The sparse-storage record names {name!r}, which this model does not have.") from error
        device = next(current.parameters()).device
        replace_submodule(model, name, SparseStoredLinear(shape["in_features"], shape["out_features"], shape["nnz"],
                                                          shape["bias"], device=device))


register_step(STEP, rebuild_sparse)
