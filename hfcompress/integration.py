"""The compression record and its save/load integration with ``transformers``.

Importing hfcompress registers ``quant_method="hfcompress"`` with transformers, the way its own
quantizers are registered. A compressed model carries its record in
``config.quantization_config = {"quant_method": "hfcompress", "format_version": 2, "steps": [...]}``; on
``from_pretrained`` transformers builds the standard skeleton, hands it to
:class:`HfCompressQuantizer`, which replays each step's *structure* (not its weights), and then
loads the safetensors weights into the reshaped skeleton.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transformers import PreTrainedModel
from transformers.quantizers.auto import register_quantization_config, register_quantizer
from transformers.quantizers.base import HfQuantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

from .registry import find_method, get_method, method_names

logger = logging.getLogger(__name__)

QUANT_METHOD = "hfcompress"
# 1: steps in per-method shapes (no version field). 2: every step is
# {"method", "config", "shape", "info"}; version-1 records are read through upgrade_step.
FORMAT_VERSION = 2


def make_step(method: str, config: Any = None, shape: dict[str, Any] | None = None,
              info: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record step in the current shape.

    ``config`` (a method config or its dict) says what was asked, ``shape`` is what the rebuild
    at load time reads, ``info`` is provenance (scores, measured fractions).

    Example:
        >>> make_step("heads", HeadPruningConfig(target=0.5), {"heads_before": [2], "kept_heads": [[1]]})["shape"]
        {'heads_before': [2], 'kept_heads': [[1]]}
    """
    settings = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    settings.pop("method", None)
    return {"method": method, "config": settings, "shape": dict(shape or {}), "info": dict(info or {})}


def upgrade_step(step: dict[str, Any]) -> dict[str, Any]:
    """A version-1 step (per-method shape) in the current shape, using the method's ``shape_keys``."""
    spec = find_method(step["method"])
    if spec is None:
        return dict(step)  # rebuild_structure names the unknown method
    rest = {k: v for k, v in step.items() if k != "method"}
    shape = {k: rest.pop(k) for k in spec.shape_keys if k in rest}
    config = rest.pop("config", None)
    if config is None and spec.config_cls is not None:
        fields = {f.name for f in dataclasses.fields(spec.config_cls)}
        config = {k: rest.pop(k) for k in list(rest) if k in fields}
    return make_step(spec.name, config, shape, rest)


@register_quantization_config(QUANT_METHOD)
class HfCompressConfig(QuantizationConfigMixin):
    """The compression record: ``format_version`` and the ordered steps.

    Every step is ``{"method", "config", "shape", "info"}`` (see :func:`make_step`); a record
    written before ``format_version`` existed is upgraded when read.

    Example:
        >>> HfCompressConfig(steps=[make_step("heads", shape={"kept_heads": [[0, 2], [1]]})]).to_dict()["format_version"]
        2
    """

    def __init__(self, steps: list[dict[str, Any]] | None = None, format_version: int | None = None,
                 **kwargs: Any) -> None:
        kwargs.pop("quant_method", None)
        self.quant_method = QUANT_METHOD
        steps = [dict(step) for step in (steps or [])]
        for step in steps:
            if "method" not in step:
                raise ValueError(f"Every hfcompress record step needs a 'method' key; got {step!r}.")
        if format_version is None:
            format_version = 1 if steps else FORMAT_VERSION
        if not isinstance(format_version, int) or format_version > FORMAT_VERSION:
            raise ValueError(f"This checkpoint's hfcompress record has format_version={format_version!r}; this "
                             f"hfcompress reads versions up to {FORMAT_VERSION}. Upgrade hfcompress.")
        self.format_version = FORMAT_VERSION
        self.steps = [upgrade_step(step) for step in steps] if format_version == 1 else steps
        # Keep unknown top-level fields (written by a newer hfcompress) rather than dropping them.
        self.extra = kwargs

    def to_dict(self) -> dict[str, Any]:
        return {"quant_method": QUANT_METHOD, "format_version": self.format_version,
                "steps": copy.deepcopy(self.steps), **copy.deepcopy(self.extra)}

    def to_diff_dict(self) -> dict[str, Any]:
        return self.to_dict()


def get_record(model: PreTrainedModel) -> HfCompressConfig | None:
    """The model's compression record, or ``None`` for an uncompressed model."""
    record = getattr(model.config, "quantization_config", None)
    if record is None:
        return None
    if isinstance(record, dict):
        if record.get("quant_method") != QUANT_METHOD:
            raise ValueError(
                f"The model already carries a quantization_config of another method "
                f"({record.get('quant_method')!r}); hfcompress cannot add its record to it."
            )
        return HfCompressConfig(**record)
    if isinstance(record, HfCompressConfig):
        return record
    raise ValueError(
        f"The model is quantized with {getattr(record, 'quant_method', record)!r}; hfcompress only records "
        "steps on models it compressed itself. Start from the unquantized model."
    )


