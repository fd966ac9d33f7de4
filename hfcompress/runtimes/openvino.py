"""OpenVINO: the fastest CPU runtime we ship. Export any model hfcompress produces to OpenVINO IR (float, or int8
by NNCF post-training quantization, optionally accuracy-controlled), and run it with the same calling convention
as the torch model and :class:`~hfcompress.OnnxSequenceClassifier`.

The route is our own ONNX export (float, unfused: OpenVINO fuses itself), ``openvino.convert_model``, then NNCF's
``quantize`` with the transformer preset on calibration rows. optimum-intel, the usual route, pins transformers
below 5.6, so it is not used. Two traps seen on the way are handled here: NNCF failed on a model fresh from
``convert_model`` ("Could not find a node Gather_40 in NNCFGraph") but not on the same model saved and read back;
and OpenVINO runs "fp32" as bf16 on CPUs with bf16 instructions, so the precision the CPU runs is recorded and
``precision="f32"`` forces float32.

Example:
    >>> export_openvino(model, "ov-int8", OpenVINOExportConfig(int8=True), tokenizer=tokenizer, dataloader=train_loader)
    >>> OpenVINOSequenceClassifier.from_pretrained("ov-int8")(**tokenizer("great", return_tensors="pt")).logits
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..adapters import get_adapter
from ..atomic import writing_folder
from ..calibration import DROP_REFERENCES, check_drop_reference
from ..cpu import cpu_summary
from ..method_config import MethodConfig, check_choice, check_range
from . import RuntimeSpec, register_runtime, runner_feed

logger = logging.getLogger(__name__)

XML_FILE = "openvino_model.xml"
RECORD_KEY = "hfcompress_openvino"
PRECISIONS = (None, "f32", "bf16", "f16")
PRESETS = ("mixed", "performance")
INSTALL_HINT = "pip install 'hfcompress[openvino]' (openvino and nncf; optimum-intel is not needed)"


def _require_openvino():
    """``(openvino, nncf)``, or one line saying how to install them."""
    try:
        import nncf
        import openvino
    except ImportError as error:
        raise ImportError(f"OpenVINO export needs the openvino and nncf packages ({error.name} is missing): "
                          f"{INSTALL_HINT}.") from None
    return openvino, nncf


@dataclass
class OpenVINOExportConfig(MethodConfig):
    """How ``export_openvino`` writes a model for OpenVINO: one object read by the function, the
    ``hfcompress export --openvino`` flags and a recipe's ``export`` stage (formats ``openvino`` / ``openvino_int8``).

    ``int8`` quantizes with NNCF post-training quantization (transformer preset) on ``calibration_rows`` rows of
    ``dataloader``. ``max_drop`` (points of accuracy on held-out rows: the dataloader's rows after the calibration
    ones) switches to NNCF's accuracy-controlled quantization, which keeps the layers that cost most in float until
    the drop is within it; the measured drop is recorded. ``reference`` says what the drop is judged against:
    ``"agreement"`` (default) with the float model's own predictions, which measures what int8 changed even on rows
    the model was trained on (calibration rows usually are: there a fine-tuned model's labels score near 100% in
    float and in int8, and a drop on them says nothing), or ``"labels"``, for held-out rows the model never saw.
    ``precision`` is what the CPU computes the float parts in:
    ``None`` leaves OpenVINO's choice (bf16 where the CPU has bf16 instructions), ``"f32"`` forces float32.

    Example:
        >>> OpenVINOExportConfig(int8=True, calibration_rows=300, precision="f32").requires_dataloader
        True
    """

    name: ClassVar[str] = "openvino"

    int8: bool = field(default=False, metadata={"help": "quantize to int8 with NNCF (calibrates on training rows)"})
    precision: str | None = field(default=None, metadata={
        "help": "inference precision of the float parts: f32, bf16, f16 (default: the CPU's choice, bf16 where it "
                "has bf16 instructions)"})
    calibration_rows: int = field(default=300, metadata={"help": "rows NNCF calibrates int8 on"})
    max_drop: float | None = field(default=None, metadata={
        "help": "with int8: accuracy-controlled quantization, at most this many points lost on held-out rows"})
    validation_rows: int = field(default=256, metadata={
        "help": "with max_drop: held-out rows (after the calibration rows) the drop is measured on"})
    reference: str = field(default="agreement", metadata={
        "help": "with max_drop: judge the drop on agreement with the float model's predictions (default; honest on "
                "rows the model trained on) or on the rows' labels (rows it never saw)"})
    preset: str = field(default="mixed", metadata={
        "help": "NNCF preset: mixed (asymmetric activations) or performance (symmetric)"})

    def __post_init__(self) -> None:
        if not isinstance(self.int8, bool):
            raise ValueError(f"int8 must be True or False; got {self.int8!r}.")
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("preset", self.preset, PRESETS)
        check_choice("reference", self.reference, DROP_REFERENCES)
        check_range("calibration_rows", self.calibration_rows, 1)
        check_range("validation_rows", self.validation_rows, 1)
        check_range("max_drop", self.max_drop, 0, allow_none=True, what="points of accuracy int8 may lose")
        if self.max_drop is not None and not self.int8:
            raise ValueError("max_drop bounds what int8 quantization loses: it needs int8=True.")

    @property
    def requires_dataloader(self) -> bool:
        """Whether the export calibrates on ``dataloader=`` (int8)."""
        return self.int8


def _rows(dataloader: Iterable[dict[str, Any]], names: list[str], limit: int) -> list[dict[str, np.ndarray]]:
    """Single rows (padding trimmed) from batches of model inputs, as NNCF calibrates best one row at a time; one
    clear line when the batches are empty or lack the model's inputs."""
    rows: list[dict[str, np.ndarray]] = []
    for batch in dataloader:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"OpenVINO int8 calibrates on batches of model inputs ({', '.join(names)}); a batch had "
                             f"{found}: tokenize the rows (e.g. hfcompress.data.tokenize_task) and collate them.")
        ids = np.asarray(batch["input_ids"])
        mask = np.asarray(batch["attention_mask"]) if "attention_mask" in batch else np.ones_like(ids)
        labels = batch.get("labels", batch.get("label"))
        for i in range(ids.shape[0]):
            length = max(1, int(mask[i].sum()))
            row = {}
            for name in names:
                value = np.asarray(batch[name])[i] if name in batch else np.zeros_like(ids[i])
                row[name] = value[:length][None].astype(np.int64)
            if labels is not None:
                row["labels"] = np.asarray(labels)[i]
            rows.append(row)
            if len(rows) >= limit:
                return rows
    return rows


