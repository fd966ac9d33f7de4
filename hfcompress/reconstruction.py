"""Layer-wise least-squares reconstruction of a pruned model's output projections (Kwon et al. 2022's "mask
tuning", generalised from per-unit scales to the whole projection), shared by retraining-free structured
pruning and the rounds of ``IterativePruningCallback``.

After heads or FFN neurons are removed, each attention-output and FFN-output projection is refitted so that on
calibration tokens it reproduces what the same projection of the dense model produced.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from .adapters import get_adapter

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of ``batch`` the encoder takes, on ``device`` (labels and extra columns left out)."""
    return {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}


class _Captured(Exception):
    """Raised by a hook once it has what it needs, so the rest of the forward pass is skipped."""


def _projections(model: PreTrainedModel) -> list[tuple[str, nn.Linear]]:
    adapter = get_adapter(model)
    found = []
    for layer, module in enumerate(adapter.layers(model)):
        found.append((f"layer {layer} attention output", adapter.attention_linears(module)["output"]))
        found.append((f"layer {layer} FFN output", adapter.ffn_linears(module)["out"]))
    return found


def _real_tokens(inputs: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    mask = inputs.get("attention_mask")
    return mask.bool() if mask is not None else torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)


def reconstruct(pruned: PreTrainedModel, dense: PreTrainedModel, batches: list[dict[str, Any]],
                ridge: float = 1e-3, dense_layers: list[int] | None = None) -> list[dict[str, Any]]:
    """Refit every attention-output and FFN-output projection of ``pruned``, bottom layer first, so that its
    output on the calibration tokens matches what ``dense``'s same projection produced.

    Each fit is ridge least squares on [kept inputs, 1] -> dense outputs (the constant column only when the
    projection has a bias), solved in float64, with the ridge term ``ridge`` times the mean diagonal of the
    inputs' Gram matrix. Later projections are fitted on inputs that already went through the refitted
    earlier ones, so errors do not pile up. ``dense`` runs once over the batches; ``pruned`` runs once to record
    each layer's inputs, then each projection's inputs come from running its own layer alone (whole-model runs
    per projection, which grow with the square of the depth, only for a model whose layers cannot be replayed
    one by one). Padding tokens are left out.
    ``dense_layers``: which of ``dense``'s layers the pruned layers stand for, in order (when pruning removed
    whole layers); default: the same positions. Returns per projection the relative output error before and
    after its refit.

    Example:
        >>> reconstruct(pruned_model, dense_model, list(loader)[:16])
    """
    def refit(name: str, module: nn.Linear, targets: list[torch.Tensor], inputs: Iterable) -> dict[str, Any]:
        before, after = _refit(module, inputs, targets, ridge)
        return {"relative_error_before": before, "relative_error_after": after}

    return _each_projection(pruned, dense, batches, refit, dense_layers)


def _each_projection(pruned: PreTrainedModel, dense: PreTrainedModel, batches: list[dict[str, Any]],
                     fit: Any, dense_layers: list[int] | None = None) -> list[dict[str, Any]]:
    """``fit(name, module, dense outputs per batch, inputs)`` on every output projection of ``pruned``, bottom
    layer first (each on inputs that went through the ones fitted before it); ``inputs`` yields per batch the
    projection's input and current output on the real tokens. The results with their names.
    ``dense_layers``: the dense layer each pruned layer stands for (default: the same position)."""
    targets, references = _projections(pruned), _projections(dense)
    if dense_layers is not None:
        references = [references[2 * layer + part] for layer in dense_layers for part in (0, 1)]
    if len(targets) != len(references):
        raise ValueError(f"reconstruct needs the pruned model and its dense original with the same layers; got "
                         f"{len(targets) // 2} and {len(references) // 2} layers.")
    device = next(pruned.parameters()).device
    dense_outputs = _dense_outputs(dense, [module for _, module in references], batches)
    was_training = pruned.training
    pruned.eval()
    results = []
    try:
        stream = _LayerStream.capture(pruned, batches, device)
        for index, (name, module) in enumerate(targets):
            layer = index // 2
            inputs = (stream.inputs_of(layer, module) if stream is not None
                      else _inputs_of(module, pruned, batches, device))
            results.append({"projection": name, **fit(name, module, [outputs[index] for outputs in dense_outputs],
                                                      inputs)})
            if stream is not None and index % 2 == 1:
                stream.advance(layer)
    finally:
        pruned.train(was_training)
    return results


