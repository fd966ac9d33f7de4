"""``compress(model, config)``: post-training compression in one call (like torchao's ``quantize_``)."""

from __future__ import annotations

from typing import Any, Callable

from transformers import PreTrainedModel

_POST_TRAINING: dict[type, Callable[..., PreTrainedModel]] = {}


def register_post_training_method(config_cls: type, apply: Callable[..., PreTrainedModel]) -> None:
    """Let ``compress(model, config_cls(...))`` run ``apply(model, config, dataloader=...)``."""
    _POST_TRAINING[config_cls] = apply


def compress(model: PreTrainedModel, config: Any, dataloader: Any = None) -> PreTrainedModel:
    """Apply one post-training compression step in place and return the model.

    Configs that need data (importance scores) take ``dataloader``; the step is recorded in
    ``config.json`` so ``from_pretrained`` rebuilds the result.

    Example:
        >>> compress(model, DynamicQuantConfig(backend="torch", embeddings=True))
        >>> model.save_pretrained("int8")
    """
    apply = _POST_TRAINING.get(type(config))
    if apply is None:
        known = ", ".join(c.__name__ for c in _POST_TRAINING) or "none"
        raise TypeError(f"compress() does not take {type(config).__name__}; post-training configs: {known}. "
                        "Training-time methods (TheseusConfig) go through CompressionTrainer or their callback.")
    return apply(model, config, dataloader=dataloader)