def append_step(model: PreTrainedModel, step: dict[str, Any]) -> None:
    """Add one step (built with :func:`make_step`) to the model's record, creating the record if needed."""
    if set(step) != {"method", "config", "shape", "info"}:
        raise ValueError(f"A record step is make_step(method, config, shape, info); got keys {sorted(step)}.")
    get_method(step["method"])  # an unregistered method could not be rebuilt at load time
    record = get_record(model) or HfCompressConfig()
    record.steps.append(copy.deepcopy(step))
    _set_record(model, record)
    forget_broken_ties(model)


def forget_broken_ties(model: PreTrainedModel) -> None:
    """Drop the weight ties a sharing step declared whose parameters a later step replaced (int8 or low-rank
    modules, sliced linears): transformers would otherwise try to re-tie tensors that no longer exist, at save or
    at load. Ties that still hold are kept."""
    ours = getattr(model, "hfcompress_ties", None)
    if not ours:
        return

    def holds(target: str, source: str) -> bool:
        try:
            return model.get_parameter(target) is model.get_parameter(source)
        except AttributeError:
            return False

    broken = {target for target, source in ours.items() if not holds(target, source)}
    if not broken:
        return
    model.hfcompress_ties = {t: s for t, s in ours.items() if t not in broken}
    for attr in ("_tied_weights_keys", "all_tied_weights_keys"):
        declared = getattr(model, attr, None)
        if isinstance(declared, dict):
            setattr(model, attr, {t: s for t, s in declared.items() if t not in broken})


def annotate_last_step(model: PreTrainedModel, info: dict[str, Any]) -> None:
    """Add ``info`` to the newest step of the model's record (something done to that step's result afterwards,
    such as a reconstruction)."""
    record = get_record(model)
    if record is None or not record.steps:
        raise ValueError("annotate_last_step needs a model whose record has a step.")
    record.steps[-1]["info"].update(copy.deepcopy(info))
    _set_record(model, record)


def _set_record(model: PreTrainedModel, record: HfCompressConfig) -> None:
    model.config.quantization_config = record
    base = getattr(model, "base_model", None)
    if base is not None and base is not model and getattr(base, "config", None) is not model.config:
        base.config.quantization_config = record


def rebuild_structure(model: PreTrainedModel, steps: list[dict[str, Any]]) -> None:
    """Replay the structural part of every step, in order, on a freshly built model."""
    for step in steps:
        method = step["method"]
        spec = find_method(method)
        if spec is None:
            raise ValueError(
                f"This checkpoint's hfcompress record has a step {method!r} that this version of "
                f"hfcompress does not know (known: {', '.join(method_names())}). Upgrade hfcompress."
            )
        if spec.rebuild is not None:
            spec.rebuild(model, step)
    forget_broken_ties(model)


def _replaced_children(module: nn.Module) -> bool:
    return any(type(child).__module__.startswith("hfcompress.") for child in module.children())


def _tolerate_replaced_children_in_family_init(model: PreTrainedModel) -> None:
    """Some families' weight init reaches into named children (ModernBERT: ``init(attn.Wqkv.weight)``), which an
    int8 or sparse-stored replacement does not have. Those weights come from the checkpoint: while it loads, a
    parent's family init that fails on such a child is left there (every other module's init runs as usual)."""
    for sub_model in [m for m in model.modules() if isinstance(m, PreTrainedModel)]:
        def init_weights(module: nn.Module, original=sub_model._init_weights) -> None:
            try:
                original(module)
            except AttributeError:
                if not _replaced_children(module):
                    raise

        sub_model._init_weights = init_weights


def _restore_family_init(model: PreTrainedModel) -> None:
    for sub_model in model.modules():
        if isinstance(sub_model, PreTrainedModel) and "_init_weights" in vars(sub_model):
            del sub_model._init_weights


def per_layer_steps(model: PreTrainedModel) -> list[str]:
    """The methods in the model's record whose rebuild describes every layer (heads, FFN widths, low-rank, int8):
    the layer count must not change after them."""
    record = get_record(model)
    return list(dict.fromkeys(step["method"] for step in (record.steps if record else [])
                              if get_method(step["method"]).rebuild))


def require_whole_layers(model: PreTrainedModel, action: str) -> None:
    """Refuse to change the layer count of a model whose record already describes every layer (pruned heads or
    neurons, factorized or shared linears, int8): that record would no longer match the layers, and the model
    would not reload. ``action`` names what to do first ("Truncate layers", "Run BERT-of-Theseus").

    Example:
        >>> require_whole_layers(model, "Truncate layers")
    """
    per_layer = per_layer_steps(model)
    if per_layer:
        raise ValueError(f"{action} before {', '.join(per_layer)}: their record describes every layer "
                         "of the model, so change the layer count first, then compress the layers that stay.")


