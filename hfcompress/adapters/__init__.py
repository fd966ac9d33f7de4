"""Model-family adapters: the only code that knows module paths."""

from . import bert, distilbert  # noqa: F401  (registers the adapters)
from .base import ModelAdapter, get_adapter, register_adapter, supported_model_types

__all__ = ["ModelAdapter", "get_adapter", "register_adapter", "supported_model_types"]
