"""Physically remove attention heads: q/k/v output rows and the attention-output input columns.

transformers v5 dropped ``PreTrainedModel.prune_heads`` and ignores ``config.pruned_heads``; this
is the replacement, and the record step it writes lets ``from_pretrained`` rebuild uneven head
counts per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...integration import append_step, register_step
from ...shapes import empty_linear_like, slice_linear

STEP = "heads"


def prune_heads(model: PreTrainedModel, heads_to_prune: Mapping[int, Sequence[int]]) -> PreTrainedModel:
    """Remove the given heads (``{layer: [head, ...]}``, indices into the layer's current heads).

    Returns the same model, smaller, with a ``heads`` step in its compression record.

    Example:
        >>> prune_heads(model, {0: [1, 3], 2: [0]})
        >>> model.save_pretrained("out")  # reloads with AutoModel... after `import hfcompress`
    """
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
            _keep_heads(adapter, layer, keep, head_size, model.config)
        heads_before.append(num_heads)
        kept_heads.append(keep)
    append_step(model, {"method": STEP, "heads_before": heads_before, "kept_heads": kept_heads})
    return model


def _keep_heads(adapter, layer, keep: list[int], head_size: int, config) -> None:
    linears = adapter.attention_linears(layer)
    device = linears["query"].weight.device
    index = torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in keep]).to(device)
    for role in ("query", "key", "value"):
        adapter.replace_module(layer, getattr(adapter, role), slice_linear(linears[role], index, dim=0))
    adapter.replace_module(layer, adapter.attention_output, slice_linear(linears["output"], index, dim=1))
    adapter.set_layer_num_heads(layer, len(keep), config)


def rebuild_heads(model: PreTrainedModel, step: dict) -> None:
    """Give a freshly built model the head counts a ``heads`` step left."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    kept_heads = step["kept_heads"]
    if len(kept_heads) != len(layers):
        raise ValueError(
            f"The record's heads step describes {len(kept_heads)} layers but the model config builds "
            f"{len(layers)}: config.json and the record disagree; the checkpoint is damaged."
        )
    head_size = adapter.head_size(model.config)
    for layer, keep in zip(layers, kept_heads):
        width = len(keep) * head_size
        linears = adapter.attention_linears(layer)
        if linears["query"].out_features == width:
            continue
        for role in ("query", "key", "value"):
            adapter.replace_module(
                layer, getattr(adapter, role), empty_linear_like(linears[role], linears[role].in_features, width)
            )
        out = linears["output"]
        adapter.replace_module(layer, adapter.attention_output, empty_linear_like(out, width, out.out_features))
        adapter.set_layer_num_heads(layer, len(keep), model.config)


register_step(STEP, rebuild_heads)
