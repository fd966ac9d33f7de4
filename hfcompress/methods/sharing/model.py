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
from ...calibration import input_second_moments
from ...integration import append_step, make_step
from .config import WeightSharingConfig



def _role_paths(adapter, share: str) -> list[str] | None:
    paths = adapter.linear_paths()
    if share == "attention":  # dict.fromkeys: a fused q/k/v linear is one path
        return list(dict.fromkeys(paths[r] for r in ("query", "key", "value", "output")))
    if share == "ffn":
        return [paths[r] for r in ("ffn_in", "ffn_out")]
    return None  # the whole layer


def _shared_parameter_names(layer: nn.Module, role_paths: list[str] | None, linear_weights_only: bool) -> list[str]:
    """Parameter names (relative to a layer) that the share mode ties."""
    if linear_weights_only:
        return [f"{path}.weight" for path in role_paths]
    if role_paths is None:  # the whole layer
        return [name for name, _ in layer.named_parameters()]
    return [f"{path}.{name}" for path in role_paths for name, _ in layer.get_submodule(path).named_parameters()]


def tie_map(model: PreTrainedModel, groups: list[list[int]], share: str,
            linear_weights_only: bool = False) -> dict[str, str]:
    """``{target parameter name: source parameter name}`` for every tied parameter."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    layer_names = {id(layer): name for name, layer in model.named_modules()}
    role_paths = _role_paths(adapter, share)
    if linear_weights_only and role_paths is None:
        role_paths = list(dict.fromkeys(adapter.linear_paths().values()))
    if role_paths is not None and share != "ffn":
        # Per-head projections beyond q/k/v (DeBERTa's unshared position projections) are attention weights too.
        role_paths += [path for path in adapter.head_projection_paths(layers[0]) if path not in role_paths]
    mapping = {}
    for group in groups:
        source = layer_names[id(layers[group[0]])]
        for relative in _shared_parameter_names(layers[group[0]], role_paths, linear_weights_only):
            for index in group[1:]:
                mapping[f"{layer_names[id(layers[index])]}.{relative}"] = f"{source}.{relative}"
    return mapping


def _check_tie_shapes(model: PreTrainedModel, mapping: dict[str, str]) -> None:
    """Every tie possible, checked before anything changes."""
    for target, source in mapping.items():
        owner_name, _, attr = target.rpartition(".")
        owner = model.get_submodule(owner_name)
        source_parameter = model.get_parameter(source)
        if owner._parameters[attr].shape != source_parameter.shape:
            raise ValueError(f"Cannot tie {target} {tuple(owner._parameters[attr].shape)} to {source} "
                             f"{tuple(source_parameter.shape)}: layers in a group must have the same shapes. Share "
                             "layers before pruning heads or FFN neurons (or prune every layer of a group alike).")


def _apply_ties(model: PreTrainedModel, mapping: dict[str, str]) -> None:
    _check_tie_shapes(model, mapping)
    for target, source in mapping.items():
        owner_name, _, attr = target.rpartition(".")
        model.get_submodule(owner_name)._parameters[attr] = model.get_parameter(source)
    # transformers' tied-weights bookkeeping: save once, reload and re-tie.
    declared = dict(getattr(model, "_tied_weights_keys", None) or {})
    declared.update(mapping)
    model._tied_weights_keys = declared
    if getattr(model, "all_tied_weights_keys", None) is None:
        model.all_tied_weights_keys = {}
    model.all_tied_weights_keys.update(mapping)
    # Ours to forget when a later step replaces a tied linear (integration.forget_broken_ties).
    model.hfcompress_ties = {**getattr(model, "hfcompress_ties", {}), **mapping}


def _linear_groups(model: PreTrainedModel, mapping: dict[str, str]) -> dict[str, list[str]]:
    """``{source linear: [source, members...]}`` for the Linear modules the tie map shares."""
    groups: dict[str, list[str]] = {}
    for target, source in mapping.items():
        source_module, _, attr = source.rpartition(".")
        if attr == "weight" and isinstance(model.get_submodule(source_module), nn.Linear):
            groups.setdefault(source_module, [source_module]).append(target.rpartition(".")[0])
    return groups


def regmean_linears(
    model: PreTrainedModel, groups: dict[str, list[str]], dataloader, max_batches: int | None = None,
    damping: float = 0.1, per_member_bias: bool = False,
) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor] | None]]:
    """One weight per group of linears that best reproduces every member's outputs, and the biases.

    Minimizes sum_i E||W x_i + b - (W_i x_i + b_i)||^2 over each member's own inputs x_i
    (RegMean, Jin et al. 2023, arXiv 2212.09849): with x~ = [x, 1] and G_i = E[x~ x~^T],
    [W b] = (sum_i [W_i b_i] G_i)(sum_i G_i)^-1. Inputs are those of the model as it is now.
    With ``per_member_bias`` each member keeps a bias of its own, and the optimum is
    W = (sum_i W_i C_i)(sum_i C_i)^-1 with C_i the covariance of x_i, and
    bias_i = b_i + (W_i - W) mu_i with mu_i the mean of x_i.
    ``damping`` adds that fraction of each G_i's (or C_i's) mean diagonal to it, which pulls the
    solution toward the plain mean: MiniLM-L6 SST-2, groups of 2, before fine-tuning: 50.9%
    accuracy at 1e-3 (near-singular G: LayerNorm outputs span fewer directions than their width),
    70.9% at 1e-2, 73.7% at 0.1, 73.9% at 1; the plain mean 64.5%.

    Returns ``{source: (weight, biases)}``; ``biases`` maps the source (shared bias) or each
    member (``per_member_bias``) to its bias, and is None for linears without one.

    Example:
        >>> regmean_linears(model, {"enc.0.fc": ["enc.0.fc", "enc.1.fc"]}, loader, max_batches=32)
    """
    names = [name for members in groups.values() for name in members]
    moments = input_second_moments(model, names, dataloader, max_batches, append_one=True)
    merged = {}
    for source, members in groups.items():
        has_bias = model.get_submodule(source).bias is not None
        # Per-member biases absorb each member's input mean, so the weight fits the centred inputs.
        centred = per_member_bias and has_bias
        numerator, denominator, means = 0, 0, {}
        for name in members:
            linear = model.get_submodule(name)
            moment = moments[name]
            if centred:
                means[name] = moment[:-1, -1] / moment[-1, -1]
                moment = moment[:-1, :-1] - torch.outer(means[name], means[name])
            elif not has_bias:
                moment = moment[:-1, :-1]
            # Damping per member pulls the solution toward the plain mean (damping -> inf gives it),
            # not toward zero: directions the data never visits keep the mean's weights.
            moment = moment + damping * moment.diagonal().mean().clamp(min=1e-12) * torch.eye(
                moment.shape[0], dtype=moment.dtype)
            weight = linear.weight.detach().double().cpu()
            if has_bias and not centred:
                weight = torch.cat([weight, linear.bias.detach().double().cpu()[:, None]], dim=1)
            numerator = numerator + weight @ moment
            denominator = denominator + moment
        solved = torch.linalg.solve(denominator, numerator.T).T  # denominator is symmetric
        if centred:
            biases = {}
            for name in members:
                linear = model.get_submodule(name)
                own = linear.weight.detach().double().cpu()
                biases[name] = linear.bias.detach().double().cpu() + (own - solved) @ means[name]
            merged[source] = (solved, biases)
        else:
            merged[source] = (solved[:, :-1], {source: solved[:, -1]}) if has_bias else (solved, None)
    return merged


def share_weights(model: PreTrainedModel, config: WeightSharingConfig, dataloader=None) -> PreTrainedModel:
    """Tie layers as ``config`` says, in place; the record lets ``from_pretrained`` re-tie.

    ``dataloader`` (batches of model inputs) is needed with ``init="regmean"``.

    Example:
        >>> share_weights(model, WeightSharingConfig(group_size=2))
        >>> model.save_pretrained("shared")  # each shared tensor stored once
    """
    adapter = get_adapter(model)
    groups = config.resolve_groups(len(adapter.layers(model)))
    mapping = tie_map(model, groups, config.share, config.linear_weights_only)
    _check_tie_shapes(model, mapping)
    merged = {}
    if config.init == "regmean":
        if dataloader is None:
            raise ValueError("WeightSharingConfig(init='regmean') fits the shared linears on calibration data: call "
                             "compress(model, config, dataloader=...) with batches of model inputs (a few dozen "
                             "batches of training data are enough; limit them with max_batches).")
        # Before any weight changes: every member's inputs as the untied model computes them.
        merged = regmean_linears(model, _linear_groups(model, mapping), dataloader, config.max_batches,
                                 per_member_bias=config.linear_weights_only)
    if config.init in ("mean", "regmean"):
        sources: dict[str, list[str]] = {}
        for target, source in mapping.items():
            sources.setdefault(source, [source]).append(target)
        with torch.no_grad():
            for source, members in sources.items():
                mean = torch.stack([model.get_parameter(name).detach() for name in members]).mean(0)
                model.get_parameter(source).copy_(mean)
            for source, (weight, biases) in merged.items():
                linear = model.get_submodule(source)
                linear.weight.copy_(weight.to(linear.weight))
                for name, bias in (biases or {}).items():
                    member_bias = model.get_submodule(name).bias
                    member_bias.copy_(bias.to(member_bias))
    _apply_ties(model, mapping)
    append_step(model, make_step(config.name, config,
                                 {"groups": groups, "share": config.share, "linear_weights_only": config.linear_weights_only},
                                 {"tied_parameters": len(mapping)}))
    return model


SHAPE_KEYS = ("groups", "share", "linear_weights_only")


def rebuild_sharing(model: PreTrainedModel, step: dict) -> None:
    """Re-tie a freshly built model's layers as a ``sharing`` step left them."""
    shape = step["shape"]
    # Records written before linear_weights_only existed tied every parameter of the share mode.
    _apply_ties(model, tie_map(model, shape["groups"], shape["share"], shape.get("linear_weights_only", False)))


def describe_sharing(step: dict) -> dict:
    return {"groups": step["shape"].get("groups"), "share": step["shape"].get("share")}
