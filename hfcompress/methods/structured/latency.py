"""A batch-1 latency budget for retraining-free pruning: what each head count and FFN width costs on this machine
and runtime (measured, not assumed), and the kept heads and neurons per layer that keep the most Fisher mass within it.

Latency is not proportional to FLOPs at batch 1: a forward pass pays per-kernel overheads that do not shrink with
the number of heads, and matrix kernels run faster at some widths than others. So the cost of a layer shape is
timed: copies of the model with every layer cut to h heads (and, separately, to n neurons) run interleaved with
the dense model; the time a copy saves, divided by the number of layers, is what one layer of that shape saves.
A few shapes are timed (each as the median of per-round time ratios against the dense model, which cancels the
machine's drift) and the sizes between them are interpolated: timing every size gives noise, not detail.

Any starting shape: savings are kept in milliseconds per layer against the widest layer's size, timed on a model
whose layers are all copies of its widest one (weights do not change a time), so a model already pruned unevenly or
truncated is budgeted from the shape it has. Any runtime: a :class:`LatencyMeter` times torch modules in this
process, or exports every shape it times to an ONNX Runtime / OpenVINO format and times that format's runner, so
the budget is met where the model will run.
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...timing import paired_latency
from ...structure import remove_ffn_neurons, remove_heads

NEURON_GRID = 32  # FFN widths are chosen among this many evenly spaced sizes
TIMED_FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8)  # shares of the heads / width that are timed
# An exported shape costs an export (seconds; int8 calibration more) before it is timed: fewer of them.
EXPORTED_FRACTIONS = (1 / 4, 1 / 2, 3 / 4)
SAVING_BINS = 400  # resolution of the budget in the knapsack over layers
GROUP = 7  # model copies timed together with the dense model (bounds the memory of the measurement)


class LatencyMeter:
    """Times models at batch 1 in the runtime a model will run on. ``runtime="torch"``: the modules themselves, in
    this process; otherwise a recipe export format (``onnx``, ``onnx_int8``, ``openvino``, ``openvino_int8``): each
    model is exported to it in a temporary folder (int8 calibrated on ``calibration``, a few batches) and its
    runner is timed. Models are always compared in rounds against a reference timed alongside (``paired_latency``).

    Example:
        >>> LatencyMeter("openvino_int8", seq_length=64, calibration=batches).ratios(
        ...     {"half": half, "dense": dense}, against="dense")
    """

    def __init__(self, runtime: str = "torch", seq_length: int = 128, rounds: int = 40,
                 calibration: Iterable[dict[str, Any]] | None = None) -> None:
        self.runtime, self.seq_length, self.rounds = runtime, seq_length, rounds
        self.calibration = list(calibration or [])[:2]
        if runtime != "torch":
            from ...runtimes import export_config

            self._spec, self._export_config = export_config(runtime)

    def _runnable(self, models: dict[str, Any], folder: Path) -> dict[str, Any]:
        if self.runtime == "torch":
            return models
        runners = {}
        for index, (name, model) in enumerate(models.items()):
            out = self._spec.export(model, folder / str(index), self._export_config, tokenizer=None,
                                    dataloader=self.calibration or None)
            runners[name] = self._spec.runner.from_pretrained(out, threads=torch.get_num_threads())
        return runners

    def ratios(self, models: dict[str, Any], against: str, alone: Iterable[str] = ()
               ) -> tuple[dict[str, float], dict[str, float]]:
        """Median per-round time ratio of every model to ``models[against]``, and the median ms of ``against`` and of
        each model named in ``alone``, each timed by itself after the comparison.

        Ratios come from models timed in alternation (the machine's drift cancels); milliseconds from a model timed
        by itself, as it runs in use and as a budget's reference is timed, which a model timed among up to seven
        others need not show.
        """
        with tempfile.TemporaryDirectory(prefix="hfcompress-latency-") as folder:
            runners = self._runnable(models, Path(folder))
            timed = paired_latency(runners, [(name, against) for name in models if name != against], batch_size=1,
                                   seq_len=self.seq_length, threads=None, rounds=self.rounds)
            alone_ms = {name: float(paired_latency({name: runners[name]}, [], batch_size=1, seq_len=self.seq_length,
                                                   threads=None, rounds=self.rounds)["median_ms"][name])
                        for name in dict.fromkeys([against, *alone])}
        return ({name: timed["ratios"][f"{name} / {against}"]["median"] for name in models if name != against},
                alone_ms)


@dataclass
class LatencyTable:
    """Batch-1 forward time of the model as it is, and the milliseconds one layer saves per head count / FFN width.

    ``head_saving_ms[h - 1]`` is what one layer keeping ``h`` heads saves against the widest layer's head count,
    ``neuron_saving_ms[k]`` what one layer keeping ``neuron_counts[k]`` FFN neurons saves against the widest
    width. ``heads`` / ``neurons``: each layer's current size, so the saving of a new shape is measured from
    there. Both savings are made non-increasing in the kept size (isotonic fit), since timing noise can otherwise
    reward keeping more. ``runtime``: where it was timed (see :class:`LatencyMeter`).
    """

    current_ms: float
    seq_length: int
    heads: list[int]
    neurons: list[int]
    head_saving_ms: list[float]
    neuron_counts: list[int]
    neuron_saving_ms: list[float]
    runtime: str = "torch"

    def _neuron_saving(self, count: int) -> float:
        return float(np.interp(count, self.neuron_counts, self.neuron_saving_ms))

    def layer_saving_ms(self, layer: int, heads: int, neurons: int) -> float:
        """What layer ``layer`` saves going from its current size to ``heads`` heads and ``neurons`` neurons."""
        return (self.head_saving_ms[heads - 1] - self.head_saving_ms[self.heads[layer] - 1]
                + self._neuron_saving(neurons) - self._neuron_saving(self.neurons[layer]))

    def predicted_ms(self, heads_per_layer: list[int], neurons_per_layer: list[int]) -> float:
        """The batch-1 time the table predicts for this model with these kept heads and FFN widths per layer."""
        return self.current_ms - sum(self.layer_saving_ms(layer, h, n)
                                     for layer, (h, n) in enumerate(zip(heads_per_layer, neurons_per_layer)))

    def layer_options(self, layer: int) -> list[tuple[int, int]]:
        """The (heads, neurons) a layer may keep: any head count up to its own, the grid widths below its own."""
        widths = sorted({n for n in self.neuron_counts if n < self.neurons[layer]} | {self.neurons[layer]})
        return [(h, n) for h in range(1, self.heads[layer] + 1) for n in widths]


def _monotone(sizes: list[int], savings: list[float]) -> list[float]:
    from sklearn.isotonic import IsotonicRegression  # here: importing scikit-learn costs every process ~1 s

    fitted = IsotonicRegression(increasing=False, y_min=0.0).fit_transform(np.asarray(sizes, float), savings)
    return [float(v) for v in fitted]


def _all_layers_like(model: PreTrainedModel, source: int) -> PreTrainedModel:
    """A copy of ``model`` whose every layer is a copy of layer ``source`` (same depth, uniform shape)."""
    adapter = get_adapter(model)
    uniform = copy.deepcopy(model)
    layer = adapter.layers(uniform)[source]
    adapter.set_layers(uniform, nn.ModuleList([copy.deepcopy(layer) for _ in adapter.layers(uniform)]))
    return uniform


def measure_latency_table(model: PreTrainedModel, seq_length: int, rounds: int = 40,
                          neuron_grid: int = NEURON_GRID, reference: PreTrainedModel | None = None,
                          meter: LatencyMeter | None = None) -> LatencyTable:
    """Time the model with every layer cut to a few head counts and FFN widths (``TIMED_FRACTIONS`` of the widest
    layer's, fewer when each shape is exported), at batch 1 and ``seq_length`` tokens, each copy interleaved with
    the uncut one (see ``paired_latency``); every head count and ``neuron_grid`` widths get their saving by
    interpolation. A model whose layers differ (pruned before) is timed through a copy whose layers all have the
    widest shape, and the model itself is timed for the table's starting point. ``reference``: an unchanged
    eval-mode copy of ``model`` the caller already holds (otherwise one is made). ``meter``: where to time
    (default: torch in this process).

    Example:
        >>> table = measure_latency_table(model, seq_length=32)
        >>> table.predicted_ms([6] * 6, [768] * 6)
    """
    meter = meter or LatencyMeter("torch", seq_length, rounds)
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    heads = [adapter.layer_num_heads(layer, model.config) for layer in layers]
    widths = [adapter.ffn_width(layer) for layer in layers]
    reference = reference if reference is not None else copy.deepcopy(model).eval()
    count = len(layers)
    uniform = len(set(heads)) == 1 and len(set(widths)) == 1
    most_heads, widest = int(np.argmax(heads)), int(np.argmax(widths))
    max_heads, max_width = heads[most_heads], widths[widest]
    grid = min(max_width, neuron_grid)
    neuron_counts = sorted({max(1, round(max_width * k / grid)) for k in range(1, grid + 1)})
    fractions = TIMED_FRACTIONS if meter.runtime == "torch" else EXPORTED_FRACTIONS
    timed_heads = sorted({max(1, round(max_heads * f)) for f in fractions} - {max_heads})
    timed_widths = sorted({max(1, round(max_width * f)) for f in fractions} - {max_width})
    current_ms = None

    def saving_ms(kind: str, source: int, timed_sizes: list[int], full: int, sizes: list[int]) -> list[float]:
        nonlocal current_ms
        base = reference if uniform else _all_layers_like(reference, source)
        ratios: dict[int, float] = {}
        base_ms = []
        for start in range(0, len(timed_sizes), GROUP):
            copies = {"uncut": base}
            if current_ms is None and not uniform:
                copies["as is"] = reference
            for size in timed_sizes[start:start + GROUP]:
                shrunk = copy.deepcopy(base)
                if kind == "heads":
                    remove_heads(shrunk, {layer: list(range(full - size)) for layer in range(count)})
                else:
                    remove_ffn_neurons(shrunk, {layer: list(range(full - size)) for layer in range(count)})
                copies[size] = shrunk
            timed, alone_ms = meter.ratios(copies, against="uncut", alone=["as is"] if "as is" in copies else [])
            base_ms.append(alone_ms["uncut"])
            if "as is" in copies:
                timed.pop("as is")
                current_ms = alone_ms["as is"]
            ratios.update(timed)
            del copies
        if uniform and current_ms is None:
            current_ms = float(np.median(base_ms))
        per_layer_ms = float(np.median(base_ms)) / count
        points = [0, *timed_sizes, full]  # a layer with nothing left would save its whole share: extrapolated
        measured = [(1.0 - ratios[size]) * per_layer_ms for size in timed_sizes]
        slope = (measured[0] - measured[1]) / (timed_sizes[1] - timed_sizes[0]) if len(measured) > 1 else 0.0
        values = [measured[0] + slope * timed_sizes[0], *measured, 0.0]
        fitted = _monotone(points, values)
        return [float(np.interp(size, points, fitted)) for size in sizes]

    head_saving = saving_ms("heads", most_heads, timed_heads, max_heads, list(range(1, max_heads + 1)))
    neuron_saving = saving_ms("ffn", widest, timed_widths, max_width, neuron_counts)
    return LatencyTable(current_ms=float(current_ms), seq_length=seq_length, heads=heads, neurons=widths,
                        head_saving_ms=head_saving, neuron_counts=neuron_counts, neuron_saving_ms=neuron_saving,
                        runtime=meter.runtime)


def search_masks_for_latency(head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor], table: LatencyTable,
                             max_latency_ms: float) -> tuple[list[list[int]], list[list[int]], float]:
    """The kept heads and neurons per layer with the most Fisher mass whose predicted batch-1 time is within
    ``max_latency_ms``.

    Within a layer the best h heads (n neurons) are its top-scored ones, so a layer's choice is a pair (h, n) with
    value = the mass of its top h heads and top n neurons and cost = the time that shape saves from the layer's
    current size. A knapsack over layers (savings in ``SAVING_BINS`` steps, each rounded down, so the predicted
    time never exceeds the budget) picks one pair per layer. Returns (kept heads, kept neurons, predicted ms).
    """
    if [len(s) for s in head_scores] != table.heads or [len(s) for s in neuron_scores] != table.neurons:
        raise ValueError("The latency table was measured on another shape than the scores describe: measure it on "
                         "the model being pruned.")
    required = table.current_ms - max_latency_ms
    kept_all = ([list(range(len(s))) for s in head_scores], [list(range(len(s))) for s in neuron_scores])
    if required <= 0:
        return (*kept_all, table.current_ms)
    step = required / SAVING_BINS
    best = np.full(SAVING_BINS + 1, -np.inf)
    best[0] = 0.0
    choices = []
    for layer, (layer_heads, layer_neurons) in enumerate(zip(head_scores, neuron_scores)):
        options = [(int(math.floor(table.layer_saving_ms(layer, h, n) / step + 1e-9)), h, n)
                   for h, n in table.layer_options(layer)]
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
        choices.append((choice, options))
    if not np.isfinite(best[SAVING_BINS]):
        fastest = table.predicted_ms([1] * len(head_scores),
                                     [min(table.layer_options(layer))[1] for layer in range(len(neuron_scores))])
        raise ValueError(f"max_latency_ms={max_latency_ms} is below what removing heads and FFN neurons can reach "
                         f"on this machine ({table.runtime}: about {fastest:.1f} ms at {table.seq_length} tokens, "
                         f"{table.current_ms:.1f} ms as it is); raise it, or reduce the layers first (truncation).")
    shape, position = [], SAVING_BINS
    for choice, options in reversed(choices):
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
                        meter: LatencyMeter | None = None, margin: float = 0.0,
                        ) -> tuple[list[list[int]], list[list[int]], dict[str, float]]:
    """``search_masks_for_latency``, then the chosen shape built on a copy and timed against the model as it is
    (with ``meter``, on the table's runtime); when it is slower than ``max_latency_ms`` (layer savings do not add
    up exactly: a layer cut in both heads and width saves less than the two cuts timed apart), the budget given to
    the search is tightened by the measured excess and the search repeated, up to ``attempts`` times. Returns
    (kept heads, kept neurons, {"predicted_ms", "measured_ms"} of the returned shape). ``reference`` as in
    ``measure_latency_table``. The search aims ``margin`` (a fraction) under the budget and the measured shape must
    land there too: a shape timed at the budget exactly is over it in half of any later timings.
    """
    meter = meter or LatencyMeter(table.runtime, table.seq_length, rounds)
    reference = reference if reference is not None else copy.deepcopy(model).eval()
    aim = max_latency_ms * (1.0 - margin)
    target = aim
    for _ in range(attempts):
        kept_heads, kept_neurons, predicted = search_masks_for_latency(head_scores, neuron_scores, table, target)
        candidate = copy.deepcopy(reference)
        remove(candidate, kept_heads, kept_neurons)
        ratios, _ = meter.ratios({"candidate": candidate, "as is": reference}, against="as is")
        measured = ratios["candidate"] * table.current_ms
        del candidate
        if measured <= aim:
            break
        target *= 0.98 * aim / measured  # a little under: the next measurement is noisy too
    return kept_heads, kept_neurons, {"predicted_ms": predicted, "measured_ms": measured}


def describe_table(table: LatencyTable) -> dict[str, Any]:
    """The measured table, compact enough for the record's info."""
    return {"runtime": table.runtime, "current_ms": round(table.current_ms, 3), "seq_length": table.seq_length,
            "head_saving_ms": [round(v, 4) for v in table.head_saving_ms], "neuron_counts": table.neuron_counts,
            "neuron_saving_ms": [round(v, 4) for v in table.neuron_saving_ms]}