class _LayerStream:
    """Every calibration batch's hidden state at the input of one layer of ``model``, moved up a layer at a time.

    One forward pass records the first layer's input and the other arguments of each layer's call (attention
    mask, position bias: they do not depend on the layers' weights); from then on a projection's inputs come from
    running only its own layer, and ``advance`` runs the layer (with its refitted projections) to reach the next.
    So the reconstruction's cost grows with the depth, not with its square.
    """

    def __init__(self, layers: list[nn.Module], hidden: list[torch.Tensor], calls: list[list[tuple]],
                 keeps: list[torch.Tensor]):
        self.layers, self.hidden, self.calls, self.keeps = layers, hidden, calls, keeps

    @classmethod
    def capture(cls, model: PreTrainedModel, batches: list[dict[str, Any]],
                device: torch.device) -> "_LayerStream | None":
        """The stream, or None when running the layers one by one does not reproduce the model's own pass on the
        first batch (a layer used twice, or a model that feeds layers something besides the previous output)."""
        layers = list(get_adapter(model).layers(model))
        if not batches or not layers or len({id(layer) for layer in layers}) != len(layers):
            return None
        # Each call without its hidden state (kept for the first layer only): a copy of every layer's input for
        # every batch would take the depth times the memory the stream needs.
        calls: list[list[tuple]] = [[] for _ in layers]
        hidden: list[torch.Tensor] = []
        keeps: list[torch.Tensor] = []
        last_output: dict[str, torch.Tensor] = {}

        def record(position: int):
            def hook(module, args, kwargs):
                state = args[0] if args else kwargs.get("hidden_states")
                calls[position].append((bool(args), args[1:],
                                        {k: v for k, v in kwargs.items() if k != "hidden_states"}))
                if position == 0 and isinstance(state, torch.Tensor):
                    hidden.append(state.detach())
            return hook

        def take_last(module, args, kwargs, output):
            last_output["h"] = _hidden_of(output).detach()

        handles = [layer.register_forward_pre_hook(record(i), with_kwargs=True) for i, layer in enumerate(layers)]
        handles.append(layers[-1].register_forward_hook(take_last, with_kwargs=True))
        try:
            with torch.no_grad():
                for number, batch in enumerate(batches):
                    inputs = model_inputs(batch, device)
                    model(**inputs)
                    if len(hidden) != number + 1 or any(len(call) != number + 1 for call in calls):
                        return None
                    keeps.append(_real_tokens(inputs, hidden[-1]))
                    if number == 0:
                        expected = last_output["h"]
        finally:
            for handle in handles:
                handle.remove()
        stream = cls(layers, hidden, calls, keeps)
        with torch.no_grad():
            replayed = hidden[0]
            for layer in range(len(layers)):
                replayed = stream._run(layer, 0, replayed)
        if replayed.shape != expected.shape or not torch.allclose(replayed, expected, rtol=1e-4, atol=1e-5):
            return None
        return stream

    def _run(self, layer: int, batch: int, hidden_state: torch.Tensor) -> torch.Tensor:
        positional, args, kwargs = self.calls[layer][batch]
        if positional:
            output = self.layers[layer](hidden_state, *args, **kwargs)
        else:
            output = self.layers[layer](**kwargs, hidden_states=hidden_state)
        return _hidden_of(output)

    def inputs_of(self, layer: int, module: nn.Linear):
        """Per batch, ``module``'s input and current output on the real tokens (float64), running only ``layer``
        and stopping at ``module``."""
        return _stopping_at(module, ((lambda batch=batch, state=state: self._run(layer, batch, state),
                                      lambda x, batch=batch: self.keeps[batch])
                                     for batch, state in enumerate(self.hidden)))

    def advance(self, layer: int) -> None:
        """Every batch's hidden state moved through ``layer`` as it is now."""
        with torch.no_grad():
            self.hidden = [self._run(layer, batch, hidden_state) for batch, hidden_state in enumerate(self.hidden)]


