"""ONNX Runtime int8: export with ``torch.onnx.export``, fuse, quantize dynamically, run.

optimum's ORTQuantizer needs transformers < 4.58, so this path uses torch and onnxruntime
directly. The folder it writes holds ``model.onnx`` plus ``config.json`` (and the tokenizer
when given); :class:`OnnxSequenceClassifier` runs it and returns the same output type as the
torch model.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ...adapters import get_adapter
from ...atomic import writing_folder
from ...calibration import first_batches
from ...cpu import cpu_summary
from ...runtimes import runner_feed
from .config import OnnxExportConfig
from .layers import _quantize_rows
from .model import require_calibration
from .rounding import gptq_linears
from .smoothing import smooth_linears, smoothing_targets

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: PreTrainedModel, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def _input_names(model: PreTrainedModel) -> list[str]:
    return get_adapter(model).input_names(model.config)


def export_onnx(
    model: PreTrainedModel,
    output_dir: str | os.PathLike,
    config: OnnxExportConfig | None = None,
    *,
    tokenizer: Any = None,
    dataloader: Any = None,
    **options: Any,
) -> Path:
    """Write ``model`` as ONNX (int8 when asked) to ``output_dir``; returns the folder.

    ``config`` (:class:`OnnxExportConfig`) says how; its fields may also be given as keyword ``options`` (they
    override the config's), so ``export_onnx(model, out, int8=True, weight_bits=8)`` works as before.
    ``dataloader`` gives calibration batches where the config needs them (static int8, GPTQ, SmoothQuant).

    ``optimize`` runs ONNX Runtime's transformer fusions (attention, LayerNorm, GELU) before
    quantizing; by default (``None``) it does unless the export is int8 on a CPU with VNNI, where
    the unfused int8 graph ran faster (see ``kernels.default_ort_fusions``; the choice is recorded
    in config.json; ``ffn_per_token`` and ``keep_ffn_out_float`` need the fused graph).
    ``per_channel`` quantizes weights per output channel. With both off this is the
    plain ``quantize_dynamic`` recipe. ``keep_ffn_out_float`` leaves the FFN output MatMuls (the
    ones fed by GELU, whose activations have the widest range) in float: slower, more accurate.
    ``weight_bits=7`` is ORT's ``reduce_range``: ORT's AVX2 int8 kernels can saturate with 8-bit
    weights times 8-bit activations (MRPC F1 84.76 with 8, 85.62 with 7, fp32 85.81); with
    per-tensor weights (``per_channel=False``) 7 bits are too coarse, so use 8 there. Unlike the
    torch backend (which picks its activation range on the machine that runs it), an ONNX file is
    fixed at export and may run on any CPU, so 7 stays the default here even on VNNI machines.

    ``ffn_per_token`` gives each token its own activation scale in the FFN MatMuls (the ones that
    feed and read GELU); ``quantize_dynamic`` uses one scale per call, so a few tokens with large
    activations coarsen every other token's grid, and the score then depends on what else is in
    the batch. Attention keeps ONNX Runtime's fused per-tensor QAttention. The trade (SST-2
    teacher, benchmarks/RESULTS.md): predictions changed by int8 0.53% instead of 1.28%, but
    5-12% more batch-1 latency (the row scales take extra graph nodes around the int8 GEMM),
    and no gain on MRPC; hence off by default.

    ``rounding="gptq"`` rounds every linear's weights with GPTQ on ``dataloader`` (batches of
    model inputs, ``max_batches`` of them) onto the grid ONNX Runtime uses (per channel,
    ``max|w| / 64`` with 7-bit weights, ``/ 127`` with 8), so its quantizer keeps those integers:
    the same graph and speed, outputs closer to float.

    ``smoothing`` (SmoothQuant's alpha, e.g. 0.8) rescales the FFN linears' input features on
    ``dataloader`` before quantizing (see ``smoothing.py``): one elementwise Mul in front of each
    FFN MatMul. Combines with ``rounding="gptq"`` (smoothing first).

    ``int8="static"`` quantizes activations with scales calibrated once on ``dataloader`` (ONNX Runtime's
    ``quantize_static``, QDQ format, min-max calibration over ``max_batches`` batches) instead of per call:
    no range computation at run time, but one fixed grid for every input. Only MatMuls with a constant
    weight and the embedding lookups are quantized (attention's activation-by-activation products stay float), on
    the unfused graph
    unless ``optimize=True`` is given. ``int8=True`` (or ``"dynamic"``) is the per-call kind.

    Example:
        >>> export_onnx(model, "onnx-int8", int8=True, tokenizer=tokenizer)
        >>> export_onnx(model, "onnx-static", int8="static", dataloader=calibration_loader, max_batches=16)
        >>> OnnxSequenceClassifier.from_pretrained("onnx-int8")(**tokenizer("great", return_tensors="pt")).logits
    """
    settings = _export_config(config, options)
    int8, static, optimize = bool(settings.int8), settings.static, settings.resolved_optimize()
    per_channel, keep_ffn_out_float, ffn_per_token = settings.per_channel, settings.keep_ffn_out_float, \
        settings.ffn_per_token
    weight_bits, rounding, smoothing, max_batches = settings.weight_bits, settings.rounding, settings.smoothing, \
        settings.max_batches
    if static and dataloader is None:
        raise ValueError("int8='static' calibrates activation scales on data: pass dataloader= with batches of "
                         "model inputs (a few dozen training batches, limited by max_batches).")
    if rounding == "gptq" or smoothing is not None:
        require_calibration(dataloader)
    final_dir = Path(output_dir)
    # Built beside the final folder and swapped in: a killed export leaves the previous one, never half of one.
    with writing_folder(final_dir) as output_dir:
        # Eager attention exports as plain MatMul/Softmax, the pattern ORT's fusions recognise.
        model = copy.deepcopy(model).float().eval()
        if smoothing is not None:
            smooth_linears(model, smoothing_targets(model), dataloader, smoothing, max_batches)
        if rounding == "gptq":
            # ONNX Runtime's symmetric int8 ranges: [-64, 64] with reduce_range (7-bit), [-127, 127] without.
            names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
            rounded = gptq_linears(model, names, dataloader, qmax=64 if weight_bits == 7 else 127, max_batches=max_batches)
            with torch.no_grad():
                for name, (quantized, scale) in rounded.items():
                    linear = model.get_submodule(name)
                    linear.weight.copy_((quantized * scale[:, None]).to(linear.weight))
        model.config._attn_implementation = "eager"
        for module in model.modules():
            if hasattr(module, "config") and module.config is not model.config:
                module.config._attn_implementation = "eager"
        names = _input_names(model)
        dummy = tuple(torch.ones(2, 16, dtype=torch.long) if n != "token_type_ids" else torch.zeros(2, 16, dtype=torch.long)
                      for n in names)
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            fp32 = work / "fp32.onnx"
            with warnings.catch_warnings():
                # transformers' mask code tests "mask shorter than the keys?": never true for these inputs (the
                # mask always spans the sequence), so the branch the tracer freezes is the right one for every shape.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(
                    _LogitsOnly(model, names), dummy, str(fp32), input_names=names, output_names=["logits"],
                    dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
                    opset_version=settings.opset, dynamo=False,
                )
            current = fp32
            if optimize:
                current = _optimize(current, work / "optimized.onnx", model)
            if int8:
                import onnx
                from onnx import TensorProto
                from onnxruntime.quantization import QuantType, quantize_dynamic

                exclude = []
                if keep_ffn_out_float or ffn_per_token:
                    graph_model = onnx.load(str(current))
                    ffn_in, ffn_out = _ffn_matmuls(graph_model.graph)
                    exclude = ffn_out if keep_ffn_out_float else []
                if ffn_per_token:
                    per_token = ffn_in + ([] if keep_ffn_out_float else ffn_out)
                    current = work / "per_token.onnx"
                    onnx.save(_per_token_matmuls(graph_model, per_token, weight_bits, per_channel), str(current))
                if static:
                    _quantize_static(current, work / "int8.onnx", names, dataloader, max_batches, per_channel,
                                     weight_bits, exclude)
                else:
                    # Fused (com.microsoft) nodes defeat ONNX shape inference; their outputs are float.
                    quantize_dynamic(str(current), str(work / "int8.onnx"), weight_type=QuantType.QInt8,
                                     per_channel=per_channel, nodes_to_exclude=exclude, reduce_range=weight_bits == 7,
                                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
                current = work / "int8.onnx"
            shutil.move(str(current), str(output_dir / ONNX_FILE))
        config = model.config.to_dict()
        config["hfcompress_onnx"] = {"int8": ("static" if static else "dynamic") if int8 else False, "optimized": optimize, "per_channel": per_channel,
                                     "ffn_out_float": bool(int8 and keep_ffn_out_float),
                                     "ffn_per_token": bool(int8 and ffn_per_token),
                                     "weight_bits": weight_bits if int8 else None,
                                     "rounding": rounding if int8 else None,
                                     "smoothing": smoothing if int8 else None,
                                     "inputs": names, "opset": settings.opset, "host": cpu_summary()}
        (output_dir / "config.json").write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
    return final_dir


def _export_config(config: OnnxExportConfig | None, options: dict[str, Any]) -> OnnxExportConfig:
    """The config with keyword options applied over it (unknown names get the did-you-mean error)."""
    if config is not None and not isinstance(config, OnnxExportConfig):
        raise TypeError(f"export_onnx takes an OnnxExportConfig; got {type(config).__name__}.")
    base = config.to_dict() if config is not None else {}
    return OnnxExportConfig.from_dict({**base, **options})


def _quantize_static(source: Path, target: Path, names: list[str], dataloader: Any, max_batches: int | None,
                     per_channel: bool, weight_bits: int, exclude: list[str]) -> None:
    """ONNX Runtime static int8 (QDQ) with activation ranges from min-max calibration on ``dataloader``."""
    from onnx import TensorProto
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(first_batches(dataloader, max_batches, "int8='static' calibration"))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            return {name: np.asarray(batch[name] if name in batch else np.zeros_like(batch["input_ids"]),
                                     dtype=np.int64) for name in names}

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, reduce_range=weight_bits == 7,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
                    # Gather: the word embeddings, most of a small model's file, stored as int8 as dynamic int8 does.
                    op_types_to_quantize=["MatMul", "Gemm", "Gather"],
                    extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT})


def _ffn_matmuls(graph: Any) -> tuple[list[str], list[str]]:
    """Names of the FFN MatMuls in an ONNX graph: those whose output feeds a fused GELU, and those that read one."""
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights = {init.name for init in graph.initializer}

    def is_gelu(node) -> bool:
        return node is not None and "Gelu" in node.op_type

    matmuls = [node for node in graph.node if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in weights]
    ffn_in = [node.name for node in matmuls if any(is_gelu(c) for c in consumers.get(node.output[0], []))]
    ffn_out = [node.name for node in matmuls if is_gelu(producer.get(node.input[0]))]
    if not ffn_out or not all(ffn_in + ffn_out):
        raise ValueError("No named MatMul next to a fused GELU was found in the exported graph (keep_ffn_out_float and "
                         "ffn_per_token look for them). They need optimize=True (ONNX Runtime's GELU fusion) and a GELU "
                         "FFN; otherwise export with ffn_per_token=False and without keep_ffn_out_float.")
    return ffn_in, ffn_out


def _per_token_matmuls(model: Any, names: list[str], weight_bits: int, per_channel: bool) -> Any:
    """Replace the named ``MatMul(x, W)`` nodes by int8 MatMuls with one activation scale per token.

    Each row of x (one token) is quantized symmetrically, ``round(x / s) + 128`` with
    ``s = max|x_row| / 127``, and multiplied with int8 weights in ONNX Runtime's
    ``MatMulIntegerToFloat``, which applies the row scales and the weight scales in the same pass.
    Weights use ``weight_bits`` (7: no int16 saturation in AVX2 u8 x s8 kernels).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    targets = set(names)
    uses = Counter(name for node in graph.node for name in node.input)
    added = [numpy_helper.from_array(np.array(1 / 127, np.float32), "PerToken/inv127"),
             numpy_helper.from_array(np.array(1e-12, np.float32), "PerToken/eps"),
             numpy_helper.from_array(np.array(1.0, np.float32), "PerToken/one"),
             numpy_helper.from_array(np.array(128, np.uint8), "PerToken/zero_point"),
             numpy_helper.from_array(np.array([-1], np.int64), "PerToken/last_axis")]
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 17)
    nodes, dropped = [], set()
    for node in graph.node:
        if node.name not in targets:
            nodes.append(node)
            continue
        x, weight_name = node.input
        # ONNX MatMul weights are (in, out); the torch backend's row quantizer wants (out, in).
        rows = torch.from_numpy(numpy_helper.to_array(initializers[weight_name]).T.copy())
        if per_channel:
            quantized, weight_scale = _quantize_rows(rows, weight_bits)
        else:  # one scale for the whole tensor: quantize it as a single row
            quantized, weight_scale = _quantize_rows(rows.reshape(1, -1), weight_bits)
            quantized, weight_scale = quantized.reshape(rows.shape), weight_scale.expand(rows.shape[0])
        quantized, weight_scale = quantized.T.contiguous().numpy(), weight_scale.contiguous().numpy()
        prefix = f"{node.name}/PerToken"
        added += [numpy_helper.from_array(quantized, f"{prefix}/weight_int8"),
                  numpy_helper.from_array(weight_scale, f"{prefix}/weight_scale")]
        if uses[weight_name] == 1:
            dropped.add(weight_name)

        def step(op: str, inputs: list[str], out: str, **attributes: Any) -> str:
            nodes.append(helper.make_node(op, inputs, [f"{prefix}/{out}"], name=f"{prefix}/{out}", **attributes))
            return f"{prefix}/{out}"

        if opset >= 18:  # ReduceMax took axes as an attribute before opset 18 and as an input since
            peak_row = step("ReduceMax", [step("Abs", [x], "abs"), "PerToken/last_axis"], "row_max", keepdims=1)
        else:
            peak_row = step("ReduceMax", [step("Abs", [x], "abs")], "row_max", axes=[-1], keepdims=1)
        scale = step("Max", [step("Mul", [peak_row, "PerToken/inv127"], "row_scale_raw"), "PerToken/eps"], "row_scale")
        x_int8 = step("QuantizeLinear", [step("Div", [x, scale], "scaled"), "PerToken/one", "PerToken/zero_point"],
                      "x_uint8")
        nodes.append(helper.make_node(
            "MatMulIntegerToFloat",
            [x_int8, f"{prefix}/weight_int8", scale, f"{prefix}/weight_scale", "PerToken/zero_point"],
            list(node.output), name=f"{prefix}/matmul", domain="com.microsoft"))
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(entry.domain == "com.microsoft" for entry in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def _optimize(source: Path, target: Path, model: PreTrainedModel) -> Path:
    try:
        from onnxruntime.transformers import optimizer
    except ImportError:  # pragma: no cover - part of the onnxruntime wheel
        logger.warning("onnxruntime.transformers is unavailable; exporting without fusions.")
        return source
    adapter = get_adapter(model)
    if adapter.onnx_fusion_type is None:
        return source
    from onnxruntime.transformers.fusion_options import FusionOptions

    config = model.config
    heads = {adapter.layer_num_heads(layer, config) for layer in adapter.layers(model)}
    options = FusionOptions(adapter.onnx_fusion_type)
    num_heads = heads.pop() if len(heads) == 1 else 0
    if num_heads * adapter.head_size(config) != adapter.hidden_size(config):
        # The fused Attention op takes Q/K/V as wide as the hidden state; after head pruning they are narrower
        # (and per layer uneven), so attention stays unfused. LayerNorm, GELU and the rest still fuse.
        options.enable_attention, num_heads = False, 0
    optimized = optimizer.optimize_model(
        str(source), model_type=adapter.onnx_fusion_type, num_heads=num_heads,
        hidden_size=adapter.hidden_size(config) if num_heads else 0, opt_level=1, optimization_options=options,
    )
    optimized.save_model_to_file(str(target))
    return target


class OnnxSequenceClassifier:
    """Runs an exported classifier with ONNX Runtime; called like the torch model.

    Example:
        >>> model = OnnxSequenceClassifier.from_pretrained("onnx-int8", threads=2)
        >>> model(input_ids=ids, attention_mask=mask).logits
    """

    def __init__(self, session: Any, config: Any, input_names: list[str], path: Path) -> None:
        self.session, self.config, self.input_names, self.path = session, config, input_names, path

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, threads: int | None = 2, spinning: bool = False
    ) -> "OnnxSequenceClassifier":
        """Open ``folder/model.onnx`` on the CPU with ``threads`` intra-op threads.

        ``spinning=False`` stops idle ORT threads from busy-waiting after a call, which would
        otherwise steal the cores from whatever runs next (a torch model timed beside it).
        """
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / ONNX_FILE).is_file():
            raise ValueError(f"{str(folder)!r} has no {ONNX_FILE}; write one with hfcompress export --onnx.")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in ("hfcompress_onnx", "quantization_config")})
        return cls(session, config, [i.name for i in session.get_inputs()], folder / ONNX_FILE)

    def __call__(self, **inputs: Any) -> SequenceClassifierOutput:
        feed = runner_feed(self.input_names, inputs)
        logits = self.session.run(["logits"], feed)[0]
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    def eval(self) -> "OnnxSequenceClassifier":
        return self
