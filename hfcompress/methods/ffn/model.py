"""FFN-neuron pruning: apply (by importance, or a given plan) and rebuild side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedModel

from ...importance import prune_by_importance
from ...integration import append_step, make_step
from ...structure import remove_ffn_neurons, set_ffn_widths
from .config import FFNPruningConfig

SHAPE_KEYS = ("ffn_before", "ffn_sizes")


def apply_ffn_pruning(model: PreTrainedModel, config: FFNPruningConfig, dataloader=None) -> PreTrainedModel:
    """``compress(model, FFNPruningConfig(...), dataloader)``: remove the least important FFN neurons."""
    return prune_by_importance(model, config, dataloader)


def prune_ffn_neurons(
    model: PreTrainedModel, neurons_to_prune: Mapping[int, Sequence[int]], provenance: dict | None = None
) -> PreTrainedModel:
    """Remove FFN neurons (``{layer: [neuron, ...]}``): FFN-in output rows and FFN-out input columns.

    Example:
        >>> prune_ffn_neurons(model, {0: list(range(100))})
    """
    shape = remove_ffn_neurons(model, neurons_to_prune)
    append_step(model, make_step(FFNPruningConfig.name, None, shape, provenance))
    return model


def rebuild_ffn(model: PreTrainedModel, step: dict) -> None:
    """Give a freshly built model the FFN widths an ``ffn`` step left."""
    set_ffn_widths(model, step["shape"]["ffn_sizes"])


def describe_ffn(step: dict) -> dict[str, Any]:
    return {"FFN width per layer": step["shape"].get("ffn_sizes")}
