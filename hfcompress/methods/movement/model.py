"""Movement pruning on a model: attach masks, fold them into plain (or physically smaller) linears, rebuild on load.

A dense checkpoint of a 90%-sparse model is as large as the unpruned one (the zeros are stored):
``store_sparse`` swaps every encoder linear that has zeros for a :class:`SparseStoredLinear`,
whose state dict holds only the kept values and one bit per weight; its record step lists each
layer's number of kept values so ``from_pretrained`` rebuilds the same buffers before loading.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import expand_roles, get_adapter
from ...integration import append_step, make_step
from ...structure import remove_ffn_neurons, remove_heads, replace_submodule, set_ffn_widths, set_head_counts
from .config import MovementPruningConfig
from .layers import MaskedLinear, SparseStoredLinear

logger = logging.getLogger(__name__)

SCORES = "mask_scores"
SPARSE_STEP = "sparse_storage"
SHAPE_KEYS = ("heads_before", "kept_heads", "ffn_before", "ffn_sizes")
SPARSE_SHAPE_KEYS = ("layers",)


def attach_masks(model: PreTrainedModel, config: MovementPruningConfig) -> list[MaskedLinear]:
    """Wrap the targeted encoder linears in :class:`MaskedLinear` (idempotent)."""
    existing = [m for m in model.modules() if isinstance(m, MaskedLinear)]
    if existing:
        return existing
    adapter = get_adapter(model)
    head_size = adapter.head_size(model.config)
    roles = expand_roles(config.targets)
    others = [n for n in adapter.role_module_names(model, roles) if not isinstance(model.get_submodule(n), nn.Linear)]
    if others:
        raise ValueError(f"Movement pruning needs plain Linear layers; {others[0]!r} is a "
                         f"{type(model.get_submodule(others[0])).__name__}. Prune before low-rank, int8 or sparse storage.")
    if config.granularity != "element" and (adapter.fused_qkv or adapter.gated_ffn):
        # A unit is one contiguous block of rows; a fused head (rows in each of q, k, v) or a gated neuron (a row in
        # each half) is not, and scoring the blocks apart would cut query or gate rows as if they were heads.
        raise ValueError(f"Structured movement pruning (granularity={config.granularity!r}) scores a head as a block "
                         f"of value rows and a neuron as an FFN-input row; {adapter.name} fuses q/k/v and gates its "
                         "FFN. Use granularity=\"element\", or remove heads and neurons with HeadPruningConfig / "
                         "FFNPruningConfig (or IterativePruningCallback inside a fine-tune).")
    if config.granularity == "element":
        plan = [(name, 1) for name in adapter.linear_names(model, roles)]
    else:
        # Structured units that can be cut out afterwards: a head is a block of value rows (its
        # output is zero once they are), an FFN neuron is a row of the FFN input linear.
        plan = []
        if "attention" in config.targets:
            plan += [(name, head_size) for name in adapter.linear_names(model, ["value"])]
        if "ffn" in config.targets:
            plan += [(name, 1) for name in adapter.linear_names(model, ["ffn_in"])]
    masked = []
    for name, rows in plan:
        layer = MaskedLinear(model.get_submodule(name), config, rows_per_score=rows)
        replace_submodule(model, name, layer)
        masked.append(layer)
    return masked


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if n.endswith(SCORES)]


def global_threshold(layers: list[MaskedLinear], remaining: float) -> float:
    """The tau that keeps the top ``remaining`` fraction of all layers' (sigmoid) scores together."""
    if remaining >= 1 or not layers:
        return float("-inf")
    with torch.no_grad():
        scores = torch.cat([layer.mask_scores.detach().flatten() for layer in layers])
        if layers[0].config.pruning_method == "sigmoied_threshold":
            scores = torch.sigmoid(scores)
        drop = scores.numel() - max(1, int(round(remaining * scores.numel())))
        if drop <= 0:
            return float("-inf")
        return float(scores.float().kthvalue(drop).values)


def fold_masks(model: PreTrainedModel, config: MovementPruningConfig, info: dict[str, Any] | None = None
               ) -> PreTrainedModel:
    """Multiply masks into weights, drop scores, and (structured granularity) cut out the pruned units.

    Writes one ``movement`` step; its shape holds the head counts / FFN widths left by structured
    pruning, so ``from_pretrained`` rebuilds them.
    """
    names = {id(m): n for n, m in model.named_modules()}
    adapter = get_adapter(model)
    heads_plan: dict[int, list[int]] = {}
    neurons_plan: dict[int, list[int]] = {}
    kept, total = 0, 0
    for index, layer in enumerate(adapter.layers(model)):
        for module in list(layer.modules()):
            if not isinstance(module, MaskedLinear):
                continue
            mask = module.mask().detach()
            kept += int(mask.sum())
            total += mask.numel()
            if config.granularity != "element":
                unit_mask = mask[:, 0].view(-1, module.rows_per_score)[:, 0]
                dropped = [u for u in range(unit_mask.numel()) if unit_mask[u] == 0]
                keep_one = dropped[:-1] if len(dropped) == unit_mask.numel() else dropped
                (heads_plan if module.rows_per_score > 1 else neurons_plan)[index] = keep_one
            replace_submodule(model, names[id(module)], module.folded())
    shape: dict[str, Any] = {}
    if any(heads_plan.values()):
        shape.update(remove_heads(model, heads_plan))
    if any(neurons_plan.values()):
        shape.update(remove_ffn_neurons(model, neurons_plan))
    remaining = kept / max(total, 1)
    append_step(model, make_step(MovementPruningConfig.name, config, shape, {**(info or {}), "remaining": remaining}))
    if config.sparse_storage:
        store_sparse(model)
    logger.info("Movement pruning: %.1f%% of the targeted weights remain.", 100 * remaining)
    return model


def rebuild_movement(model: PreTrainedModel, step: dict[str, Any]) -> None:
    """Structured movement leaves fewer heads / FFN neurons; element movement leaves the standard shape."""
    shape = step["shape"]
    if shape.get("kept_heads"):
        set_head_counts(model, shape["kept_heads"])
    if shape.get("ffn_sizes"):
        set_ffn_widths(model, shape["ffn_sizes"])


def describe_movement(step: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if "remaining" in step["info"]:
        settings["remaining"] = round(step["info"]["remaining"], 4)
    if step["shape"].get("kept_heads"):
        settings["heads kept per layer"] = [len(k) for k in step["shape"]["kept_heads"]]
    if step["shape"].get("ffn_sizes"):
        settings["FFN width per layer"] = step["shape"]["ffn_sizes"]
    return settings


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
        append_step(model, make_step(SPARSE_STEP, None, {"layers": layers}))
    return model


def rebuild_sparse(model: PreTrainedModel, step: dict[str, Any]) -> None:
    for name, shape in step["shape"]["layers"].items():
        try:
            current = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"The sparse-storage record names {name!r}, which this model does not have.") from error
        device = next(current.parameters()).device
        replace_submodule(model, name, SparseStoredLinear(shape["in_features"], shape["out_features"], shape["nnz"],
                                                          shape["bias"], device=device))


def describe_sparse(step: dict[str, Any]) -> dict[str, Any]:
    layers = step["shape"].get("layers", {}).values()
    kept = sum(layer["nnz"] for layer in layers)
    total = sum(layer["in_features"] * layer["out_features"] for layer in layers)
    return {"sparse-stored linears": len(step["shape"].get("layers", {})),
            "weights kept in them": f"{kept / max(total, 1):.1%}"}
