"""Attention-head removal (physically smaller q/k/v/o per layer)."""

from .prune import prune_heads

__all__ = ["prune_heads"]