def _check_dataloader(dataloader: Any, config: OpenVINOExportConfig, names: list[str]):
    """Calibration (and, with max_drop, validation) rows, checked before any work."""
    if not config.int8:
        return [], []
    if dataloader is None:
        raise ValueError("OpenVINO int8 calibrates on data: pass dataloader= with batches of model inputs (a few "
                         "hundred training rows; calibration_rows of them are used).")
    wanted = config.calibration_rows + (config.validation_rows if config.max_drop is not None else 0)
    rows = _rows(dataloader, names, wanted)
    if not rows:
        raise ValueError("OpenVINO int8 calibration got no rows: the dataloader is empty.")
    calibration, held_out = rows[:config.calibration_rows], rows[config.calibration_rows:]
    if config.max_drop is not None and len(held_out) < 32:
        raise ValueError(f"max_drop is measured on rows after the {config.calibration_rows} calibration rows, and the "
                         f"dataloader gave {len(held_out)}: give it more rows or lower calibration_rows.")
    if config.max_drop is not None:
        check_drop_reference(config.reference, all("labels" in row for row in held_out))
    return calibration, held_out


TARGET_KEY = "accuracy_control_target"


def _inputs_only(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in row.items() if k not in ("labels", TARGET_KEY)}


def _predictions(compiled: Any, rows: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.array([int(np.argmax(compiled(_inputs_only(row))[0], axis=-1)[0]) for row in rows])


def _quantize(openvino: Any, nncf: Any, model: Any, config: OpenVINOExportConfig, calibration: list,
              held_out: list) -> tuple[Any, dict[str, Any]]:
    """NNCF int8 of ``model``; with ``max_drop``, accuracy-controlled on ``held_out`` (on agreement with the float
    model, or on the rows' labels with ``reference="labels"``), and the drop measured the way it was asked."""
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}[config.preset]
    calibration_data = nncf.Dataset(calibration, _inputs_only)
    common = {"model_type": nncf.ModelType.TRANSFORMER, "preset": preset, "subset_size": len(calibration)}
    if config.max_drop is None:
        return nncf.quantize(model, calibration_data, **common), {}
    core = openvino.Core()
    float_predictions = _predictions(core.compile_model(model, "CPU"), held_out)
    with_labels = config.reference == "labels"
    targets = np.array([int(row["labels"]) for row in held_out]) if with_labels else float_predictions
    # Each row carries its own target: NNCF validates on subsets and on single rows while it ranks layers, so a
    # target looked up by position would be another row's.
    held_out = [{**row, TARGET_KEY: int(target)} for row, target in zip(held_out, targets)]

    def accuracy(compiled: Any, rows: Iterable[dict[str, np.ndarray]]) -> float:
        rows = list(rows)
        return float(np.mean(_predictions(compiled, rows) == np.array([row[TARGET_KEY] for row in rows])))

    quantized = nncf.quantize_with_accuracy_control(
        model, calibration_data, nncf.Dataset(held_out), validation_fn=accuracy, max_drop=config.max_drop / 100,
        drop_type=nncf.DropType.ABSOLUTE, **common)
    before = float(np.mean(float_predictions == targets))  # the float model's predictions, made once above
    after = accuracy(core.compile_model(quantized, "CPU"), held_out)
    return quantized, {"held_out_rows": len(held_out), "reference": "labels" if with_labels else
                       "agreement with the float model", "measured_drop": round(100 * (before - after), 4)}


