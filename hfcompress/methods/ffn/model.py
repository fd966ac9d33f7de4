"""FFN-neuron pruning by a given plan, and its rebuild at load (by importance: ..importance.prune_by_importance)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedModel

from ...integration import append_step, make_step
from ...reconstruction import describe_reconstruction
from ...structure import remove_ffn_neurons, set_ffn_widths
from .config import FFNPruningConfig

SHAPE_KEYS = ("ffn_before", "ffn_sizes")


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
    return {"FFN width per layer": step["shape"].get("ffn_sizes"), **describe_reconstruction(step.get("info", {}))}
