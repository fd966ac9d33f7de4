"""Iterative structured pruning inside a ``Trainer``: prune a share, fine-tune, repeat."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from transformers import TrainerCallback

from .config import FFNPruningConfig, HeadPruningConfig
from .prune import prune_by_importance_round

logger = logging.getLogger(__name__)


class IterativePruningCallback(TrainerCallback):
    """Remove ``config.target`` of the heads (or FFN neurons) in ``config.iterations`` equal rounds.

    Round r runs at step ``r * prune_every`` (the first at step 0, before any update), with
    importance recomputed on ``dataloader``; the Trainer fine-tunes between rounds. The
    optimizer keeps working on the new, smaller parameters (their state restarts). Give a list
    of configs (heads and FFN) to prune both in each round from one callback.

    Example:
        >>> callback = IterativePruningCallback(HeadPruningConfig(target=0.5, iterations=3), loader, prune_every=100)
        >>> Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()
        >>> IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=3),
        ...                           FFNPruningConfig(target=0.5, iterations=3)], loader, prune_every=100)
    """

    def __init__(self, config: HeadPruningConfig | FFNPruningConfig | list[HeadPruningConfig | FFNPruningConfig],
                 dataloader: Any, prune_every: int) -> None:
        if prune_every < 1:
            raise ValueError(f"prune_every must be >= 1 step; got {prune_every}.")
        configs = list(config) if isinstance(config, (list, tuple)) else [config]
        if not configs or len({c.iterations for c in configs}) != 1:
            raise ValueError("Give one or more pruning configs with the same number of iterations; got "
                             f"{[c.iterations for c in configs]}.")
        self.configs, self.dataloader, self.prune_every = configs, dataloader, prune_every
        self.iterations = configs[0].iterations
        self.rounds_done = 0
        self._totals: list[int | None] = [None] * len(configs)

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        due = min(self.iterations, state.global_step // self.prune_every + 1)
        while self.rounds_done < due:
            self._prune_round(model, optimizer)

    def _prune_round(self, model: nn.Module, optimizer: Any) -> None:
        names_to_group = {}
        if optimizer is not None:
            by_id = {id(p): n for n, p in model.named_parameters()}
            for index, group in enumerate(optimizer.param_groups):
                for parameter in group["params"]:
                    names_to_group[by_id.get(id(parameter))] = index
        for index, config in enumerate(self.configs):
            self._totals[index] = prune_by_importance_round(model, config, self.dataloader, self.rounds_done,
                                                            self._totals[index])
        self.rounds_done += 1
        if optimizer is not None:
            # Pruned linears are new Parameter objects: give them to the same groups, fresh state.
            groups = [[] for _ in optimizer.param_groups]
            for name, parameter in model.named_parameters():
                if name in names_to_group:
                    groups[names_to_group[name]].append(parameter)
            for group, parameters in zip(optimizer.param_groups, groups):
                group["params"] = parameters
            optimizer.state.clear()
        logger.info("Iterative pruning: round %d/%d done.", self.rounds_done, self.iterations)
