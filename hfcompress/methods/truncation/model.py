"""Layer truncation on a model. The result is a standard architecture (config.json says how many layers)."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...integration import append_step, make_step, require_whole_layers
from .config import TruncationConfig


def kept_layer_indices(total: int, config: TruncationConfig) -> list[int]:
    """Which of ``total`` layers stay (0-based).

    Example:
        >>> kept_layer_indices(6, TruncationConfig(layers=3, keep="evenly"))
        [1, 3, 5]
    """
    if config.layers > total:
        raise ValueError(f"TruncationConfig(layers={config.layers}) keeps more layers than the model has ({total}).")
    if config.keep == "first":
        return list(range(config.layers))
    # Layer i of the result stands where layer (i+1) * total / layers - 1 stood: the last is kept.
    return [round((i + 1) * total / config.layers) - 1 for i in range(config.layers)]


def truncate_layers(model: PreTrainedModel, config: TruncationConfig, dataloader=None) -> PreTrainedModel:
    """``compress(model, TruncationConfig(...))``: drop encoder layers in place."""
    require_whole_layers(model, "Truncate layers")
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    keep = kept_layer_indices(len(layers), config)
    adapter.check_kept_layers(keep, "TruncationConfig(keep=\"first\")")
    adapter.set_layers(model, nn.ModuleList([layers[i] for i in keep]))
    append_step(model, make_step(config.name, config, None, {"layers_before": len(layers), "kept_layers": keep}))
    return model


def describe_truncation(step: dict) -> dict:
    info = step["info"]
    return {"kept layers": info.get("kept_layers"), "of": info.get("layers_before")}