def _hidden_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _dense_outputs(dense: PreTrainedModel, modules: list[nn.Linear],
                   batches: list[dict[str, Any]]) -> list[list[torch.Tensor]]:
    """Per batch, every projection's output on the real tokens (float32, kept on the model's device)."""
    device = next(dense.parameters()).device
    was_training = dense.training
    dense.eval()
    captured: dict[int, torch.Tensor] = {}

    def take(index: int):
        def hook(module, args, output):
            captured[index] = output.detach()
        return hook

    handles = [module.register_forward_hook(take(i)) for i, module in enumerate(modules)]
    outputs = []
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = model_inputs(batch, device)
                captured.clear()
                dense(**inputs)
                keep = _real_tokens(inputs, captured[0])
                outputs.append([captured[i][keep].float() for i in range(len(modules))])
    finally:
        for handle in handles:
            handle.remove()
        dense.train(was_training)
    return outputs


def _inputs_of(module: nn.Linear, pruned: PreTrainedModel, batches: list[dict[str, Any]], device: torch.device):
    """Per batch, the projection's input and current output on the real tokens (float64); the whole model runs
    from the embeddings and stops at the projection."""
    def passes():
        for batch in batches:
            inputs = model_inputs(batch, device)
            yield (lambda: pruned(**inputs)), (lambda x: _real_tokens(inputs, x))

    return _stopping_at(module, passes())


def _stopping_at(module: nn.Linear, passes: Iterable):
    """Per pass (a function running the model or part of it, and one giving the real-token mask from the
    projection's input), ``module``'s input and output on the real tokens (float64); each pass stops there."""
    captured: dict[str, torch.Tensor] = {}

    def take(mod, args, output):
        captured["x"], captured["current"] = args[0].detach(), output.detach()
        raise _Captured

    handle = module.register_forward_hook(take)
    try:
        with torch.no_grad():
            for run, real_tokens in passes:
                try:
                    run()
                except _Captured:
                    pass
                keep = real_tokens(captured["x"])
                yield captured["x"][keep].double(), captured["current"][keep].double()
    finally:
        handle.remove()


def _refit(module: nn.Linear, inputs: Iterable, targets: list[torch.Tensor], ridge: float) -> tuple[float, float]:
    """One projection refitted to ``targets`` (its dense outputs per batch) from ``inputs`` (its input and
    current output per batch); relative errors before and after."""
    with_bias = module.bias is not None  # the constant column fits the bias
    gram, cross, energy, before = None, None, 0.0, 0.0
    for (x, current), y in zip(inputs, targets):
        y = y.double()
        if with_bias:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
        gram = x.T @ x if gram is None else gram + x.T @ x
        cross = x.T @ y if cross is None else cross + x.T @ y
        energy += float(y.pow(2).sum())
        before += float((current - y).pow(2).sum())
    width = module.in_features
    regulariser = torch.zeros_like(gram)
    regulariser[:width, :width] = torch.eye(width, dtype=gram.dtype, device=gram.device) * (
        ridge * float(gram.diagonal()[:width].mean()))
    solution = torch.linalg.solve(gram + regulariser, cross)  # (width [+ 1], out)
    with torch.no_grad():
        module.weight.copy_(solution[:width].T.to(module.weight.dtype))
        if with_bias:
            module.bias.copy_(solution[width].to(module.bias.dtype))
    return (before / max(energy, 1e-30)) ** 0.5, _residual(gram, cross, solution, energy)


