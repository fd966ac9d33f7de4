"""Structured pruning by importance, shared by the ``heads`` and ``ffn`` methods.

Gate-gradient importance of attention heads and FFN neurons (Michel, Levy, Neubig 2019).

A gate of ones is multiplied into each head's output (the input of the attention output
projection, one gate per head) and each FFN neuron (the input of the FFN output projection);
|∂L/∂gate| accumulated over batches is the importance. Gates are forward pre-hooks, so no model
code changes and the model's outputs are untouched (the gates are 1).
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from dataclasses import dataclass, field

from .adapters import get_adapter
from .calibration import check_max_batches, first_batches
from .callbacks import CompressionCallback
from .integration import annotate_last_step, append_step, get_record, make_step
from .method_config import MethodConfig, check_choice, check_range
from .reconstruction import reconstruct, summarise
from .structure import remove_ffn_neurons, remove_heads, require_weights

logger = logging.getLogger(__name__)
UNITS = ("heads", "ffn")
SCOPES = ("global", "layer")


@dataclass
class UnitPruningConfig(MethodConfig):
    """The fields head and FFN-neuron pruning share (each method's config subclasses this with its name)."""

    target: float = field(default=0.5, metadata={"help": "Fraction of the units to remove, in (0, 1)."})
    scope: str = field(default="global", metadata={"help": "Rank units across the model (global) or per layer."})
    iterations: int = field(default=1, metadata={"help": "Prune in this many rounds, recomputing importance."})
    max_batches: int | None = field(default=None, metadata={"help": "Batches of the dataloader used for importance."})

    def __post_init__(self) -> None:
        check_range("target", self.target, 0, 1, low_open=True, high_open=True,
                    what=f"fraction of {self.unit_description} to remove")
        check_choice("scope", self.scope, SCOPES)
        check_range("iterations", self.iterations, 1)
        check_max_batches(self.max_batches)

    unit_description: ClassVar[str] = "units"

    @property
    def requires_dataloader(self) -> bool:
        return True


@contextmanager
def unit_gates(model: PreTrainedModel, kind: str) -> Iterator[list[torch.Tensor]]:
    """Gates of ones on every head's (or FFN neuron's) output, one tensor per layer: their gradients are the units'
    importance. The model's outputs are unchanged while the gates are 1."""
    adapter = get_adapter(model)
    head_size = adapter.head_size(model.config)
    gates, handles = [], []
    for layer in adapter.layers(model):
        if kind == "heads":
            target = adapter.attention_linears(layer)["output"]
            units, width = target.in_features // head_size, head_size
        else:
            target = adapter.ffn_linears(layer)["out"]
            units, width = target.in_features, 1
        gate = torch.ones(units, device=target.weight.device, requires_grad=True)

        def hook(module: nn.Module, args: tuple, gate=gate, width=width) -> tuple:
            hidden = args[0]
            scaled = hidden * gate.repeat_interleave(width).to(hidden.dtype)
            return (scaled, *args[1:])

        handles.append(target.register_forward_pre_hook(hook))
        gates.append(gate)
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def compute_importance(
    model: PreTrainedModel,
    dataloader: Iterable[dict[str, Any]],
    kind: str = "heads",
    max_batches: int | None = None,
    normalize: bool = True,
) -> list[torch.Tensor]:
    """Per-layer importance (one tensor per layer: heads or FFN neurons).

    The dataloader yields the model's input dicts with ``labels``. With ``normalize`` each
    layer's scores are divided by their L2 norm (as Michel et al. do for heads).

    Example:
        >>> scores = compute_importance(model, loader, kind="heads", max_batches=32)
    """
    if kind not in UNITS:
        raise ValueError(f"kind must be 'heads' or 'ffn'; got {kind!r}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout off: importance is deterministic for fixed batches
    scores: list[torch.Tensor] | None = None
    batches = 0
    try:
        with unit_gates(model, kind) as gates:
            for batch in dataloader:
                if max_batches is not None and batches >= max_batches:
                    break
                if "labels" not in batch:
                    raise ValueError("Importance needs a loss: the dataloader's batches must include 'labels'.")
                batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                loss = model(**batch).loss
                grads = torch.autograd.grad(loss, gates)
                contributions = [g.detach().abs() for g in grads]
                scores = contributions if scores is None else [s + c for s, c in zip(scores, contributions)]
                batches += 1
    finally:
        model.train(was_training)
    if scores is None:
        raise ValueError("The dataloader yielded no batches; importance needs at least one.")
    if normalize:
        scores = [s / s.norm().clamp(min=1e-20) for s in scores]
    return [s.cpu() for s in scores]


def select_units_to_prune(
    scores: Sequence[torch.Tensor], count: int, scope: str, min_keep: int = 1
) -> dict[int, list[int]]:
    """The ``count`` least important units (heads or neurons), never leaving a layer below ``min_keep``.

    ``scope="layer"`` removes the same fraction from every layer; ``"global"`` ranks all units
    together. Ties break by position so the choice is deterministic.

    Example:
        >>> select_units_to_prune([torch.tensor([0.1, 0.9]), torch.tensor([0.5, 0.2])], 2, "global")
        {0: [0], 1: [1]}
    """
    total = sum(len(s) for s in scores)
    plan: dict[int, list[int]] = {i: [] for i in range(len(scores))}
    if scope == "layer":
        fraction = count / total
        for layer, layer_scores in enumerate(scores):
            k = min(int(round(fraction * len(layer_scores))), len(layer_scores) - min_keep)
            order = sorted(range(len(layer_scores)), key=lambda u: (float(layer_scores[u]), u))
            plan[layer] = sorted(order[:k])
        return {k: v for k, v in plan.items() if v}
    ranked = sorted(((float(s), layer, unit) for layer, layer_scores in enumerate(scores)
                     for unit, s in enumerate(layer_scores)))
    remaining = [len(s) for s in scores]
    removed = 0
    for _, layer, unit in ranked:
        if removed == count:
            break
        if remaining[layer] - 1 < min_keep:
            continue
        plan[layer].append(unit)
        remaining[layer] -= 1
        removed += 1
    return {k: sorted(v) for k, v in plan.items() if v}


def prune_by_importance_round(model: PreTrainedModel, config: Any, dataloader, round_index: int,
                              total: int | None = None) -> int:
    """One round of ``config.iterations``: rank by fresh importance and remove this round's share.

    ``config`` is a ``HeadPruningConfig`` or ``FFNPruningConfig`` (its ``name`` says which unit);
    ``total`` is the unit count before the first round (computed when ``None``); returns it.
    """
    kind = config.name
    scores = compute_importance(model, dataloader, kind=kind, max_batches=config.max_batches)
    total = total if total is not None else sum(len(s) for s in scores)
    already_removed = total - sum(len(s) for s in scores)
    goal = round(config.target * total * (round_index + 1) / config.iterations)
    plan = select_units_to_prune(scores, goal - already_removed, config.scope)
    info: dict[str, Any] = {"round": round_index + 1, "units_before_rounds": total}
    if kind == "heads":  # small enough to keep for the model card's heat map
        info["importance"] = [[round(float(v), 6) for v in s] for s in scores]
    shape = (remove_heads if kind == "heads" else remove_ffn_neurons)(model, plan)
    append_step(model, make_step(kind, config, shape, info))
    return total


def prune_by_importance(model: PreTrainedModel, config: Any, dataloader=None) -> PreTrainedModel:
    """Compute importance on ``dataloader`` and remove ``config.target`` of the heads or FFN neurons.

    Example:
        >>> prune_by_importance(model, HeadPruningConfig(target=0.5), train_loader)
    """
    if dataloader is None:
        raise ValueError(f"{type(config).__name__} ranks units by importance and needs data: "
                         "compress(model, config, dataloader=...) with batches that include labels.")
    require_weights(model, "attention heads" if config.name == "heads" else "FFN neurons")
    total = None
    for round_index in range(config.iterations):
        total = prune_by_importance_round(model, config, dataloader, round_index, total)
    return model


class IterativePruningCallback(CompressionCallback):
    """Remove ``config.target`` of the heads (or FFN neurons) in ``config.iterations`` equal rounds.

    Round r runs at step ``r * prune_every`` (the first at step 0, before any update), with
    importance recomputed on ``dataloader``; the Trainer fine-tunes between rounds. The
    optimizer keeps working on the new, smaller parameters (their state restarts). Give a list
    of configs (heads and FFN) to prune both in each round from one callback. With ``reconstruct`` each round
    is followed by a least-squares refit of the attention-output and FFN-output projections to the outputs the
    model had before the round, on the first ``reconstruct_batches`` batches of ``dataloader`` (default: the
    configs' largest ``max_batches``, all when one of them takes all; see
    :func:`hfcompress.reconstruction.reconstruct`), so training resumes from a closer starting point.

    Example:
        >>> callback = IterativePruningCallback(HeadPruningConfig(target=0.5, iterations=3), loader, prune_every=100)
        >>> Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()
        >>> IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=3),
        ...                           FFNPruningConfig(target=0.5, iterations=3)], loader, prune_every=100,
        ...                          reconstruct=True)
    """

    def __init__(self, config: Any, dataloader: Any, prune_every: int, reconstruct: bool = False,
                 ridge: float = 1e-3, reconstruct_batches: int | None = None) -> None:
        if prune_every < 1:
            raise ValueError(f"prune_every must be >= 1 step; got {prune_every}.")
        configs = list(config) if isinstance(config, (list, tuple)) else [config]
        wrong = [type(c).__name__ for c in configs if getattr(c, "name", None) not in UNITS]
        if wrong:
            raise TypeError(f"IterativePruningCallback takes HeadPruningConfig / FFNPruningConfig; got {wrong}.")
        if not configs or len({c.iterations for c in configs}) != 1:
            raise ValueError("Give one or more pruning configs with the same number of iterations; got "
                             f"{[c.iterations for c in configs]}.")
        if ridge <= 0:
            raise ValueError(f"ridge must be > 0 (it keeps the refit well-posed); got {ridge}.")
        self.configs, self.dataloader, self.prune_every = configs, dataloader, prune_every
        if reconstruct_batches is not None:
            check_max_batches(reconstruct_batches)
        elif all(c.max_batches is not None for c in configs):
            reconstruct_batches = max(c.max_batches for c in configs)
        self.reconstruct, self.ridge, self.reconstruct_batches = reconstruct, ridge, reconstruct_batches
        self.iterations = configs[0].iterations
        self.rounds_done = 0
        self._totals: list[int | None] = [None] * len(configs)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step > 0 and model is not None:
            self._restore_rounds(model, state.global_step)
        # The parameters a DistributedDataParallel wrapper was built with; the ones pruning creates later are not
        # among them, so their gradients are averaged across processes here (on_pre_optimizer_step).
        self._wrapped_parameters = {id(p) for p in model.parameters()} if model is not None else set()

    def _restore_rounds(self, model: nn.Module, global_step: int) -> None:
        """A run resumed at ``global_step``: the rounds its checkpoint already holds (CompressionTrainer rebuilt
        their structure before loading the weights) and the unit counts the remaining rounds take shares of."""
        self.rounds_done = min(self.iterations, (global_step - 1) // self.prune_every + 1)
        record = get_record(model)
        steps = record.steps if record is not None else []
        for index, config in enumerate(self.configs):
            done = [s for s in steps if s["method"] == config.name and "units_before_rounds" in s["info"]]
            if len(done) < self.rounds_done:
                raise ValueError(f"Resuming at step {global_step}, {self.rounds_done} pruning round(s) should be in "
                                 f"the checkpoint, but its record holds {len(done)} {config.name} round(s). Resume "
                                 "with CompressionTrainer (it rebuilds the pruned structure before loading weights).")
            self._totals[index] = done[-1]["info"]["units_before_rounds"] if done else None

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        due = min(self.iterations, state.global_step // self.prune_every + 1)
        while self.rounds_done < due:
            self._prune_round(model, optimizer)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return
        world = torch.distributed.get_world_size()
        if world == 1:
            return
        wrapped = getattr(self, "_wrapped_parameters", set())
        for parameter in model.parameters():
            if parameter.grad is not None and id(parameter) not in wrapped:
                torch.distributed.all_reduce(parameter.grad, op=torch.distributed.ReduceOp.SUM)
                parameter.grad.div_(world)

    def _prune_round(self, model: nn.Module, optimizer: Any) -> None:
        names_to_group = {}
        if optimizer is not None:
            by_id = {id(p): n for n, p in model.named_parameters()}
            for index, group in enumerate(optimizer.param_groups):
                for parameter in group["params"]:
                    names_to_group[by_id.get(id(parameter))] = index
        before = copy.deepcopy(model) if self.reconstruct else None
        for index, config in enumerate(self.configs):
            self._totals[index] = prune_by_importance_round(model, config, self.dataloader, self.rounds_done,
                                                            self._totals[index])
        if before is not None:
            batches = first_batches(self.dataloader, self.reconstruct_batches, "reconstruction")
            errors = reconstruct(model, before, batches, self.ridge)
            annotate_last_step(model, {"reconstruction_error": summarise(errors)})
            del before
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
