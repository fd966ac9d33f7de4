"""``compress(model, config)``: post-training compression in one call (like torchao's ``quantize_``)."""

from __future__ import annotations

from typing import Any, Callable

from transformers import PreTrainedModel

from .callbacks import CompressionCallback
from .registry import config_from_dict, method_for_config, methods


def _post_training_names() -> str:
    return ", ".join(spec.config_cls.__name__ for spec in methods()
                     if spec.is_post_training and not spec.needs_tokenizer) or "none"


def compress(model: PreTrainedModel, config: Any, dataloader: Any = None) -> PreTrainedModel:
    """Apply one post-training compression step in place and return the model.

    Configs that need data (importance scores) take ``dataloader``; the step is recorded in
    ``config.json`` so ``from_pretrained`` rebuilds the result.

    Example:
        >>> compress(model, DynamicQuantConfig(backend="torch", embeddings=True))
        >>> model.save_pretrained("int8")
    """
    spec = method_for_config(config)
    if spec is None or not spec.is_post_training:
        raise TypeError(f"compress() does not take {type(config).__name__}; post-training configs: "
                        f"{_post_training_names()}. Training-time methods (TheseusConfig, MovementPruningConfig) go "
                        "through CompressionTrainer or their callback.")
    if spec.needs_tokenizer:
        raise ValueError(f"{type(config).__name__} rewrites the tokenizer together with the model, and compress() "
                         f"returns only the model: call {spec.standalone or 'its own function'} instead (or use a "
                         "recipe `compress` stage, which passes the tokenizer and the training texts), then save both.")
    if config.requires_dataloader and dataloader is None:
        raise ValueError(f"{type(config).__name__} with these settings needs data (calibration batches): "
                         "compress(model, config, dataloader=...) with batches of the model's inputs "
                         "(and labels where importance is computed).")
    return spec.apply(model, config, dataloader=dataloader)


class CompressCallback(CompressionCallback):
    """Apply a post-training config when a ``Trainer`` is built, so the run fine-tunes the compressed model.

    It compresses in ``on_init_end``, before the optimizer exists, so the optimizer holds the
    new (smaller, shared or factorized) parameters. ``CompressionTrainer(compression=[config])``
    uses it for post-training configs. Configs that need data (``config.requires_dataloader``:
    importance ranking, activation-aware low-rank, RegMean sharing) take ``dataloader``: a
    DataLoader, or a function returning one when the callback fires (``CompressionTrainer``
    passes one over its train set).

    Give a list of configs to apply several steps in order.

    Example:
        >>> trainer = Trainer(model=model, args=args, train_dataset=train,
        ...                   callbacks=[CompressCallback(WeightSharingConfig(group_size=2))])
        >>> trainer.train()  # fine-tunes the shared model
    """

    def __init__(self, config: Any, dataloader: Any | Callable[[], Any] = None) -> None:
        configs = list(config) if isinstance(config, (list, tuple)) else [config]
        wrong = [type(c).__name__ for c in configs if not is_post_training_config(c)]
        if wrong or not configs:
            raise TypeError(f"CompressCallback takes post-training configs ({_post_training_names()}); "
                            f"got {wrong or 'none'}.")
        self.configs, self.dataloader, self.applied = configs, dataloader, False

    @property
    def config(self) -> Any:
        return self.configs[0] if len(self.configs) == 1 else self.configs

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if not self.applied:
            dataloader = self.dataloader
            if callable(dataloader) and any(c.requires_dataloader for c in self.configs):
                dataloader = dataloader()  # built only when a config uses it
            for config in self.configs:  # in order: each step sees the model the previous one left
                compress(model, config, dataloader=dataloader if config.requires_dataloader else None)
            self.applied = True


def is_post_training_config(config: Any) -> bool:
    spec = method_for_config(config)
    return spec is not None and spec.is_post_training and not spec.needs_tokenizer


def post_training_config(method: str, settings: dict[str, Any]) -> Any:
    """Build a post-training config from its record/recipe name (``heads``, ``lowrank``, ...) and fields.

    Example:
        >>> post_training_config("sharing", {"group_size": 2})
        WeightSharingConfig(groups=None, group_size=2, pattern='consecutive', ...)
    """
    names = sorted(spec.name for spec in methods() if spec.is_post_training and not spec.needs_tokenizer)
    if method not in names:
        raise ValueError(f"Unknown compression method {method!r}; post-training methods: {names}.")
    return config_from_dict(method, settings)
