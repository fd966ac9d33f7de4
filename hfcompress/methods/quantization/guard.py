"""Accuracy guard for dynamic int8: keep the fewest linears in float that bring the estimated drop within budget.

The drop is estimated on calibration rows the caller holds out from what it reports (training rows): by default
against the float model's own predictions, which makes it the share of predictions int8 changed (honest on rows the
model trained on, where labels score near 100% in float and in int8 alike), or with ``reference="labels"`` (rows
the model never saw) the points of accuracy lost against their labels; plus one standard error of that paired
difference: a drop measured on a thousand rows is itself uncertain by a few tenths of a point, and a guard held to
the bare measurement overshoots its budget on new rows about half the time. Each linear's cost is measured alone: the
mean KL divergence of the model's output distribution from the float one when only that linear is int8 (on the
first ``RANKING_BATCHES`` batches). The
most costly linears stay float, one more at a time, until the estimated drop is within ``max_drop``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from ...calibration import check_drop_reference
from ...reconstruction import model_inputs
from ...structure import replace_submodule
from .layers import Int8DynamicLinear

RANKING_BATCHES = 8


def _outputs(model: PreTrainedModel, batches: list[dict[str, Any]]) -> torch.Tensor:
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(**model_inputs(batch, device)).logits.float().cpu() for batch in batches])


def _correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1) == labels


def _paired_drop(reference: torch.Tensor, quantized: torch.Tensor) -> tuple[float, float]:
    """Points of accuracy lost (float correct minus int8 correct, as a share of rows) and its standard error."""
    rows = reference.numel()
    lost = float((reference & ~quantized).sum())  # right in float, wrong in int8
    gained = float((~reference & quantized).sum())
    variance = max(lost + gained - (lost - gained) ** 2 / rows, 0.0)
    return 100.0 * (lost - gained) / rows, 100.0 * variance ** 0.5 / rows


def _kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    return float(torch.nn.functional.kl_div(logits.log_softmax(-1), reference.log_softmax(-1), log_target=True,
                                            reduction="batchmean"))


class _Swapped:
    """Linears replaced by int8 copies for a measurement, then put back."""

    def __init__(self, model: PreTrainedModel, names: list[str], weight_bits: int) -> None:
        self.model, self.names, self.weight_bits = model, names, weight_bits
        self.originals: dict[str, nn.Module] = {}

    def __enter__(self) -> "_Swapped":
        for name in self.names:
            original = self.model.get_submodule(name)
            self.originals[name] = original
            replace_submodule(self.model, name, Int8DynamicLinear.from_linear(original, self.weight_bits).eval())
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, original in self.originals.items():
            replace_submodule(self.model, name, original)


def choose_float_linears(model: PreTrainedModel, targets: list[str], batches: list[dict[str, Any]], weight_bits: int,
                         max_drop: float, reference: str = "agreement") -> tuple[list[str], dict[str, Any]]:
    """The linears of ``targets`` to keep in float so that the estimated drop is at most ``max_drop`` points.

    Returns (names kept float, most costly first; info with the estimated drop before and after, the rows used
    and the per-linear costs of those kept float).

    Example:
        >>> kept, info = choose_float_linears(model, names, batches, weight_bits=8, max_drop=0.5)
    """
    check_drop_reference(reference, all("labels" in batch for batch in batches))
    with_labels = reference == "labels"
    was_training = model.training
    model.eval()
    try:
        float_logits = _outputs(model, batches)
        labels = (torch.cat([batch["labels"].reshape(-1).cpu() for batch in batches]) if with_labels
                  else float_logits.argmax(-1))
        float_correct = _correct(float_logits, labels)
        measured: dict[str, float] = {}

        def drop(quantized: list[str]) -> float:
            with _Swapped(model, quantized, weight_bits):
                mean, error = _paired_drop(float_correct, _correct(_outputs(model, batches), labels))
            measured.update(measured_drop=round(mean, 3), standard_error=round(error, 3))
            return mean + error

        start = drop(targets)
        kept: list[str] = []
        estimated = start
        costs: dict[str, float] = {}
        if start > max_drop:
            # The ranking needs one pass per linear: on a few batches it is the same order at a fraction of the time.
            ranking_batches = batches[:RANKING_BATCHES]
            ranking_reference = float_logits[:sum(len(b["input_ids"]) for b in ranking_batches)]
            for name in targets:
                with _Swapped(model, [name], weight_bits):
                    costs[name] = _kl(ranking_reference, _outputs(model, ranking_batches))
            ranked = sorted(targets, key=lambda n: -costs[n])
            while estimated > max_drop and len(kept) < len(ranked):
                kept.append(ranked[len(kept)])
                estimated = drop([n for n in targets if n not in kept])
    finally:
        model.train(was_training)
    info = {"estimated_drop_all_int8": round(start, 3), "estimated_drop": round(estimated, 3), **measured,
            "estimate": "measured drop + 1 standard error",
            "guard_rows": int(labels.numel()), "reference": "labels" if with_labels else
            "agreement with the float model", "kept_float_costs": {n: round(costs[n], 6) for n in kept}}
    return kept, info
