"""Structural edits that several methods share: resizing linears, removing heads and FFN neurons.

Head pruning, FFN pruning and structured movement pruning all cut the same units out of the same
linears; they call these functions and each writes its own record step. Nothing here writes a
record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from .adapters import get_adapter


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


def require_weights(model: PreTrainedModel, what: str) -> None:
    """Refuse, before any change, to slice encoder linears that hold no float weight matrix (int8 modules)."""
    adapter = get_adapter(model)
    for layer in adapter.layers(model):
        for path in [*adapter.head_projection_paths(layer), adapter.attention_output, adapter.ffn_in, adapter.ffn_out]:
            module = layer.get_submodule(path)
            if not isinstance(getattr(module, "weight", None), torch.Tensor):
                raise ValueError(f"Cannot remove {what} from {type(module).__name__} modules (int8 weights): prune "
                                 f"{what} first, then quantize.")


def remove_heads(model: PreTrainedModel, heads_to_prune: Mapping[int, Sequence[int]]) -> dict[str, list]:
    """Remove the given heads (``{layer: [head, ...]}``, indices into each layer's current heads).

    q/k/v lose the heads' output rows and the attention output projection their input columns.
    Returns the shape a record needs to rebuild the result: ``{"heads_before", "kept_heads"}``.

    Example:
        >>> remove_heads(model, {0: [1, 3], 2: [0]})["kept_heads"][0]
        [0, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    """
    require_weights(model, "attention heads")
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    unknown = sorted(set(int(k) for k in heads_to_prune) - set(range(len(layers))))
    if unknown:
        raise ValueError(f"heads_to_prune names layers {unknown}, but the model has layers 0..{len(layers) - 1}.")
    head_size = adapter.head_size(model.config)
    heads_before, kept_heads = [], []
    for index, layer in enumerate(layers):
        num_heads = adapter.layer_num_heads(layer, model.config)
        remove = sorted({int(h) for h in heads_to_prune.get(index, heads_to_prune.get(str(index), ()))})
        bad = [h for h in remove if not 0 <= h < num_heads]
        if bad:
            raise ValueError(f"Layer {index} has heads 0..{num_heads - 1}; cannot remove {bad}.")
        if len(remove) == num_heads:
            raise ValueError(
                f"Removing all {num_heads} heads of layer {index} would leave an attention block with no "
                "heads. Keep at least one head per layer."
            )
        keep = [h for h in range(num_heads) if h not in remove]
        if remove:
            linears = adapter.attention_linears(layer)
            device = linears["query"].weight.device
            index_rows = torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in keep]).to(device)
            projection_rows = adapter.head_rows(keep, num_heads, head_size).to(device)
            for path in adapter.head_projection_paths(layer):
                adapter.replace_module(layer, path, slice_linear(layer.get_submodule(path), projection_rows, dim=0))
            adapter.replace_module(layer, adapter.attention_output, slice_linear(linears["output"], index_rows, dim=1))
            adapter.set_layer_num_heads(layer, len(keep), model.config, keep)
        heads_before.append(num_heads)
        kept_heads.append(keep)
    return {"heads_before": heads_before, "kept_heads": kept_heads}


def set_head_counts(model: PreTrainedModel, kept_heads: Sequence[Sequence[int]]) -> None:
    """Give a freshly built model ``len(kept_heads[i])`` heads in layer i (weights arrive from a checkpoint)."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    if len(kept_heads) != len(layers):
        raise ValueError(
            f"The record describes heads for {len(kept_heads)} layers but the model config builds "
            f"{len(layers)}: config.json and the record disagree; the checkpoint is damaged."
        )
    head_size = adapter.head_size(model.config)
    for layer, keep in zip(layers, kept_heads):
        width = len(keep) * head_size
        projection_width = adapter.head_projection_width(len(keep), head_size)
        linears = adapter.attention_linears(layer)
        if linears["query"].out_features == projection_width:
            continue
        for path in adapter.head_projection_paths(layer):
            projection = layer.get_submodule(path)
            adapter.replace_module(layer, path, empty_linear_like(projection, projection.in_features, projection_width))
        out = linears["output"]
        adapter.replace_module(layer, adapter.attention_output, empty_linear_like(out, width, out.out_features))
        adapter.set_layer_num_heads(layer, len(keep), model.config, keep)


def remove_ffn_neurons(model: PreTrainedModel, neurons_to_prune: Mapping[int, Sequence[int]]) -> dict[str, list]:
    """Remove FFN neurons (``{layer: [neuron, ...]}``): FFN-in output rows and FFN-out input columns.

    Returns the shape a record needs: ``{"ffn_before", "ffn_sizes"}``.

    Example:
        >>> remove_ffn_neurons(model, {0: list(range(100))})["ffn_sizes"][0]
        1436
    """
    require_weights(model, "FFN neurons")
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    unknown = sorted(set(int(k) for k in neurons_to_prune) - set(range(len(layers))))
    if unknown:
        raise ValueError(f"neurons_to_prune names layers {unknown}, but the model has layers 0..{len(layers) - 1}.")
    sizes_before, sizes_after = [], []
    for index, layer in enumerate(layers):
        linears = adapter.ffn_linears(layer)
        width = adapter.ffn_width(layer)
        remove = sorted({int(n) for n in neurons_to_prune.get(index, neurons_to_prune.get(str(index), ()))})
        bad = [n for n in remove if not 0 <= n < width]
        if bad:
            raise ValueError(f"Layer {index} has FFN neurons 0..{width - 1}; cannot remove {bad[:5]}.")
        if len(remove) == width:
            raise ValueError(f"Removing all {width} FFN neurons of layer {index} would leave an empty FFN; keep at least one.")
        if remove:
            removed = set(remove)
            keep = torch.tensor([n for n in range(width) if n not in removed], device=linears["in"].weight.device)
            adapter.replace_module(layer, adapter.ffn_in, slice_linear(linears["in"], adapter.ffn_in_rows(keep, width),
                                                                       dim=0))
            adapter.replace_module(layer, adapter.ffn_out, slice_linear(linears["out"], keep, dim=1))
        sizes_before.append(width)
        sizes_after.append(width - len(remove))
    return {"ffn_before": sizes_before, "ffn_sizes": sizes_after}


def set_ffn_widths(model: PreTrainedModel, sizes: Sequence[int]) -> None:
    """Give a freshly built model FFN width ``sizes[i]`` in layer i (weights arrive from a checkpoint)."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    if len(sizes) != len(layers):
        raise ValueError(f"The record describes FFN widths for {len(sizes)} layers but the config builds {len(layers)}: "
                         "config.json and the record disagree; the checkpoint is damaged.")
    for layer, width in zip(layers, sizes):
        linears = adapter.ffn_linears(layer)
        if adapter.ffn_width(layer) == width:
            continue
        adapter.replace_module(layer, adapter.ffn_in, empty_linear_like(linears["in"], linears["in"].in_features,
                                                                        adapter.ffn_in_width(width)))
        adapter.replace_module(layer, adapter.ffn_out, empty_linear_like(linears["out"], width, linears["out"].out_features))