def export_openvino(
    model: PreTrainedModel,
    output_dir: str | os.PathLike,
    config: OpenVINOExportConfig | None = None,
    *,
    tokenizer: Any = None,
    dataloader: Any = None,
    **options: Any,
) -> Path:
    """Write ``model`` as OpenVINO IR (``openvino_model.xml`` + ``.bin``, config.json, the tokenizer) to
    ``output_dir``; returns the folder. ``config`` (:class:`OpenVINOExportConfig`, or its fields as keyword
    ``options``) says how; ``dataloader`` gives calibration batches for int8.

    Works for every model hfcompress produces (uneven heads and FFN widths, truncated, shared, low-rank; every
    supported family): the graph is traced from the model as it is. The folder is written whole or not at all.

    Example:
        >>> export_openvino(model, "ov-int8", int8=True, dataloader=train_loader, tokenizer=tokenizer)
        >>> export_openvino(model, "ov-f32", precision="f32")
    """
    base = config.to_dict() if config is not None else {}
    config = OpenVINOExportConfig.from_dict({**base, **options})
    names = get_adapter(model).input_names(model.config)
    calibration, held_out = _check_dataloader(dataloader, config, names)
    openvino, nncf = _require_openvino()
    from ..methods.quantization import export_onnx

    final_dir = Path(output_dir)
    with writing_folder(final_dir) as partial, tempfile.TemporaryDirectory() as work:
        work = Path(work)
        # Float and unfused: OpenVINO's own transformations fuse attention, LayerNorm and GELU.
        export_onnx(model, work / "onnx", int8=False, optimize=False)
        converted = openvino.convert_model(str(work / "onnx" / "model.onnx"))
        # NNCF failed on a model fresh from convert_model (a Gather node missing from its graph); saved and read
        # back, the same model quantizes.
        openvino.save_model(converted, str(work / "float.xml"), compress_to_fp16=False)
        graph = openvino.Core().read_model(str(work / "float.xml"))
        measured: dict[str, Any] = {}
        if config.int8:
            graph, measured = _quantize(openvino, nncf, graph, config, calibration, held_out)
        openvino.save_model(graph, str(partial / XML_FILE), compress_to_fp16=False)
        compiled = openvino.Core().compile_model(str(partial / XML_FILE), "CPU", _compile_options(1, config.precision))
        # OpenVINO picks the float precision by CPU (bf16 where it can): say what the exporting host runs.
        record = {**config.to_dict(), "inputs": names, "calibration_rows_used": len(calibration),
                  "inference_precision_here": _precision_name(compiled), "host": cpu_summary(),
                  "openvino": openvino.__version__, "nncf": nncf.__version__, **measured}
        saved = model.config.to_dict()  # quantization_config stays: provenance for the card (the IR has the shape)
        saved[RECORD_KEY] = record
        (partial / "config.json").write_text(json.dumps(saved, indent=2, default=str), encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(partial)
    return final_dir


def _precision_name(compiled: Any) -> str:
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


def _compile_options(threads: int | None, precision: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        options["INFERENCE_NUM_THREADS"] = int(threads)
    if precision:
        options["INFERENCE_PRECISION_HINT"] = precision
    return options


class OpenVINOSequenceClassifier:
    """Runs an OpenVINO export on the CPU; called like the torch model (and like :class:`OnnxSequenceClassifier`).

    Each calling thread gets its own infer request, so one instance serves concurrent callers.

    Example:
        >>> model = OpenVINOSequenceClassifier.from_pretrained("ov-int8", threads=2)
        >>> model(input_ids=ids, attention_mask=mask).logits
    """

    def __init__(self, compiled: Any, config: Any, input_names: list[str], path: Path, record: dict[str, Any]) -> None:
        self.compiled, self.config, self.input_names, self.path, self.record = compiled, config, input_names, path, record
        self._local = threading.local()

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, threads: int | None = 2,
                        precision: str | None = None) -> "OpenVINOSequenceClassifier":
        """Compile ``folder/openvino_model.xml`` for the CPU with ``threads`` inference threads; ``precision``
        (default: the export's, else the CPU's choice) as in :class:`OpenVINOExportConfig`."""
        folder = Path(folder)
        if not (folder / XML_FILE).is_file():
            raise ValueError(f"{str(folder)!r} has no {XML_FILE}; write one with hfcompress export --openvino.")
        check_choice("precision", precision, PRECISIONS)
        openvino, _ = _require_openvino()
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        record = raw.get(RECORD_KEY, {})
        core = openvino.Core()
        compiled = core.compile_model(core.read_model(str(folder / XML_FILE)), "CPU",
                                      _compile_options(threads, precision or record.get("precision")))
        config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in (RECORD_KEY, "quantization_config")})
        return cls(compiled, config, [i.get_any_name() for i in compiled.inputs], folder / XML_FILE, record)

    @property
    def inference_precision(self) -> str:
        """What this CPU computes the float parts in (``f32``, ``bf16``, ...)."""
        return _precision_name(self.compiled)

    def __call__(self, **inputs: Any) -> SequenceClassifierOutput:
        feed = runner_feed(self.input_names, inputs)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        logits = request.infer(feed)[self.compiled.output(0)]
        return SequenceClassifierOutput(logits=torch.from_numpy(np.array(logits, copy=True)))

    def eval(self) -> "OpenVINOSequenceClassifier":
        return self


register_runtime(RuntimeSpec(
    name="openvino", config_cls=OpenVINOExportConfig, export=export_openvino, runner=OpenVINOSequenceClassifier,
    marker=XML_FILE, record_key=RECORD_KEY, formats={"openvino": {"int8": False}, "openvino_int8": {"int8": True}},
    install_hint=INSTALL_HINT, packages=("openvino", "nncf"),
))

__all__ = ["OpenVINOExportConfig", "OpenVINOSequenceClassifier", "export_openvino"]
