"""``compress(model, config)``: post-training compression in one call (like torchao's ``quantize_``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from transformers import PreTrainedModel, TrainerCallback

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


class CompressCallback(TrainerCallback):
    """Apply a post-training config when a ``Trainer`` is built, so the run fine-tunes the compressed model.

    It compresses in ``on_init_end``, before the optimizer exists, so the optimizer holds the
    new (smaller, shared or factorized) parameters. ``CompressionTrainer(compression=[config])``
    uses it for post-training configs. Configs that need data (``config.requires_dataloader``:
    importance ranking, activation-aware low-rank, RegMean sharing) take ``dataloader``: a
    DataLoader, or a function returning one when the callback fires (``CompressionTrainer``
    passes one over its train set).

    Example:
        >>> trainer = Trainer(model=model, args=args, train_dataset=train,
        ...                   callbacks=[CompressCallback(WeightSharingConfig(group_size=2))])
        >>> trainer.train()  # fine-tunes the shared model
    """

    def __init__(self, config: Any, dataloader: Any | Callable[[], Any] = None) -> None:
        if type(config) not in _POST_TRAINING:
            known = ", ".join(c.__name__ for c in _POST_TRAINING)
            raise TypeError(f"CompressCallback takes a post-training config ({known}); got {type(config).__name__}.")
        self.config, self.dataloader, self.applied = config, dataloader, False

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if not self.applied:
            dataloader = self.dataloader
            if callable(dataloader):  # built only for configs that use it
                dataloader = dataloader() if getattr(self.config, "requires_dataloader", False) else None
            compress(model, self.config, dataloader=dataloader)
            self.applied = True


def is_post_training_config(config: Any) -> bool:
    return type(config) in _POST_TRAINING


def post_training_config(method: str, settings: dict[str, Any]) -> Any:
    """Build a post-training config from its record/recipe name (``heads``, ``lowrank``, ...) and fields.

    Example:
        >>> post_training_config("sharing", {"group_size": 2})
        WeightSharingConfig(groups=None, group_size=2, share='layer', init='first', method='sharing')
    """
    by_name = {_method_name(cls): cls for cls in _POST_TRAINING}
    if method not in by_name:
        raise ValueError(f"Unknown compression method {method!r}; post-training methods: {sorted(by_name)}.")
    return by_name[method](**settings)


def _method_name(cls: type) -> str:
    return next(f.default for f in dataclasses.fields(cls) if f.name == "method")
