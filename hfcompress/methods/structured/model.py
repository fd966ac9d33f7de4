"""Retraining-free structured pruning: Fisher importance of head and neuron masks, a joint search under a FLOPs
budget, physical removal, and layer-wise least-squares reconstruction of the output projections.

The record step keeps both shapes (kept heads per layer, FFN width per layer); the rebuild at load gives a fresh
model those shapes, exactly as the ``heads`` and ``ffn`` steps do.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import get_adapter
from ...calibration import first_batches
from ...importance import unit_gates
from ...integration import append_step, make_step, per_layer_steps
from ...reconstruction import describe_reconstruction, model_inputs, reconstruct, summarise, tune_masks
from ...structure import remove_ffn_neurons, remove_heads, require_weights, set_ffn_widths, set_head_counts
from .config import StructuredPruningConfig
from .latency import LatencyMeter, describe_table, meet_latency_budget, measure_latency_table

logger = logging.getLogger(__name__)
SHAPE_KEYS = ("heads_before", "kept_heads", "ffn_before", "ffn_sizes")


def fisher_information(model: PreTrainedModel, batches: list[dict[str, Any]], keep_rows: bool = False) -> tuple:
    """Diagonal (empirical) Fisher of every head mask and FFN-neuron mask: per layer, the squared loss gradient of
    the mask for each calibration row, summed over rows. Rows without ``labels`` are labelled with the model's own
    predictions. Per row, not per batch: the square of a batch's mean gradient lets rows that pull a unit in
    opposite directions cancel, and ranks units by the batch's average direction instead of their information.

    With ``keep_rows`` it also returns each row's gradients, per layer a (rows, units) tensor for heads and one for
    neurons (what mask rearrangement needs).

    Example:
        >>> heads, neurons = fisher_information(model, list(loader)[:16])
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    heads: list[torch.Tensor] | None = None
    neurons: list[torch.Tensor] | None = None
    rows: list[list[torch.Tensor]] = []
    try:
        with unit_gates(model, "heads") as head_gates, unit_gates(model, "ffn") as neuron_gates:
            for batch in batches:
                inputs = model_inputs(batch, device)
                labels = batch.get("labels")
                if labels is None:
                    with torch.no_grad():
                        labels = model(**inputs).logits.argmax(-1)
                labels = labels.to(device)
                mask = inputs.get("attention_mask")
                for row in range(int(inputs["input_ids"].shape[0])):
                    real = mask[row].bool() if mask is not None else slice(None)
                    # Padding dropped (either side): the same loss, with less work.
                    single = {k: v[row:row + 1][:, real] if v.dim() == 2 else v[row:row + 1] for k, v in inputs.items()}
                    loss = model(**single, labels=labels[row:row + 1]).loss
                    grads = torch.autograd.grad(loss, [*head_gates, *neuron_gates])
                    if keep_rows:
                        rows.append([g.detach().float().reshape(-1).cpu() for g in grads])
                    squares = [g.detach().double().pow(2) for g in grads]
                    split = len(head_gates)
                    heads = squares[:split] if heads is None else [a + b for a, b in zip(heads, squares[:split])]
                    neurons = squares[split:] if neurons is None else [a + b for a, b in zip(neurons, squares[split:])]
    finally:
        model.train(was_training)
    if not keep_rows:
        return [h.cpu() for h in heads], [n.cpu() for n in neurons]
    split = len(heads)
    per_layer = [torch.stack([row[i] for row in rows]) for i in range(len(rows[0]))]
    return [h.cpu() for h in heads], [n.cpu() for n in neurons], per_layer[:split], per_layer[split:]


def rearrange(kept: list[int], row_grads: torch.Tensor) -> list[int]:
    """Mask rearrangement (Kwon et al. 2022) for one layer's heads or neurons: the same number kept, chosen by the
    block interaction of the units' per-row gradients (``row_grads``: rows x units).

    The loss a removed set adds grows with the squared length of its summed gradient vector, where units can
    cancel or reinforce each other; the diagonal Fisher sees only each unit's own length. Starting from the
    units of least Fisher mass as the removed set, each remaining unit in order of rising mass joins it, and the
    unit whose leaving makes the set's summed gradient shortest leaves it again.

    Example:
        >>> rearrange([0, 3], torch.randn(64, 4))
        [0, 3]
    """
    units = row_grads.shape[1]
    count = units - len(kept)
    if count == 0 or not kept:
        return sorted(kept)
    vectors = row_grads.T.double()  # units x rows
    order = vectors.pow(2).sum(1).argsort().tolist()
    removed = order[:count]
    for unit in order[count:]:
        removed.append(unit)
        members = vectors[removed]
        total = members.sum(0)
        # Leaving the set leaves total - g_i, of squared length |total|^2 - 2 g_i . total + |g_i|^2.
        lengths = members.pow(2).sum(1) - 2 * (members @ total)
        del removed[int(lengths.argmin())]
    gone = set(removed)
    return [unit for unit in range(units) if unit not in gone]