def tune_masks(pruned: PreTrainedModel, dense: PreTrainedModel, batches: list[dict[str, Any]],
               ridge: float = 1e-6, max_scale: float = 10.0, dense_layers: list[int] | None = None) -> list[dict[str, Any]]:
    """Kwon et al. 2022's mask tuning: per layer from the bottom, one scale per kept head (its block of the
    attention-output projection's inputs) and per kept FFN neuron (its column of the FFN-output projection),
    fitted by least squares so that the projection's output on the calibration tokens matches the dense model's;
    weights and bias otherwise unchanged. A fit with a scale beyond ``max_scale`` (ill-posed) is not applied.

    With unit scales s, the output is sum_j s_j x_j W[:, j] + b, so the normal equations are
    ((X^T X) * (W^T W)) summed over each unit's block, against the blocks of sum_t x_t (W^T (y_t - b)).

    Example:
        >>> tune_masks(pruned_model, dense_model, list(loader)[:16])
    """
    head_size = get_adapter(pruned).head_size(pruned.config)

    def tune(name: str, module: nn.Linear, targets: list[torch.Tensor], inputs: Iterable) -> dict[str, Any]:
        group = head_size if name.endswith("attention output") else 1
        return _tune(module, inputs, targets, group, ridge, max_scale)

    return _each_projection(pruned, dense, batches, tune, dense_layers)


def _tune(module: nn.Linear, inputs: Iterable, targets: list[torch.Tensor], group: int, ridge: float,
          max_scale: float) -> dict[str, Any]:
    weight = module.weight.detach().double()  # (out, width)
    units = module.in_features // group
    products = weight.T @ weight  # (width, width)
    bias = module.bias.detach().double() if module.bias is not None else 0.0
    lhs = torch.zeros(units, units, dtype=torch.float64, device=weight.device)
    rhs = torch.zeros(units, dtype=torch.float64, device=weight.device)
    for (x, _), y in zip(inputs, targets):
        full = (x.T @ x) * products
        lhs += full.reshape(units, group, units, group).sum(dim=(1, 3))
        rhs += (x * ((y.double() - bias) @ weight)).sum(0).reshape(units, group).sum(1)
    lhs += torch.eye(units, dtype=lhs.dtype, device=lhs.device) * ridge * float(lhs.diagonal().mean())
    try:
        scales = torch.linalg.solve(lhs, rhs)
    except RuntimeError:
        return {"applied": False, "why": "singular"}
    if not torch.isfinite(scales).all() or float(scales.abs().max()) > max_scale:
        return {"applied": False, "why": f"a scale beyond {max_scale:g}"}
    with torch.no_grad():
        module.weight.mul_(scales.repeat_interleave(group).to(module.weight.dtype)[None, :])
    return {"applied": True, "scale_min": round(float(scales.min()), 4), "scale_max": round(float(scales.max()), 4)}


def _residual(gram: torch.Tensor, cross: torch.Tensor, solution: torch.Tensor, energy: float) -> float:
    """sqrt(||X W - Y||^2 / ||Y||^2) from the accumulated Gram and cross terms (no second pass)."""
    squared = energy - 2 * float((solution * cross).sum()) + float((solution * (gram @ solution)).sum())
    return max(squared, 0.0) ** 0.5 / max(energy, 1e-30) ** 0.5


def summarise(errors: list[dict[str, Any]]) -> dict[str, float]:
    """Mean relative output error over the refitted projections, before and after (for a step's info)."""
    return {"before": round(sum(e["relative_error_before"] for e in errors) / len(errors), 4),
            "after": round(sum(e["relative_error_after"] for e in errors) / len(errors), 4)}


def describe_reconstruction(info: dict[str, Any]) -> dict[str, str]:
    """The model card's line for a step whose result was reconstructed (empty when it was not)."""
    errors = info.get("reconstruction_error")
    if not errors:
        return {}
    return {"output projections refitted (relative error)": f"{errors['before']} -> {errors['after']}"}
