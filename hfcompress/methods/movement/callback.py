"""``MovementPruningCallback``: movement (or magnitude) pruning inside any ``Trainer``."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, TrainerCallback

from ...adapters import expand_roles, get_adapter
from ...integration import append_step
from ...shapes import replace_submodule
from .config import MovementPruningConfig
from .layers import MaskedLinear
from .scheduler import regularization_weight, schedule_value
from .sparse import store_sparse

logger = logging.getLogger(__name__)

SCORES = "mask_scores"


def attach_masks(model: PreTrainedModel, config: MovementPruningConfig) -> list[MaskedLinear]:
    """Wrap the targeted encoder linears in :class:`MaskedLinear` (idempotent)."""
    existing = [m for m in model.modules() if isinstance(m, MaskedLinear)]
    if existing:
        return existing
    adapter = get_adapter(model)
    head_size = adapter.head_size(model.config)
    roles = expand_roles(config.targets)
    others = [n for n in adapter.role_module_names(model, roles) if not isinstance(model.get_submodule(n), nn.Linear)]
    if others:
        raise ValueError(f"Movement pruning needs plain Linear layers; {others[0]!r} is a "
                         f"{type(model.get_submodule(others[0])).__name__}. Prune before low-rank, int8 or sparse storage.")
    if config.granularity == "element":
        plan = [(name, 1) for name in adapter.linear_names(model, roles)]
    else:
        # Structured units that can be cut out afterwards: a head is a block of value rows (its
        # output is zero once they are), an FFN neuron is a row of the FFN input linear.
        plan = []
        if "attention" in config.targets:
            plan += [(name, head_size) for name in adapter.linear_names(model, ["value"])]
        if "ffn" in config.targets:
            plan += [(name, 1) for name in adapter.linear_names(model, ["ffn_in"])]
    masked = []
    for name, rows in plan:
        layer = MaskedLinear(model.get_submodule(name), config, rows_per_score=rows)
        replace_submodule(model, name, layer)
        masked.append(layer)
    return masked


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if n.endswith(SCORES)]


class MovementPruningCallback(TrainerCallback):
    """Movement pruning as a callback: masks attached at init, schedule per step, folded at the end.

    In a plain ``Trainer`` the callback adds the scores' optimizer group (own learning rate, no
    weight decay) at ``on_train_begin``; ``CompressionTrainer`` builds it with the optimizer, which
    is what a resumed run needs. Scores and the schedule step live in the checkpoint (the scores
    are model parameters), so a resumed run continues where it stopped.

    Example:
        >>> trainer = CompressionTrainer(model=model, args=args, train_dataset=train,
        ...     compression=[MovementPruningConfig(method="topK", final_remaining=0.1)])
        >>> trainer.train(); trainer.model.save_pretrained("pruned")
    """

    def __init__(self, config: MovementPruningConfig) -> None:
        self.config = config
        self.total_steps = 0
        self.folded = False

    def on_init_end(self, args, state, control, model=None, **kwargs):
        attach_masks(model, self.config)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self.total_steps = state.max_steps
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
        for layer in layers:
            layer.value = value

    def extend_optimizer(self, optimizer: Any, scheduler: Any, model: nn.Module) -> None:
        """Called by ``CompressionTrainer`` right after it builds the optimizer."""
        if self.config.uses_scores:
            add_scores_group(optimizer, scheduler, model, self.config)

    def extra_loss(self, model: nn.Module, step: int) -> torch.Tensor | None:
        """Called by ``CompressionTrainer`` for each training loss."""
        return self.regularization(model, step)

    def regularization(self, model: nn.Module, step: int) -> torch.Tensor | None:
        """The soft-movement penalty to add to the loss at ``step`` (``None`` when off)."""
        weight = regularization_weight(self.config, step, max(self.total_steps, 1))
        if weight == 0:
            return None
        layers = [m for m in model.modules() if isinstance(m, MaskedLinear)]
        return weight * torch.stack([layer.regularization() for layer in layers]).mean()

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.fold(model)

    def fold(self, model: PreTrainedModel) -> PreTrainedModel:
        """Multiply masks into weights, drop scores, and (structured) cut out the pruned units."""
        if self.folded:
            return model
        from ..heads import prune_ffn_neurons, prune_heads

        if self.config.target_remaining:
            # The last optimizer step moved the scores after tau was set: cut at the final fraction.
            self._set_values(model, max(self.total_steps, 1))
        names = {id(m): n for n, m in model.named_modules()}
        adapter = get_adapter(model)
        heads_plan: dict[int, list[int]] = {}
        neurons_plan: dict[int, list[int]] = {}
        kept, total = 0, 0
        for index, layer in enumerate(adapter.layers(model)):
            for module in list(layer.modules()):
                if not isinstance(module, MaskedLinear):
                    continue
                mask = module.mask().detach()
                kept += int(mask.sum())
                total += mask.numel()
                if self.config.granularity != "element":
                    unit_mask = mask[:, 0].view(-1, module.rows_per_score)[:, 0]
                    dropped = [u for u in range(unit_mask.numel()) if unit_mask[u] == 0]
                    keep_one = dropped[:-1] if len(dropped) == unit_mask.numel() else dropped
                    (heads_plan if module.rows_per_score > 1 else neurons_plan)[index] = keep_one
                replace_submodule(model, names[id(module)], module.folded())
        settings = self.config.to_dict()
        step = {"method": "movement", "pruning_method": settings.pop("method"), **settings,
                "remaining": kept / max(total, 1)}
        append_step(model, step)
        if self.config.sparse_storage:
            store_sparse(model)
        provenance = {"source": "movement pruning"}
        if any(heads_plan.values()):
            prune_heads(model, heads_plan, provenance)
        if any(neurons_plan.values()):
            prune_ffn_neurons(model, neurons_plan, provenance)
        self.folded = True
        logger.info("Movement pruning: %.1f%% of the targeted weights remain.", 100 * kept / max(total, 1))
        return model


def global_threshold(layers: list[MaskedLinear], remaining: float) -> float:
    """The tau that keeps the top ``remaining`` fraction of all layers' (sigmoid) scores together."""
    if remaining >= 1 or not layers:
        return float("-inf")
    with torch.no_grad():
        scores = torch.cat([layer.mask_scores.detach().flatten() for layer in layers])
        if layers[0].config.method == "sigmoied_threshold":
            scores = torch.sigmoid(scores)
        drop = scores.numel() - max(1, int(round(remaining * scores.numel())))
        if drop <= 0:
            return float("-inf")
        return float(scores.float().kthvalue(drop).values)


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