def unit_flops(model: PreTrainedModel, seq_length: int) -> tuple[float, float]:
    """FLOPs per token of one attention head and of one FFN neuron at ``seq_length`` (multiply-adds x 2).

    A head: its Q, K, V columns and output-projection rows (4 d dh) plus its scores and weighted sum
    (2 L dh). A neuron: one FFN-in column and one FFN-out row (2 d).
    """
    adapter = get_adapter(model)
    hidden, head = adapter.hidden_size(model.config), adapter.head_size(model.config)
    return 2.0 * (4 * hidden * head + 2 * seq_length * head), 2.0 * (2 * hidden)


def search_masks(head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor], head_cost: float,
                 neuron_cost: float, kept_flops: float,
                 removable: Iterable[int] = ()) -> tuple[list[list[int]], list[list[int]], float]:
    """The kept heads and neurons per layer that keep the most Fisher mass within ``kept_flops`` of the FLOPs.

    Every layer kept keeps at least its best head and its best neuron. With a diagonal Fisher the loss a removed
    unit adds is proportional to its score, and every head (every neuron) costs the same, so for each count of
    kept heads the best set is the top heads and the budget left buys the top neurons; the count with the largest
    kept mass wins. Layers in ``removable`` may go whole (empty lists): with r of them gone, the r of least Fisher
    mass go, and the r whose best search keeps the most mass wins (r = 0 included). Returns (kept heads, kept
    neurons, kept fraction).

    Example:
        >>> heads, neurons, kept = search_masks(head_scores, neuron_scores, *unit_flops(model, 64), 0.3,
        ...                                     removable=range(6))
    """
    removable = sorted(set(removable))
    if removable:
        mass = {layer: float(head_scores[layer].sum() + neuron_scores[layer].sum()) for layer in removable}
        by_mass = sorted(removable, key=mass.__getitem__)
        best = None
        for count in range(min(len(by_mass), len(head_scores) - 1) + 1):
            try:
                found = _search_masks(head_scores, neuron_scores, head_cost, neuron_cost, kept_flops,
                                      set(by_mass[:count]))
            except ValueError:
                continue  # too few layers dropped for this budget's mandatory units
            kept_mass = sum(float(head_scores[i][h].sum()) for i, h in enumerate(found[0]) if h) + \
                sum(float(neuron_scores[i][n].sum()) for i, n in enumerate(found[1]) if n)
            if best is None or kept_mass > best[0]:
                best = (kept_mass, found)
        if best is None:
            raise ValueError(f"kept_flops={kept_flops} leaves no budget even for one layer's best head and neuron; "
                             "raise kept_flops.")
        return best[1]
    return _search_masks(head_scores, neuron_scores, head_cost, neuron_cost, kept_flops, set())


