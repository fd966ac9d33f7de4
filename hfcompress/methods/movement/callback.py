"""``MovementPruningCallback``: movement (or magnitude) pruning inside any ``Trainer``."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import PreTrainedModel

from ...callbacks import CompressionCallback
from .config import MovementPruningConfig
from .layers import MaskedLinear
from .model import attach_masks, fold_masks, global_threshold, score_parameters
from .scheduler import regularization_weight, schedule_value


class MovementPruningCallback(CompressionCallback):
    """Movement pruning as a callback: masks attached at init, schedule per step, folded at the end.

    In a plain ``Trainer`` the callback adds the scores' optimizer group (own learning rate, no
    weight decay) at ``on_train_begin``; ``CompressionTrainer`` builds it with the optimizer, which
    is what a resumed run needs. The soft-movement penalty reaches the scores through their
    gradient, so it applies in either trainer. Scores and the schedule step live in the
    checkpoint (the scores are model parameters), so a resumed run continues where it stopped.

    Example:
        >>> trainer = CompressionTrainer(model=model, args=args, train_dataset=train,
        ...     compression=[MovementPruningConfig(pruning_method="topK", final_remaining=0.1)])
        >>> trainer.train(); trainer.model.save_pretrained("pruned")
    """

    def __init__(self, config: MovementPruningConfig) -> None:
        self.config = config
        self.total_steps = 0
        self.accumulation_steps = 1
        self.folded = False

    def on_init_end(self, args, state, control, model=None, **kwargs):
        attach_masks(model, self.config)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self.total_steps = state.max_steps
        self.accumulation_steps = max(1, args.gradient_accumulation_steps)
        self._set_values(model, state.global_step)
        if optimizer is not None and self.config.uses_scores:
            add_scores_group(optimizer, lr_scheduler, model, self.config)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._set_values(model, state.global_step)

    def _set_values(self, model: nn.Module, step: int) -> None:
        value = schedule_value(self.config, step, max(self.total_steps, 1))
        layers = [m for m in model.modules() if isinstance(m, MaskedLinear)]
        if self.config.target_remaining:
            value = global_threshold(layers, value)
        # The penalty is weight * mean over layers of mean(sigmoid(S)), once per optimizer step.
        weight = regularization_weight(self.config, step, max(self.total_steps, 1))
        for layer in layers:
            layer.value = value
            if layer.mask_scores is not None:
                layer.regularization_scale = weight / (len(layers) * layer.mask_scores.numel()
                                                       * self.accumulation_steps)

    def extend_optimizer(self, optimizer: Any, scheduler: Any, model: nn.Module) -> None:
        """Called by ``CompressionTrainer`` right after it builds the optimizer."""
        if self.config.uses_scores:
            add_scores_group(optimizer, scheduler, model, self.config)

    def regularization(self, model: nn.Module, step: int) -> Any:
        """The soft-movement penalty's value at ``step`` (``None`` when off), for logging; its gradient
        reaches the scores inside the masked layers."""
        weight = regularization_weight(self.config, step, max(self.total_steps, 1))
        if weight == 0:
            return None
        layers = [m for m in model.modules() if isinstance(m, MaskedLinear)]
        return weight * sum(layer.regularization() for layer in layers) / len(layers)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.fold(model)

    def fold(self, model: PreTrainedModel) -> PreTrainedModel:
        """Multiply masks into weights, drop scores, and (structured) cut out the pruned units."""
        if self.folded:
            return model
        if self.config.target_remaining:
            # The last optimizer step moved the scores after tau was set: cut at the final fraction.
            self._set_values(model, max(self.total_steps, 1))
        fold_masks(model, self.config)
        self.folded = True
        return model


def add_scores_group(optimizer: Any, scheduler: Any, model: nn.Module, config: MovementPruningConfig) -> None:
    """Give the scores their own optimizer group (lr = scores_learning_rate, no weight decay)."""
    scores = score_parameters(model)
    ids = {id(p) for p in scores}
    if any(group.get("hfcompress_scores") for group in optimizer.param_groups):
        return
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    optimizer.add_param_group({"params": scores, "lr": config.scores_learning_rate, "weight_decay": 0.0,
                               "hfcompress_scores": True})
    # LambdaLR keeps one base lr and lambda per group: follow the same warm-up/decay shape.
    inner = getattr(scheduler, "scheduler", scheduler)
    if inner is not None and hasattr(inner, "base_lrs") and hasattr(inner, "lr_lambdas"):
        inner.base_lrs.append(config.scores_learning_rate)
        inner.lr_lambdas.append(inner.lr_lambdas[0])
        optimizer.param_groups[-1]["initial_lr"] = config.scores_learning_rate
