"""Dynamic int8 quantization of a model (torch backend): apply and rebuild side by side."""

from __future__ import annotations

import logging

import torch
from torch import nn
from transformers import PreTrainedModel

from ...adapters import expand_roles, get_adapter
from ...integration import append_step, make_step
from ...structure import replace_submodule
from ...calibration import first_batches
from .config import DynamicQuantConfig, QuantAwareConfig
from .guard import choose_float_linears
from ...cpu import full_range_int8_kernels
from .kernels import default_weight_bits
from .layers import Int8DynamicLinear, Int8StoredEmbedding, kernel_activation_bits, attach_fake_quant, detach_fake_quant, weight_qmax
from .rounding import gptq_linears
from .smoothing import smooth_linears, smoothing_targets

logger = logging.getLogger(__name__)

SHAPE_KEYS = ("weight_bits", "linears", "smoothed", "embedding")


def target_linear_names(model: PreTrainedModel, config: DynamicQuantConfig) -> list[str]:
    """Full module names of the linears ``config.modules`` selects."""
    adapter = get_adapter(model)
    targets = []
    for name in adapter.role_module_names(model, expand_roles(config.modules)):
        module = model.get_submodule(name)
        if isinstance(module, (nn.Linear, Int8DynamicLinear)):
            targets.append(name)
        elif any(isinstance(child, nn.Linear) for child in module.children()):
            # A factorized linear (low-rank): quantize its factors.
            targets += [f"{name}.{child_name}" for child_name, child in module.named_children()
                        if isinstance(child, nn.Linear)]
        else:
            raise ValueError(f"int8 quantization needs Linear layers; {name!r} is a {type(module).__name__}. "
                             "Quantize before converting layers to another storage form (e.g. store_sparse).")
    if "pooler" in config.modules:
        targets += adapter.pooler_linear_names(model)
    if "classifier" in config.modules:
        targets += adapter.head_linear_names(model)
    return targets


def require_calibration(dataloader):
    """``dataloader``, or a clear error: ``rounding="gptq"`` and ``smoothing`` (both backends) need calibration batches."""
    if dataloader is None:
        raise ValueError("rounding='gptq' and smoothing fit the int8 model to the layers' inputs: pass dataloader= with "
                         "batches of model inputs (compress(model, config, dataloader=...) or export_onnx(..., "
                         "dataloader=...); a few dozen training batches are enough, limited by max_batches), or use "
                         "rounding='nearest' and smoothing=None.")
    return dataloader


def quantize_dynamic_int8(model: PreTrainedModel, config: DynamicQuantConfig | None = None,
                          dataloader=None) -> PreTrainedModel:
    """Quantize ``model`` in place (torch backend) and record the layout for ``from_pretrained``.

    ``dataloader`` (batches of model inputs) is needed with ``rounding="gptq"``.

    Example:
        >>> quantize_dynamic_int8(model, DynamicQuantConfig(embeddings=True))
        >>> model.save_pretrained("int8")  # ~1/4 of the fp32 file; reloads as int8
    """
    config = config or DynamicQuantConfig()
    weight_bits = config.weight_bits or default_weight_bits()
    if config.backend != "torch":
        raise ValueError("quantize_dynamic_int8 is the torch backend; for onnxruntime use export_onnx(..., int8=True).")
    targets = target_linear_names(model, config)
    targets = [name for name in targets if not isinstance(model.get_submodule(name), Int8DynamicLinear)]
    if not targets:
        raise ValueError("Nothing to quantize: the selected linears are already int8.")
    if config.requires_dataloader:
        require_calibration(dataloader)
    guard: dict = {}
    if config.max_drop is not None:
        kept_float, guard = choose_float_linears(model, targets, first_batches(dataloader, config.max_batches,
                                                                               "the accuracy guard (max_drop)"),
                                                 weight_bits, config.max_drop, config.reference)
        targets = [name for name in targets if name not in kept_float]
        guard["kept_float"] = kept_float
        if not targets:
            raise ValueError(f"The accuracy guard kept every linear in float: int8 of any one costs more than "
                             f"max_drop={config.max_drop} points on these rows. Raise max_drop, calibrate on more "
                             "rows, or try quantization-aware fine-tuning (QuantAwareConfig).")
    smoothed = {}
    if config.smoothing is not None:
        smoothed = smooth_linears(model, smoothing_targets(model, among=targets), dataloader, config.smoothing,
                                  config.max_batches)
    # A smoothed linear's weight and (scaled) inputs are those of its inner Linear.
    linear_name = {name: f"{name}.linear" if name in smoothed else name for name in targets}
    rounded = {}
    if config.rounding == "gptq":
        rounded = gptq_linears(model, list(linear_name.values()), dataloader, 2 ** (weight_bits - 1) - 1,
                               config.max_batches)
        rounded = {name: (q.to(torch.int8), scale.float()) for name, (q, scale) in rounded.items()}
    for name in targets:
        replace_submodule(model, name, Int8DynamicLinear.from_linear(
            model.get_submodule(linear_name[name]), weight_bits, rounded.get(linear_name[name]),
            smoothed[name].input_smoothing if name in smoothed else None))
    embedding_name = None
    if config.embeddings:
        embedding = model.get_input_embeddings()
        embedding_name = next(n for n, m in model.named_modules() if m is embedding)
        replace_submodule(model, embedding_name, Int8StoredEmbedding.from_embedding(embedding))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.eval()  # int8 is inference-only (Int8DynamicLinear refuses train mode with a pointer to QAT)
    # The activation width the kernels gave here: a reload where it differs says so (its scores would too).
    activations = kernel_activation_bits(weight_bits)
    append_step(model, make_step(config.name, config, {"weight_bits": weight_bits, "linears": targets,
                                                       "smoothed": list(smoothed), "embedding": embedding_name},
                                 {**guard, "activation_bits": activations}))
    return model