def _search_masks(head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor], head_cost: float,
                  neuron_cost: float, kept_flops: float,
                  gone: set[int]) -> tuple[list[list[int]], list[list[int]], float]:
    """:func:`search_masks` with the layers in ``gone`` removed whole (their units cost nothing and count for
    nothing; the budget is still a fraction of every layer's FLOPs)."""
    all_heads = sum(len(s) for s in head_scores)
    all_neurons = sum(len(s) for s in neuron_scores)

    def order(scores: list[torch.Tensor]) -> tuple[list[tuple[int, int]], torch.Tensor, int]:
        scores = [s if layer not in gone else s[:0] for layer, s in enumerate(scores)]
        mandatory = [(layer, int(s.argmax())) for layer, s in enumerate(scores) if len(s)]
        rest = [(float(s[i]), layer, i) for layer, s in enumerate(scores) for i in range(len(s))
                if (layer, i) not in set(mandatory)]
        rest.sort(key=lambda item: -item[0])
        units = mandatory + [(layer, i) for _, layer, i in rest]
        values = torch.tensor([float(scores[layer][i]) for layer, i in units], dtype=torch.float64)
        prefix = torch.cat([torch.zeros(1, dtype=torch.float64), values.cumsum(0)])
        return units, prefix, len(mandatory)

    head_units, head_prefix, head_min = order(head_scores)
    neuron_units, neuron_prefix, neuron_min = order(neuron_scores)
    total = all_heads * head_cost + all_neurons * neuron_cost
    budget = kept_flops * total
    best = None
    for kept_heads in range(head_min, len(head_units) + 1):
        left = budget - kept_heads * head_cost
        kept_neurons = min(len(neuron_units), int(left // neuron_cost)) if left > 0 else 0
        if kept_neurons < neuron_min:
            break
        mass = float(head_prefix[kept_heads] + neuron_prefix[kept_neurons])
        if best is None or mass > best[0]:
            best = (mass, kept_heads, kept_neurons)
    if best is None:
        minimum = (head_min * head_cost + neuron_min * neuron_cost) / total
        raise ValueError(f"kept_flops={kept_flops} is below what one head and one neuron per layer need "
                         f"({minimum:.3f}); raise kept_flops.")
    _, kept_heads, kept_neurons = best
    heads = [sorted(i for layer_, i in head_units[:kept_heads] if layer_ == layer) for layer in range(len(head_scores))]
    neurons = [sorted(i for layer_, i in neuron_units[:kept_neurons] if layer_ == layer)
               for layer in range(len(neuron_scores))]
    return heads, neurons, (kept_heads * head_cost + kept_neurons * neuron_cost) / total


def _removable_layers(model: PreTrainedModel, config: StructuredPruningConfig) -> list[int]:
    """The layers the kept_flops search may drop whole: none when ``remove_layers`` is off or an earlier step's
    record describes every layer (the layer count must stay); not a first layer its family builds differently."""
    if not config.remove_layers or per_layer_steps(model):
        return []
    adapter = get_adapter(model)
    count = len(adapter.layers(model))
    first = 1 if adapter.first_layer_differs else 0
    return list(range(first, count))


def _mean_length(batches: list[dict[str, Any]]) -> int:
    lengths = [b["attention_mask"].sum(-1).float() for b in batches if "attention_mask" in b]
    if not lengths:
        return int(batches[0]["input_ids"].shape[-1])
    return max(1, int(round(float(torch.cat(lengths).mean()))))


def _remove_unkept(model: PreTrainedModel, kept_heads: list[list[int]], kept_neurons: list[list[int]]) -> dict:
    """Remove every head and neuron not kept; the removal's shape record."""
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    head_plan = {index: [h for h in range(adapter.layer_num_heads(layer, model.config)) if h not in set(keep)]
                 for index, (layer, keep) in enumerate(zip(layers, kept_heads))}
    neuron_plan = {index: [n for n in range(adapter.ffn_width(layer)) if n not in set(keep)]
                   for index, (layer, keep) in enumerate(zip(layers, kept_neurons))}
    return {**remove_heads(model, {k: v for k, v in head_plan.items() if v}),
            **remove_ffn_neurons(model, {k: v for k, v in neuron_plan.items() if v})}


def prune_retraining_free(model: PreTrainedModel, config: StructuredPruningConfig,
                          dataloader: Iterable[dict[str, Any]] | None = None) -> PreTrainedModel:
    """Fisher mask search under ``config.kept_flops`` (or ``config.max_latency_ms``), removal, and (``config.reconstruct``) refitting; in place.

    Example:
        >>> prune_retraining_free(model, StructuredPruningConfig(kept_flops=0.5), calibration_loader)
        >>> model.save_pretrained("out")   # reloads with AutoModelForSequenceClassification after `import hfcompress`
    """
    if dataloader is None:
        raise ValueError("StructuredPruningConfig scores heads and neurons on calibration data: "
                         "compress(model, config, dataloader=...) (labels optional).")
    require_weights(model, "attention heads and FFN neurons")
    start = time.perf_counter()
    batches = first_batches(dataloader, config.max_batches, "retraining-free pruning")
    # One unchanged copy serves the latency timings and the reconstruction targets (taken before Fisher's gradients).
    needs_dense = config.reconstruct or config.tune_masks or config.max_latency_ms is not None
    dense = copy.deepcopy(model).eval() if needs_dense else None
    head_scores, neuron_scores, *row_grads = fisher_information(model, batches, keep_rows=config.rearrange)
    # Where the time went (a base-size model's pruning is minutes long): recorded beside the total.
    stages = {"fisher": round(time.perf_counter() - start, 1)}
    seq_length = config.seq_length or _mean_length(batches)
    head_cost, neuron_cost = unit_flops(model, seq_length)
    info: dict[str, Any] = {"seq_length": seq_length,
                            "calibration_rows": sum(int(b["input_ids"].shape[0]) for b in batches),
                            "fine_tuned": False}
    if config.max_latency_ms is not None:
        meter = LatencyMeter(config.latency_runtime, seq_length, calibration=batches)
        table = measure_latency_table(model, seq_length, reference=dense, meter=meter)
        kept_heads, kept_neurons, timing = meet_latency_budget(model, head_scores, neuron_scores, table,
                                                               config.max_latency_ms, _remove_unkept, reference=dense,
                                                               meter=meter, margin=config.latency_margin)
        total = sum(len(s) for s in head_scores) * head_cost + sum(len(s) for s in neuron_scores) * neuron_cost
        kept = (sum(map(len, kept_heads)) * head_cost + sum(map(len, kept_neurons)) * neuron_cost) / total
        info.update({"max_latency_ms": config.max_latency_ms, "latency_runtime": config.latency_runtime,
                     "latency_margin": config.latency_margin,
                     "latency_ms_predicted": round(timing["predicted_ms"], 3),
                     "latency_ms_measured": round(timing["measured_ms"], 3), "latency_table": describe_table(table)})
    else:
        kept_heads, kept_neurons, kept = search_masks(head_scores, neuron_scores, head_cost, neuron_cost,
                                                      config.kept_flops, removable=_removable_layers(model, config))
    info["kept_flops_measured"] = round(kept, 4)
    if config.rearrange:
        head_rows, neuron_rows = row_grads
        rearranged = ([rearrange(k, g) for k, g in zip(kept_heads, head_rows)],
                      [rearrange(k, g) for k, g in zip(kept_neurons, neuron_rows)])
        info["rearranged_units"] = sum(len(set(a) - set(b)) for old, new in ((kept_heads, rearranged[0]),
                                                                           (kept_neurons, rearranged[1]))
                                       for a, b in zip(new, old))
        kept_heads, kept_neurons = rearranged
    kept_layers = [i for i, (h, n) in enumerate(zip(kept_heads, kept_neurons)) if h or n]
    if len(kept_layers) < len(kept_heads):
        info.update({"layers_before": len(kept_heads), "removed_layers": sorted(set(range(len(kept_heads))) -
                                                                                set(kept_layers))})
        layers = get_adapter(model).layers(model)
        get_adapter(model).set_layers(model, nn.ModuleList([layers[i] for i in kept_layers]))
        kept_heads, kept_neurons = [kept_heads[i] for i in kept_layers], [kept_neurons[i] for i in kept_layers]
    shape = _remove_unkept(model, kept_heads, kept_neurons)
    stages["mask search and removal"] = round(time.perf_counter() - start - sum(stages.values()), 1)
    if config.tune_masks:
        tuned = tune_masks(model, dense, batches, dense_layers=kept_layers)
        info["masks_tuned"] = f"{sum(t['applied'] for t in tuned)} of {len(tuned)} projections"
        stages["mask tuning"] = round(time.perf_counter() - start - sum(stages.values()), 1)
    if config.reconstruct:
        errors = reconstruct(model, dense, batches, config.ridge, dense_layers=kept_layers)
        info["reconstruction_error"] = summarise(errors)
        stages["reconstruction"] = round(time.perf_counter() - start - sum(stages.values()), 1)
    del dense
    info["seconds"] = round(time.perf_counter() - start, 1)
    info["stage_seconds"] = stages
    append_step(model, make_step(StructuredPruningConfig.name, config, shape, info))
    logger.info("retraining-free pruning: kept %.1f%% of head+FFN FLOPs in %.0f s", 100 * kept, info["seconds"])
    return model


def rebuild_structured(model: PreTrainedModel, step: dict) -> None:
    """Give a freshly built model the head counts and FFN widths a ``structured`` step left."""
    if "kept_heads" in step["shape"]:
        set_head_counts(model, step["shape"]["kept_heads"])
    if "ffn_sizes" in step["shape"]:
        set_ffn_widths(model, step["shape"]["ffn_sizes"])


def describe_structured(step: dict) -> dict[str, Any]:
    info = step.get("info", {})
    described = {"heads kept per layer": [len(k) for k in step["shape"].get("kept_heads", [])],
                 "FFN width per layer": step["shape"].get("ffn_sizes"),
                 "calibration rows": info.get("calibration_rows"),
                 "head+FFN FLOPs kept": info.get("kept_flops_measured"),
                 "batch-1 latency budget (ms, this machine)": info.get("max_latency_ms"),
                 "latency budget's runtime": info.get("latency_runtime") if info.get("max_latency_ms") else None,
                 "measured batch-1 latency (ms)": info.get("latency_ms_measured"),
                 "fine-tuned": "no" if info.get("fine_tuned") is False else None,
                 "units re-chosen by mask rearrangement": info.get("rearranged_units"),
                 "layers removed whole": info.get("removed_layers"),
                 "masks tuned": info.get("masks_tuned"),
                 **describe_reconstruction(info)}
    return {k: v for k, v in described.items() if v is not None}
