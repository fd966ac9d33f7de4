"""The predecessor/successor layer stack used during replacement training, and the export."""

from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...integration import require_whole_layers
from .config import TheseusConfig


class TheseusLayers(nn.Module):
    """Stands in for the encoder's layer list: yields, per forward, the layers on this draw's path.

    The encoder iterates over its layer list; in training this object yields, for each block,
    either the successor layer (with probability ``rate``) or the block's predecessor layers.
    In eval it yields the successor layers only. The draw comes from a generator seeded by
    (seed, step, micro-batch), so every process of a distributed run and a resumed run take
    the same path.
    """

    def __init__(self, predecessor: nn.ModuleList, successor: nn.ModuleList, seed: int) -> None:
        super().__init__()
        if len(predecessor) % len(successor):
            raise ValueError(
                f"The predecessor's {len(predecessor)} layers do not split into {len(successor)} equal blocks; "
                f"choose successor_layers among {[n for n in range(1, len(predecessor) + 1) if len(predecessor) % n == 0]}."
            )
        self.predecessor = predecessor
        self.successor = successor
        self.block_size = len(predecessor) // len(successor)
        self.seed = seed
        self.rate = 1.0
        self.step = 0
        self._micro_batch = 0
        self.successor_used = False  # since the last optimizer step
        # Fraction of the predecessor's depth reached after each layer of the last path (set by each
        # forward), so hidden-state distillation matches a successor layer to the end of its block.
        self.output_depths: list[float] = []

    def set_step(self, step: int, rate: float) -> None:
        self.step, self.rate, self._micro_batch = step, rate, 0

    def draw(self) -> list[bool]:
        """Which blocks run their successor on the next training forward."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step * 1_009 + self._micro_batch)
        self._micro_batch += 1
        if self.rate >= 1.0:
            return [True] * len(self.successor)
        return (torch.rand(len(self.successor), generator=generator) < self.rate).tolist()

    def _path(self) -> list[nn.Module]:
        # Eval runs the successor only: every block replaced, no draw.
        replaced_blocks = self.draw() if self.training else [True] * len(self.successor)
        depth = len(self.predecessor)
        path: list[nn.Module] = []
        self.output_depths = []
        for block, replaced in enumerate(replaced_blocks):
            start = block * self.block_size
            if replaced:
                path.append(self.successor[block])
                self.output_depths.append((start + self.block_size) / depth)
            else:
                path.extend(self.predecessor[start:start + self.block_size])
                self.output_depths.extend((start + i + 1) / depth for i in range(self.block_size))
        self.successor_used = self.successor_used or (self.training and any(replaced_blocks))
        if len(path) == len(self.predecessor) and torch.is_grad_enabled():
            # An all-predecessor draw (1 in 8 at p=0.5 with 3 blocks) leaves nothing trainable on
            # the path and loss.backward() would fail; a zero-valued link to the successor keeps
            # the graph alive, and the callback drops the resulting zero gradients before the
            # optimizer step so the draw trains nothing, as the method intends.
            path.append(_GradientAnchor(next(self.successor.parameters())))
        return path

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._path())

    def __len__(self) -> int:
        return len(self.successor)

    def __getitem__(self, index: int) -> nn.Module:
        # Indexing (used by some model code and by users) means the model that is being built.
        return self.successor[index]


class _GradientAnchor:
    """Path element that returns the hidden states unchanged but connected to a successor parameter."""

    def __init__(self, parameter: nn.Parameter) -> None:
        self.parameter = parameter

    def __call__(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states + 0.0 * self.parameter.flatten()[0]


def successor_sources(num_layers: int, successor_layers: int, init: str) -> list[int]:
    """Predecessor layer each successor layer is copied from."""
    block = num_layers // successor_layers
    if init == "first":
        return list(range(successor_layers))
    return [(i + 1) * block - 1 for i in range(successor_layers)]


def attach_successor(model: PreTrainedModel, config: TheseusConfig, seed: int = 42) -> TheseusLayers:
    """Put a :class:`TheseusLayers` in place of the model's encoder layers (successor copied per config).

    ``seed`` seeds the replacement draws when ``config.replacement_seed`` is not set.
    """
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    if isinstance(layers, TheseusLayers):
        return layers
    require_whole_layers(model, "Run BERT-of-Theseus")
    if config.successor_layers >= len(layers):
        raise ValueError(
            f"successor_layers={config.successor_layers} must be smaller than the predecessor's {len(layers)} layers."
        )
    sources = successor_sources(len(layers), config.successor_layers, config.successor_init)
    adapter.check_kept_layers(sources, "TheseusConfig(successor_init=\"first\")")
    successor = nn.ModuleList([copy.deepcopy(layers[i]) for i in sources])
    seed = config.replacement_seed if config.replacement_seed is not None else seed
    stack = TheseusLayers(layers, successor, seed)
    # The config keeps the predecessor depth until export.
    adapter.set_layers(model, stack, update_config=False)
    return stack


def detach_successor(model: PreTrainedModel) -> nn.ModuleList:
    """Replace the stack by the successor's plain layer list; the model becomes a standard smaller model."""
    adapter = get_adapter(model)
    stack = adapter.layers(model)
    if not isinstance(stack, TheseusLayers):
        raise ValueError("The model has no Theseus successor attached (attach_successor was not called).")
    successor = stack.successor
    for index, layer in enumerate(successor):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    adapter.set_layers(model, successor)
    return successor
