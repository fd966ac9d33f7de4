"""Resizing linears: the structural edit that head, FFN-neuron and structured pruning share."""

from __future__ import annotations

import torch
from torch import nn


def slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping only ``index`` along ``dim`` (0: output features, 1: input features).

    Example:
        >>> small = slice_linear(nn.Linear(8, 4), torch.tensor([0, 2]), dim=0)  # 8 -> 2
    """
    if dim not in (0, 1):
        raise ValueError(f"dim must be 0 (output features) or 1 (input features), got {dim}")
    index = index.to(linear.weight.device)
    weight = linear.weight.detach().index_select(dim, index).clone()
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[index])
    new.weight.requires_grad_(linear.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def empty_linear_like(linear: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """An uninitialised Linear of a new shape on the same device/dtype (weights arrive from a checkpoint)."""
    return nn.Linear(
        in_features,
        out_features,
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )


def replace_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` (dotted, as in ``named_modules``) is."""
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)