def replay_checkpoint_structure(model: PreTrainedModel, folder: str | Path) -> None:
    """Give ``model`` the structure of the training checkpoint in ``folder`` when that checkpoint's record has more
    steps than the model's (steps taken during training); the earlier steps must be the same ones."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get("quantization_config") or {}
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the checkpoint was not written whole (the run was "
                         "stopped while saving it). Resume from the checkpoint before it.") from None
    if saved.get("quant_method") != QUANT_METHOD:
        return
    steps = HfCompressConfig(**saved).steps
    record = get_record(model)
    current = record.steps if record is not None else []
    if len(steps) <= len(current):
        return
    if [s["method"] for s in steps[:len(current)]] != [s["method"] for s in current]:
        raise ValueError(f"The checkpoint in {folder} was made from a differently compressed model (its steps: "
                         f"{[s['method'] for s in steps]}; this model's: {[s['method'] for s in current]}). Resume "
                         "with the same model and compression settings.")
    rebuild_structure(model, steps[len(current):])
    _set_record(model, HfCompressConfig(**{**saved, "steps": steps}))


def _runtime_quantized(steps: list[dict[str, Any]]) -> bool:
    return any(getattr(find_method(step["method"]), "runtime_quantized", False) for step in steps)


def check_checkpoint_files(model: PreTrainedModel, files: list[str]) -> None:
    """Before any weight is read: every safetensors file opens, and every tensor it holds has the shape the
    record rebuilt. Both failures otherwise surface as messages that name neither the file nor the cause."""
    from safetensors import safe_open

    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    wrong = []
    for file in files:
        if not str(file).endswith(".safetensors"):
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types for bad headers and short files
            raise OSError(f"{file} cannot be read ({str(error).splitlines()[0]}): the file is truncated or "
                          "corrupted. Save the model again, or download it again.") from error
        wrong += [f"{key} {shape} (record: {expected[key]})" for key, shape in shapes.items()
                  if key in expected and expected[key] != shape]
    if wrong:
        raise ValueError(f"The weights in {Path(files[0]).parent} do not have the shapes its config.json (with the "
                         f"hfcompress record) describes ({len(wrong)} tensors, e.g. {wrong[0]}): config.json and the weights "
                         "come from different saves. Save the model again, or put back the config.json saved with "
                         "these weights.")


@register_quantizer(QUANT_METHOD)
class HfCompressQuantizer(HfQuantizer):
    """Rebuilds the compressed skeleton before ``from_pretrained`` loads the weights."""

    requires_calibration = False

    def __init__(self, quantization_config: HfCompressConfig, **kwargs: Any) -> None:
        super().__init__(quantization_config, **kwargs)
        if not self.pre_quantized:
            raise ValueError(
                "The hfcompress record describes a model that is already compressed; it cannot be "
                "passed to from_pretrained(quantization_config=...) to compress a model. Use "
                "hfcompress.compress(model, config) or a hfcompress callback instead."
            )

    def validate_environment(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update_dtype(self, dtype: Any) -> Any:
        if self._runtime_quantized() and dtype in (torch.float16, torch.bfloat16):
            raise ValueError(f"This checkpoint holds hfcompress int8 weights, whose CPU kernels take float32 "
                             f"activations; it cannot run in dtype={dtype}. Load it without dtype= (or with "
                             "dtype=torch.float32).")
        return dtype

    def _process_model_before_weight_loading(self, model: PreTrainedModel, **kwargs: Any) -> PreTrainedModel:
        rebuild_structure(model, self.quantization_config.steps)
        _tolerate_replaced_children_in_family_init(model)
        check_checkpoint_files(model, kwargs.get("checkpoint_files") or [])
        return model

    def _process_model_after_weight_loading(self, model: PreTrainedModel, **kwargs: Any) -> PreTrainedModel:
        _restore_family_init(model)
        if not self._runtime_quantized():
            # Only the shapes differ from the standard model: it is a plain float model that
            # trains, casts (.half()) and saves like any other, with the record kept in its config.
            model.hf_quantizer = None
            model.is_quantized = False
            model.quantization_method = None
            for module in model.modules():
                if isinstance(module, PreTrainedModel) and hasattr(module.config, "_is_quantized"):
                    module.config._is_quantized = False
        return model

    def is_serializable(self, **kwargs: Any) -> bool:
        return True

    def _runtime_quantized(self) -> bool:
        return _runtime_quantized(self.quantization_config.steps)

    @property
    def is_trainable(self) -> bool:
        # Trainer checks this in its constructor, which would also stop evaluate() and predict() of an int8
        # model. Reshaped float models train like any other; int8 ones refuse train mode in their int8 layers,
        # with a pointer to quantization-aware training.
        return True

    @property
    def is_qat_trainable(self) -> bool:
        return True
