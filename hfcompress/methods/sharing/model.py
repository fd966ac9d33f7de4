"""Tie parameters across layers so they are one tensor in memory, on disk, and in training.

Tying goes through transformers' own tied-weights mechanism (``_tied_weights_keys`` /
``all_tied_weights_keys``), so ``save_pretrained`` stores each shared tensor once and
``from_pretrained`` ties them again after the record has rebuilt the same mapping.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...integration import append_step, register_step
from .config import WeightSharingConfig

STEP = "sharing"


def _role_paths(adapter, share: str) -> list[str] | None:
    paths = adapter.linear_paths()
    if share == "attention":
        return [paths[r] for r in ("query", "key", "value", "output")]
    if share == "ffn":
        return [paths[r] for r in ("ffn_in", "ffn_out")]
    return None  # the whole layer


def _shared_parameter_names(layer: nn.Module, role_paths: list[str] | None) -> list[str]:
    """Parameter names (relative to a layer) that the share mode ties."""
    if role_paths is None:
        return [name for name, _ in layer.named_parameters()]
    return [f"{path}.{name}" for path in role_paths for name, _ in layer.get_submodule(path).named_parameters()]


def tie_map(model: PreTrainedModel, groups: list[list[int]], share: str) -> dict[str, str]:
    """``{target parameter name: source parameter name}`` for every tied parameter."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    layer_names = {id(layer): name for name, layer in model.named_modules()}
    role_paths = _role_paths(adapter, share)
    mapping = {}
    for group in groups:
        source = layer_names[id(layers[group[0]])]
        for relative in _shared_parameter_names(layers[group[0]], role_paths):
            for index in group[1:]:
                mapping[f"{layer_names[id(layers[index])]}.{relative}"] = f"{source}.{relative}"
    return mapping


def _apply_ties(model: PreTrainedModel, mapping: dict[str, str]) -> None:
    for target, source in mapping.items():
        owner_name, _, attr = target.rpartition(".")
        owner = model.get_submodule(owner_name)
        source_parameter = model.get_parameter(source)
        if owner._parameters[attr].shape != source_parameter.shape:
            raise ValueError(f"Cannot tie {target} {tuple(owner._parameters[attr].shape)} to {source} "
                             f"{tuple(source_parameter.shape)}: layers in a group must have the same shapes.")
        owner._parameters[attr] = source_parameter
    # transformers' tied-weights bookkeeping: save once, reload and re-tie.
    declared = dict(getattr(model, "_tied_weights_keys", None) or {})
    declared.update(mapping)
    model._tied_weights_keys = declared
    if getattr(model, "all_tied_weights_keys", None) is None:
        model.all_tied_weights_keys = {}
    model.all_tied_weights_keys.update(mapping)


def share_weights(model: PreTrainedModel, config: WeightSharingConfig) -> PreTrainedModel:
    """Tie layers as ``config`` says, in place; the record lets ``from_pretrained`` re-tie.

    Example:
        >>> share_weights(model, WeightSharingConfig(group_size=2))
        >>> model.save_pretrained("shared")  # each shared tensor stored once
    """
    adapter = get_adapter(model)
    groups = config.resolve_groups(len(adapter.layers(model)))
    mapping = tie_map(model, groups, config.share)
    if config.init == "mean":
        sources: dict[str, list[str]] = {}
        for target, source in mapping.items():
            sources.setdefault(source, [source]).append(target)
        with torch.no_grad():
            for source, members in sources.items():
                mean = torch.stack([model.get_parameter(name).detach() for name in members]).mean(0)
                model.get_parameter(source).copy_(mean)
    _apply_ties(model, mapping)
    append_step(model, {"method": STEP, "groups": groups, "share": config.share, "init": config.init,
                        "tied_parameters": len(mapping)})
    return model


def rebuild_sharing(model: PreTrainedModel, step: dict) -> None:
    _apply_ties(model, tie_map(model, step["groups"], step["share"]))


register_step(STEP, rebuild_sharing)
