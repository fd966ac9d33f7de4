"""A batch-1 latency budget for retraining-free pruning: what each head count and FFN width costs on this machine
(measured, not assumed), and the kept heads and neurons per layer that keep the most Fisher mass within it.

Latency is not proportional to FLOPs at batch 1: a forward pass pays per-kernel overheads that do not shrink with
the number of heads, and matrix kernels run faster at some widths than others. So the cost of a layer shape is
timed: copies of the model with every layer cut to h heads (and, separately, to n neurons) run interleaved with
the dense model; the time a copy saves, divided by the number of layers, is what one layer of that shape saves.
A few shapes are timed (each as the median of per-round time ratios against the dense model, which cancels the
machine's drift) and the sizes between them are interpolated: timing every size gives noise, not detail.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...timing import paired_latency
from ...structure import remove_ffn_neurons, remove_heads

NEURON_GRID = 32  # FFN widths are chosen among this many evenly spaced sizes
TIMED_FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8)  # shares of the heads / width that are timed
SAVING_BINS = 400  # resolution of the budget in the knapsack over layers
GROUP = 7  # model copies timed together with the dense model (bounds the memory of the measurement)


@dataclass
class LatencyTable:
    """Batch-1 forward time of the dense model and the fraction of it one layer saves per head count / FFN width.

    ``head_saving[h - 1]`` is the share of the dense time saved by one layer keeping ``h`` heads (0 for all heads),
    ``neuron_saving[k]`` the share saved by one layer keeping ``neuron_counts[k]`` FFN neurons. Both are made
    non-increasing in the kept size (isotonic fit), since timing noise can otherwise reward keeping more.
    """

    dense_ms: float
    seq_length: int
    layers: int
    head_saving: list[float]
    neuron_counts: list[int]
    neuron_saving: list[float]

    def predicted_ms(self, heads_per_layer: list[int], neurons_per_layer: list[int]) -> float:
        """The batch-1 time the table predicts for a model with these kept heads and FFN widths per layer."""
        saved = sum(self.head_saving[h - 1] for h in heads_per_layer)
        saved += sum(float(np.interp(n, self.neuron_counts, self.neuron_saving)) for n in neurons_per_layer)
        return self.dense_ms * (1.0 - saved)


def _monotone(sizes: list[int], savings: list[float]) -> list[float]:
    fitted = IsotonicRegression(increasing=False, y_min=0.0).fit_transform(np.asarray(sizes, float), savings)
    return [float(v) for v in fitted]


def measure_latency_table(model: PreTrainedModel, seq_length: int, rounds: int = 40,
                          neuron_grid: int = NEURON_GRID, reference: PreTrainedModel | None = None) -> LatencyTable:
    """Time the model with every layer cut to a few head counts and FFN widths (``TIMED_FRACTIONS``), at batch 1
    and ``seq_length`` tokens, each copy interleaved with the dense model (see ``paired_latency``); every head
    count and ``neuron_grid`` widths get their saving by interpolation. ``reference``: an unchanged eval-mode copy
    of ``model`` the caller already holds (otherwise one is made).

    Example:
        >>> table = measure_latency_table(model, seq_length=32)
        >>> table.predicted_ms([6] * 6, [768] * 6)
    """
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    heads = adapter.layer_num_heads(layers[0], model.config)
    width = adapter.ffn_width(layers[0])
    if any(adapter.layer_num_heads(layer, model.config) != heads or adapter.ffn_width(layer) != width
           for layer in layers):
        raise ValueError("A latency budget is measured on a model whose layers all have the same shape; this one "
                         "was pruned before. Give the budget as kept_flops instead, or prune the original model.")
    grid = min(width, neuron_grid)
    neuron_counts = sorted({max(1, round(width * k / grid)) for k in range(1, grid + 1)})
    timed_heads = sorted({max(1, round(heads * f)) for f in TIMED_FRACTIONS} - {heads})
    timed_widths = sorted({max(1, round(width * f)) for f in TIMED_FRACTIONS} - {width})
    shapes = [("heads", h) for h in timed_heads] + [("ffn", n) for n in timed_widths]
    reference = reference if reference is not None else copy.deepcopy(model).eval()
    ratios: dict[tuple[str, int], float] = {}
    dense_times = []
    for start in range(0, len(shapes), GROUP):
        copies = {"dense": reference}
        for kind, size in shapes[start:start + GROUP]:
            shrunk = copy.deepcopy(reference)
            if kind == "heads":
                remove_heads(shrunk, {layer: list(range(heads - size)) for layer in range(len(layers))})
            else:
                remove_ffn_neurons(shrunk, {layer: list(range(width - size)) for layer in range(len(layers))})
            copies[f"{kind} {size}"] = shrunk
        names = [name for name in copies if name != "dense"]
        timed = paired_latency(copies, [(name, "dense") for name in names], batch_size=1, seq_len=seq_length,
                               threads=None, rounds=rounds)
        dense_times.append(timed["median_ms"]["dense"])
        for (kind, size), name in zip(shapes[start:start + GROUP], names):
            ratios[(kind, size)] = timed["ratios"][f"{name} / dense"]["median"]
        del copies
    count = len(layers)

    def savings(kind: str, timed_sizes: list[int], full: int, sizes: list[int]) -> list[float]:
        points = [0, *timed_sizes, full]  # a layer with nothing left would save its whole share: extrapolated
        measured = [(1.0 - ratios[(kind, size)]) / count for size in timed_sizes]
        slope = (measured[0] - measured[1]) / (timed_sizes[1] - timed_sizes[0]) if len(measured) > 1 else 0.0
        values = [measured[0] + slope * timed_sizes[0], *measured, 0.0]
        fitted = _monotone(points, values)
        return [float(np.interp(size, points, fitted)) for size in sizes]

    return LatencyTable(dense_ms=float(np.median(dense_times)), seq_length=seq_length, layers=count,
                        head_saving=savings("heads", timed_heads, heads, list(range(1, heads + 1))),
                        neuron_counts=neuron_counts,
                        neuron_saving=savings("ffn", timed_widths, width, neuron_counts))


def search_masks_for_latency(head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor], table: LatencyTable,
                             max_latency_ms: float) -> tuple[list[list[int]], list[list[int]], float]:
    """The kept heads and neurons per layer with the most Fisher mass whose predicted batch-1 time is within
    ``max_latency_ms``.

    Within a layer the best h heads (n neurons) are its top-scored ones, so a layer's choice is a pair (h, n) with
    value = the mass of its top h heads and top n neurons and cost = the time that shape saves. A knapsack over
    layers (savings in ``SAVING_BINS`` steps, each rounded down, so the predicted time never exceeds the budget)
    picks one pair per layer. Returns (kept heads, kept neurons, predicted ms).
    """
    required = 1.0 - max_latency_ms / table.dense_ms
    kept_all = ([list(range(len(s))) for s in head_scores], [list(range(len(s))) for s in neuron_scores])
    if required <= 0:
        return (*kept_all, table.dense_ms)
    step = required / SAVING_BINS
    options = []  # (saving in bins, heads, neurons)
    for h, head_saving in enumerate(table.head_saving, start=1):
        for n, neuron_saving in zip(table.neuron_counts, table.neuron_saving):
            options.append((int(math.floor((head_saving + neuron_saving) / step + 1e-9)), h, n))
    best = np.full(SAVING_BINS + 1, -np.inf)
    best[0] = 0.0
    choices = []
    for layer_heads, layer_neurons in zip(head_scores, neuron_scores):
        head_prefix = np.concatenate([[0.0], np.cumsum(np.sort(layer_heads.double().numpy())[::-1])])
        neuron_prefix = np.concatenate([[0.0], np.cumsum(np.sort(layer_neurons.double().numpy())[::-1])])
        new = np.full(SAVING_BINS + 1, -np.inf)
        choice = np.zeros((SAVING_BINS + 1, 2), dtype=np.int64)  # (option, previous bin)
        for index, (saving, h, n) in enumerate(options):
            candidate = best + head_prefix[h] + neuron_prefix[n]
            capped = max(0, SAVING_BINS - saving)  # bins from here on reach the requirement with this option
            if capped > 0:
                targets = np.arange(capped) + saving
                better = candidate[:capped] > new[targets]
                new[targets[better]] = candidate[:capped][better]
                choice[targets[better]] = np.stack([np.full(better.sum(), index), np.arange(capped)[better]], 1)
            source = capped + int(np.argmax(candidate[capped:]))
            if candidate[source] > new[SAVING_BINS]:
                new[SAVING_BINS], choice[SAVING_BINS] = candidate[source], (index, source)
        best = new
        choices.append(choice)
    if not np.isfinite(best[SAVING_BINS]):
        fastest = table.predicted_ms([1] * len(head_scores), [table.neuron_counts[0]] * len(neuron_scores))
        raise ValueError(f"max_latency_ms={max_latency_ms} is below what removing heads and FFN neurons can reach "
                         f"on this machine (about {fastest:.1f} ms at {table.seq_length} tokens, dense "
                         f"{table.dense_ms:.1f} ms); raise it, or reduce the layers first (truncation).")
    shape, position = [], SAVING_BINS
    for choice in reversed(choices):
        index, position = choice[position]
        shape.append(options[int(index)][1:])
    shape.reverse()
    kept_heads = [sorted(int(i) for i in torch.argsort(s, descending=True, stable=True)[:h].tolist())
                  for s, (h, _) in zip(head_scores, shape)]
    kept_neurons = [sorted(int(i) for i in torch.argsort(s, descending=True, stable=True)[:n].tolist())
                    for s, (_, n) in zip(neuron_scores, shape)]
    return kept_heads, kept_neurons, table.predicted_ms([h for h, _ in shape], [n for _, n in shape])


def meet_latency_budget(model: PreTrainedModel, head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor],
                        table: LatencyTable, max_latency_ms: float,
                        remove: Callable[[PreTrainedModel, list[list[int]], list[list[int]]], Any],
                        attempts: int = 3, rounds: int = 40, reference: PreTrainedModel | None = None,
                        ) -> tuple[list[list[int]], list[list[int]], dict[str, float]]:
    """``search_masks_for_latency``, then the chosen shape built on a copy and timed against the dense model; when
    it is slower than ``max_latency_ms`` (layer savings do not add up exactly: a layer cut in both heads and
    width saves less than the two cuts timed apart), the budget given to the search is tightened by the
    measured excess and the search repeated, up to ``attempts`` times. Returns (kept heads, kept neurons,
    {"predicted_ms", "measured_ms"} of the returned shape). ``reference`` as in ``measure_latency_table``.
    """
    reference = reference if reference is not None else copy.deepcopy(model).eval()
    target = max_latency_ms
    for _ in range(attempts):
        kept_heads, kept_neurons, predicted = search_masks_for_latency(head_scores, neuron_scores, table, target)
        candidate = copy.deepcopy(reference)
        remove(candidate, kept_heads, kept_neurons)
        timed = paired_latency({"candidate": candidate, "dense": reference}, [("candidate", "dense")], batch_size=1,
                               seq_len=table.seq_length, threads=None, rounds=rounds)
        measured = timed["ratios"]["candidate / dense"]["median"] * table.dense_ms
        del candidate
        if measured <= max_latency_ms:
            break
        target *= 0.98 * max_latency_ms / measured  # a little under: the next measurement is noisy too
    return kept_heads, kept_neurons, {"predicted_ms": predicted, "measured_ms": measured}


def describe_table(table: LatencyTable) -> dict[str, Any]:
    """The measured table, compact enough for the record's info."""
    return {"dense_ms": round(table.dense_ms, 3), "seq_length": table.seq_length,
            "head_saving": [round(v, 5) for v in table.head_saving], "neuron_counts": table.neuron_counts,
            "neuron_saving": [round(v, 5) for v in table.neuron_saving]}
