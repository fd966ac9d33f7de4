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
from .config import FFNPruningConfig, HeadPruningConfig
from .importance import compute_importance

STEP = "heads"


def prune_heads(
    model: PreTrainedModel, heads_to_prune: Mapping[int, Sequence[int]], provenance: dict | None = None
) -> PreTrainedModel:
    """Remove the given heads (``{layer: [head, ...]}``, indices into the layer's current heads).

    ``provenance`` (settings, importance scores) is stored with the record step. Returns the same model, smaller, with a ``heads`` step in its compression record.

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
    append_step(model, {"method": STEP, "heads_before": heads_before, "kept_heads": kept_heads, **(provenance or {})})
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


FFN_STEP = "ffn"


def prune_ffn_neurons(
    model: PreTrainedModel, neurons_to_prune: Mapping[int, Sequence[int]], provenance: dict | None = None
) -> PreTrainedModel:
    """Remove FFN neurons (``{layer: [neuron, ...]}``): FFN-in output rows and FFN-out input columns.

    Example:
        >>> prune_ffn_neurons(model, {0: list(range(100))})
    """
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    unknown = sorted(set(int(k) for k in neurons_to_prune) - set(range(len(layers))))
    if unknown:
        raise ValueError(f"neurons_to_prune names layers {unknown}, but the model has layers 0..{len(layers) - 1}.")
    sizes_before, sizes_after = [], []
    for index, layer in enumerate(layers):
        linears = adapter.ffn_linears(layer)
        width = linears["in"].out_features
        remove = sorted({int(n) for n in neurons_to_prune.get(index, neurons_to_prune.get(str(index), ()))})
        bad = [n for n in remove if not 0 <= n < width]
        if bad:
            raise ValueError(f"Layer {index} has FFN neurons 0..{width - 1}; cannot remove {bad[:5]}.")
        if len(remove) == width:
            raise ValueError(f"Removing all {width} FFN neurons of layer {index} would leave an empty FFN; keep at least one.")
        if remove:
            keep = torch.tensor([n for n in range(width) if n not in set(remove)], device=linears["in"].weight.device)
            adapter.replace_module(layer, adapter.ffn_in, slice_linear(linears["in"], keep, dim=0))
            adapter.replace_module(layer, adapter.ffn_out, slice_linear(linears["out"], keep, dim=1))
        sizes_before.append(width)
        sizes_after.append(width - len(remove))
    append_step(model, {"method": FFN_STEP, "ffn_before": sizes_before, "ffn_sizes": sizes_after, **(provenance or {})})
    return model


def rebuild_ffn(model: PreTrainedModel, step: dict) -> None:
    """Give a freshly built model the FFN widths an ``ffn`` step left."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    sizes = step["ffn_sizes"]
    if len(sizes) != len(layers):
        raise ValueError(f"The record's ffn step describes {len(sizes)} layers but the config builds {len(layers)}: "
                         "config.json and the record disagree; the checkpoint is damaged.")
    for layer, width in zip(layers, sizes):
        linears = adapter.ffn_linears(layer)
        if linears["in"].out_features == width:
            continue
        adapter.replace_module(layer, adapter.ffn_in, empty_linear_like(linears["in"], linears["in"].in_features, width))
        adapter.replace_module(layer, adapter.ffn_out, empty_linear_like(linears["out"], width, linears["out"].out_features))


register_step(FFN_STEP, rebuild_ffn)


def select_units_to_prune(
    scores: Sequence[torch.Tensor], count: int, scope: str, min_keep: int = 1
) -> dict[int, list[int]]:
    """The ``count`` least important units (heads or neurons), never leaving a layer below ``min_keep``.

    ``scope="layer"`` removes the same fraction from every layer; ``"global"`` ranks all units
    together. Ties break by position so the choice is deterministic.

    Example:
        >>> select_units_to_prune([torch.tensor([0.1, 0.9]), torch.tensor([0.5, 0.2])], 2, "global")
        {0: [0], 1: [1]}
    """
    total = sum(len(s) for s in scores)
    plan: dict[int, list[int]] = {i: [] for i in range(len(scores))}
    if scope == "layer":
        fraction = count / total
        for layer, layer_scores in enumerate(scores):
            k = min(int(round(fraction * len(layer_scores))), len(layer_scores) - min_keep)
            order = sorted(range(len(layer_scores)), key=lambda u: (float(layer_scores[u]), u))
            plan[layer] = sorted(order[:k])
        return {k: v for k, v in plan.items() if v}
    ranked = sorted(((float(s), layer, unit) for layer, layer_scores in enumerate(scores)
                     for unit, s in enumerate(layer_scores)))
    remaining = [len(s) for s in scores]
    removed = 0
    for _, layer, unit in ranked:
        if removed == count:
            break
        if remaining[layer] - 1 < min_keep:
            continue
        plan[layer].append(unit)
        remaining[layer] -= 1
        removed += 1
    return {k: sorted(v) for k, v in plan.items() if v}


def prune_by_importance_round(
    model: PreTrainedModel, config: HeadPruningConfig | FFNPruningConfig, dataloader, round_index: int,
    total: int | None = None,
) -> int:
    """One round of ``config.iterations``: rank by fresh importance and remove this round's share.

    ``total`` is the unit count before the first round (computed when ``None``); returns it.
    """
    kind = "heads" if isinstance(config, HeadPruningConfig) else "ffn"
    scores = compute_importance(model, dataloader, kind=kind, max_batches=config.max_batches)
    total = total if total is not None else sum(len(s) for s in scores)
    already_removed = total - sum(len(s) for s in scores)
    goal = round(config.target * total * (round_index + 1) / config.iterations)
    plan = select_units_to_prune(scores, goal - already_removed, config.scope)
    provenance = {"config": config.to_dict(), "round": round_index + 1}
    if kind == "heads":  # small enough to keep for the model card's heat map
        provenance["importance"] = [[round(float(v), 6) for v in s] for s in scores]
    (prune_heads if kind == "heads" else prune_ffn_neurons)(model, plan, provenance)
    return total


def prune_by_importance(
    model: PreTrainedModel, config: HeadPruningConfig | FFNPruningConfig, dataloader=None
) -> PreTrainedModel:
    """Compute importance on ``dataloader`` and remove ``config.target`` of the heads or FFN neurons.

    Example:
        >>> prune_by_importance(model, HeadPruningConfig(target=0.5), train_loader)
    """
    if dataloader is None:
        raise ValueError(f"{type(config).__name__} ranks units by importance and needs data: "
                         "compress(model, config, dataloader=...) with batches that include labels.")
    total = None
    for round_index in range(config.iterations):
        total = prune_by_importance_round(model, config, dataloader, round_index, total)
    return model
