"""Model-family adapters: the only code that knows module paths."""

from . import bert, deberta, distilbert, modernbert, mpnet  # noqa: F401  (registers the adapters)
from .base import (ROLE_GROUPS, ModelAdapter, check_sequence_length, expand_roles, get_adapter, register_adapter,
                   supported_model_types)

__all__ = ["ROLE_GROUPS", "ModelAdapter", "check_sequence_length", "expand_roles", "get_adapter", "register_adapter", "supported_model_types"]
