"""Attention-head pruning by a given plan, and its rebuild at load (by importance: ..importance.prune_by_importance).

transformers v5 dropped ``PreTrainedModel.prune_heads`` and ignores ``config.pruned_heads``; this
is the replacement, and the record step it writes lets ``from_pretrained`` rebuild uneven head
counts per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedModel

from ...integration import append_step, make_step
from ...reconstruction import describe_reconstruction
from ...structure import remove_heads, set_head_counts
from .config import HeadPruningConfig

SHAPE_KEYS = ("heads_before", "kept_heads")


def prune_heads(
    model: PreTrainedModel, heads_to_prune: Mapping[int, Sequence[int]], provenance: dict | None = None
) -> PreTrainedModel:
    """Remove the given heads (``{layer: [head, ...]}``, indices into the layer's current heads).

    ``provenance`` is stored with the record step. Returns the same model, smaller, with a
    ``heads`` step in its compression record.

    Example:
        >>> prune_heads(model, {0: [1, 3], 2: [0]})
        >>> model.save_pretrained("out")  # reloads with AutoModel... after `import hfcompress`
    """
    shape = remove_heads(model, heads_to_prune)
    append_step(model, make_step(HeadPruningConfig.name, None, shape, provenance))
    return model


def rebuild_heads(model: PreTrainedModel, step: dict) -> None:
    """Give a freshly built model the head counts a ``heads`` step left."""
    set_head_counts(model, step["shape"]["kept_heads"])


def describe_heads(step: dict) -> dict[str, Any]:
    return {"heads kept per layer": [len(k) for k in step["shape"].get("kept_heads", [])],
            **describe_reconstruction(step.get("info", {}))}