def rebuild_int8(model: PreTrainedModel, step: dict) -> None:
    """Swap the recorded linears (at their current, possibly pruned, shapes) for int8 skeletons."""
    shape = step["shape"]
    # Records written before weight_bits existed used 8-bit weights with 7-bit activations.
    weight_bits = shape.get("weight_bits", 8)
    smoothed = set(shape.get("smoothed", ()))
    for name in shape["linears"]:
        try:
            linear = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"The int8 record names module {name!r}, which this model does not have: the "
                             "checkpoint's config.json and record disagree.") from error
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"The int8 record expects a Linear at {name!r}; found {type(linear).__name__}.")
        replace_submodule(model, name, Int8DynamicLinear(linear.in_features, linear.out_features, linear.bias is not None,
                                                         device=linear.weight.device, weight_bits=weight_bits,
                                                         smoothed=name in smoothed))
    recorded = step.get("info", {}).get("activation_bits")
    here = kernel_activation_bits(weight_bits)
    if recorded is not None and recorded != here:
        logger.warning("This int8 model was quantized where its linears ran %d-bit activations; this process's int8 "
                       "kernels give %d-bit ones (full_range_int8_kernels() is %s here), so its scores may differ "
                       "from those measured there. For 8-bit activations on any x86 CPU, quantize with "
                       "DynamicQuantConfig(weight_bits=7).", recorded, here, full_range_int8_kernels())
    if shape.get("embedding"):
        embedding = model.get_submodule(shape["embedding"])
        replace_submodule(model, shape["embedding"], Int8StoredEmbedding(embedding.num_embeddings, embedding.embedding_dim,
                                                               embedding.padding_idx, device=embedding.weight.device))



def describe_int8(step: dict) -> dict:
    shape, info = step["shape"], step.get("info", {})
    settings = {"int8 linears": len(shape.get("linears", []))}
    if "kept_float" in info:
        settings["kept in float by the accuracy guard"] = (
            f"{len(info['kept_float'])} ({', '.join(info['kept_float']) or 'none'}); estimated drop "
            f"{info['estimated_drop']} points ({info.get('estimate', 'measured drop')}) on {info['guard_rows']} "
            f"held-out rows, judged on {info.get('reference', 'labels')} (all int8: {info['estimated_drop_all_int8']})")
    if step["config"].get("backend", "torch") == "torch":
        # Which activations the kernels can pair with these weights depends on the reader's CPU.
        settings["activations"] = (
            "8-bit on x86 CPUs with VNNI, 7-bit on others (re-quantize there for 7-bit weights and 8-bit "
            "activations)" if shape.get("weight_bits", 8) == 8 else "8-bit on any x86 CPU")
    return settings


def resolved_weight_bits(config: QuantAwareConfig) -> int:
    """The weight bits the conversion will use: the config's, or the backend's default on this CPU."""
    if config.weight_bits is not None:
        return config.weight_bits
    return default_weight_bits() if config.backend == "torch" else 7


def activation_bits(config: QuantAwareConfig) -> int:
    """Bits of the dynamically quantized inputs at inference: 8, except torch's 8-bit weights on CPUs whose int8
    kernels would saturate (7, torch.ao's reduce_range), as :class:`Int8DynamicLinear` decides."""
    if config.backend == "onnxruntime" or resolved_weight_bits(config) == 7 or full_range_int8_kernels():
        return 8
    return 7


def simulate_int8(model: PreTrainedModel, config: QuantAwareConfig) -> list[str]:
    """Attach the int8 simulation to the linears ``config.modules`` selects; their names.

    Example:
        >>> simulate_int8(model, QuantAwareConfig(modules=["attention", "ffn"]))
    """
    names = target_linear_names(model, DynamicQuantConfig(modules=list(config.modules)))
    weight_max, bits = weight_qmax(resolved_weight_bits(config), config.backend), activation_bits(config)
    for name in names:
        attach_fake_quant(model.get_submodule(name), weight_max, bits)
    return names


def stop_simulating(model: nn.Module) -> int:
    """Remove the int8 simulation from every linear of ``model``; how many had it."""
    return sum(detach_fake_quant(module) for module in model.modules())


def finish_quant_aware(model: PreTrainedModel, config: QuantAwareConfig, steps: int | None = None) -> PreTrainedModel:
    """Stop simulating, record the fine-tune, and (torch backend) convert to the int8 modules of
    ``DynamicQuantConfig`` with the same bits; in place."""
    stop_simulating(model)
    bits = resolved_weight_bits(config)
    append_step(model, make_step(config.name, config, {}, {"weight_bits": bits, "activation_bits": activation_bits(config),
                                                           "steps": steps}))
    if config.backend == "torch":
        quantize_dynamic_int8(model, DynamicQuantConfig(modules=list(config.modules), weight_bits=bits,
                                                        embeddings=config.embeddings))
    return model


def describe_qat(step: dict) -> dict:
    info = step.get("info", {})
    described = {"fine-tuned with int8 simulated": f"{info.get('steps')} steps" if info.get("steps") else "yes",
                 "weight bits": info.get("weight_bits"), "activation bits": info.get("activation_bits"),
                 "converted to": "torch int8 modules (next step)" if step["config"].get("backend") == "torch"
                 else "float, for export_onnx(int8=True)"}
    return {k: v for k, v in described.items() if v is not None}
