"""Gate-gradient importance of attention heads and FFN neurons (Michel, Levy, Neubig 2019).

A gate of ones is multiplied into each head's output (the input of the attention output
projection, one gate per head) and each FFN neuron (the input of the FFN output projection);
|∂L/∂gate| accumulated over batches is the importance. Gates are forward pre-hooks, so no model
code changes and the model's outputs are untouched (the gates are 1).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter


@contextmanager
def _gates(model: PreTrainedModel, kind: str) -> Iterator[list[torch.Tensor]]:
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
    if kind not in ("heads", "ffn"):
        raise ValueError(f"kind must be 'heads' or 'ffn'; got {kind!r}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout off: importance is deterministic for fixed batches
    scores: list[torch.Tensor] | None = None
    batches = 0
    try:
        with _gates(model, kind) as gates:
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
