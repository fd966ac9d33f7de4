"""Input statistics of linears on calibration data (activation-aware low-rank, RegMean sharing, GPTQ,
SmoothQuant scales)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from transformers import PreTrainedModel


def check_max_batches(max_batches: int | None) -> None:
    """Reject a calibration batch limit that is not a positive integer or None (all batches).

    Example:
        >>> check_max_batches(32)
    """
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None (all batches); got {max_batches!r}.")


# What an int8 accuracy bound (max_drop) judges the drop against: the float model's own predictions, or labels.
DROP_REFERENCES = ("agreement", "labels")


def check_drop_reference(reference: str, rows_have_labels: bool) -> None:
    """Refuse a drop judged on labels where the calibration rows have none, before any work.

    Example:
        >>> check_drop_reference("agreement", rows_have_labels=False)
    """
    if reference == "labels" and not rows_have_labels:
        raise ValueError('reference="labels" judges the int8 drop on the rows\' labels, and the calibration rows '
                         'have none: give batches with "labels", or use reference="agreement".')


def first_batches(dataloader: Iterable[dict[str, Any]], max_batches: int | None, purpose: str) -> list[dict[str, Any]]:
    """The first ``max_batches`` batches of ``dataloader`` (all when None) as a list, for methods that pass over
    the same calibration data several times; an empty dataloader is an error naming ``purpose``.

    Example:
        >>> batches = first_batches(loader, 8, "retraining-free pruning")
    """
    batches = []
    for batch in dataloader:
        if max_batches is not None and len(batches) >= max_batches:
            break
        batches.append(batch)
    if not batches:
        raise ValueError(f"The calibration dataloader yielded no batches; {purpose} needs at least one.")
    return batches


def _over_inputs(
    model: PreTrainedModel,
    names: list[str],
    dataloader: Iterable[dict[str, Any]],
    max_batches: int | None,
    observe: Callable[[str, torch.Tensor], None],
) -> None:
    """Run ``model`` on the calibration batches and call ``observe(name, x)`` with each named
    module's input, as (tokens, features) rows of real tokens only: positions where the batch's
    ``attention_mask`` is 0 are left out (padding would otherwise weigh in with however much
    padding the batches happen to have)."""
    device = next(model.parameters()).device
    current_mask: list[torch.Tensor | None] = [None]

    def record(name: str):
        def hook(module, args):
            x = args[0].detach()
            mask = current_mask[0]
            if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
                x = x[mask.bool()]
            observe(name, x.reshape(-1, x.shape[-1]))
        return hook

    handles = [model.get_submodule(name).register_forward_pre_hook(record(name)) for name in names]
    was_training = model.training
    model.eval()
    batches = 0
    try:
        with torch.no_grad():
            for batch in dataloader:
                if max_batches is not None and batches >= max_batches:
                    break
                batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                current_mask[0] = batch.get("attention_mask")
                model(**batch)
                batches += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if batches == 0:
        raise ValueError("The calibration dataloader yielded no batches; input statistics need at least one.")


def input_second_moments(
    model: PreTrainedModel,
    names: list[str],
    dataloader: Iterable[dict[str, Any]],
    max_batches: int | None = None,
    append_one: bool = False,
) -> dict[str, torch.Tensor]:
    """``E[x x^T]`` (in x in, float64, on the CPU) of the input of each named linear, over real tokens.

    ``append_one`` appends a constant 1 to x (moments of ``[x, 1]``: the bias's input too).

    Example:
        >>> moments = input_second_moments(model, ["bert.encoder.layer.0.output.dense"], loader, max_batches=16)
    """
    sums: dict[str, torch.Tensor] = {}
    counts = dict.fromkeys(names, 0)

    def observe(name: str, x: torch.Tensor) -> None:
        x = x.double()
        if append_one:
            x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        sums[name] = sums.get(name, 0) + (x.T @ x).cpu()
        counts[name] += x.shape[0]

    _over_inputs(model, names, dataloader, max_batches, observe)
    return {name: sums[name] / max(counts[name], 1) for name in names}


def input_absmax(
    model: PreTrainedModel,
    names: list[str],
    dataloader: Iterable[dict[str, Any]],
    max_batches: int | None = None,
) -> dict[str, torch.Tensor]:
    """Largest ``|x|`` of each input feature (float32, on the CPU) of each named module, over real tokens.

    Example:
        >>> peaks = input_absmax(model, ["bert.encoder.layer.0.intermediate.dense"], loader, max_batches=32)
    """
    peaks: dict[str, torch.Tensor] = {}

    def observe(name: str, x: torch.Tensor) -> None:
        if x.shape[0] == 0:
            return
        peak = x.abs().amax(dim=0).float().cpu()
        peaks[name] = torch.maximum(peaks[name], peak) if name in peaks else peak

    _over_inputs(model, names, dataloader, max_batches, observe)
    missing = [name for name in names if name not in peaks]
    if missing:
        raise ValueError(f"No calibration token reached {missing}: every batch was padding. Pass batches with an "
                         "attention_mask that marks real tokens.")
    return {name: peaks[name] for name in names}
