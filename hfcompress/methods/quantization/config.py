"""Settings of int8: dynamic quantization in torch, quantization-aware fine-tuning, and the ONNX Runtime export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig, check_choice, check_range
from ...calibration import DROP_REFERENCES, check_max_batches
from .kernels import default_ort_fusions
from .smoothing import check_smoothing

BACKENDS = ("torch",)
ROUNDINGS = ("nearest", "gptq")
MODULE_GROUPS = ("attention", "ffn", "ffn_in", "ffn_out", "classifier", "pooler")
WEIGHT_BITS = (7, 8)


@dataclass
class DynamicQuantConfig(MethodConfig):
    """Int8 weights with per-output-channel scales; activations quantized on the fly.

    ``backend="torch"`` (the only one): Linear layers become :class:`Int8DynamicLinear`
    (fbgemm/x86 kernels on CPU); the checkpoint stores int8 weights and scales as safetensors
    tensors and ``from_pretrained`` restores the int8 model. For ONNX Runtime int8, export with
    :func:`export_onnx` (``int8=True``) instead.

    ``modules`` picks which linears: "attention" (q, k, v, output), "ffn" (in, out) or one of
    "ffn_in" / "ffn_out", "pooler", "classifier". Keeping the FFN output linear in float
    (``["attention", "ffn_in"]``) trades some speed for accuracy: its input (after GELU) has the
    widest activation range, the one that suffers most from coarse dynamic activations
    (benchmarks/RESULTS.md). ``embeddings=True`` also stores the word embedding as int8
    (dequantized once on load: a smaller file, the same compute).

    ``weight_bits``: by default (``None``) 8 where this CPU's int8 kernels multiply 8-bit
    activations by 8-bit weights exactly (VNNI), else 7: weights in [-63, 63] so that activations
    keep all 8 bits without overflowing the 16-bit pair sums of AVX2 int8 kernels. The choice is
    recorded; a checkpoint with 8-bit weights loaded on a CPU without VNNI runs with 7-bit
    activations (torch.ao's ``reduce_range``), never with saturated sums. On MRPC (AVX2): F1
    85.76 (7-bit weights) vs 85.14 (8-bit weights, 7-bit activations) against 85.81 in fp32.

    ``rounding="gptq"`` rounds the weights with GPTQ (error feedback through the inputs' second
    moment, measured on ``max_batches`` calibration batches: ``compress(..., dataloader=...)``)
    instead of to the nearest grid point: same grid, same kernels, same speed, outputs closer to
    float.

    ``max_drop=0.5`` guards accuracy: on the calibration batches (training rows held out from what you
    report) it measures how many of the float model's predictions int8 changes (``reference="labels"``: the
    points it loses against their labels, for rows the model never saw; on rows it trained on, labels show
    next to no drop whatever int8 does), ranks the linears by what each costs alone (output KL divergence), and keeps the costliest in float, one
    at a time, until the estimated drop (the measured drop plus one standard error, so that the budget holds on
    new rows too) is within ``max_drop``. More rows, a tighter estimate. The record and the card list them.

    ``smoothing=0.8`` applies SmoothQuant channel scaling (migration strength alpha) to the FFN
    linears before quantizing: their few large input features stop setting every token's
    activation grid. Needs calibration batches like GPTQ (the two combine: smoothing first).

    Example:
        >>> compress(model, DynamicQuantConfig(backend="torch", embeddings=True))
        >>> compress(model, DynamicQuantConfig(rounding="gptq", max_batches=32), dataloader=train_loader)
        >>> compress(model, DynamicQuantConfig(smoothing=0.8, rounding="gptq"), dataloader=train_loader)
        >>> compress(model, DynamicQuantConfig(max_drop=0.3, max_batches=32), dataloader=held_out_loader)
    """

    name: ClassVar[str] = "int8_dynamic"

    backend: str = field(default="torch", metadata={"help": "torch (ONNX Runtime int8: export_onnx(int8=True))"})
    modules: list[str] = field(default_factory=lambda: ["attention", "ffn"],
                               metadata={"help": "Linear groups to quantize: attention ffn (or ffn_in, ffn_out) "
                                                 "pooler classifier"})
    embeddings: bool = field(default=False, metadata={"help": "Store the word embedding as int8 too."})
    weight_bits: int | None = field(default=None, metadata={
        "help": "7 (8-bit activations, overflow-free on AVX2) or 8; default: 8 on CPUs with VNNI, else 7"})
    rounding: str = field(default="nearest", metadata={"help": "Weight rounding: nearest | gptq (needs calibration data)"})
    smoothing: float | None = field(default=None, metadata={"help": "SmoothQuant alpha in (0, 1] for the FFN linears "
                                                                     "(needs calibration data); none: off"})
    max_batches: int | None = field(default=None, metadata={"help": "Calibration batches for rounding=gptq / "
                                                                     "smoothing / max_drop."})
    max_drop: float | None = field(default=None, metadata={
        "help": "Accuracy guard: points the int8 model may lose on the calibration rows (held-out training rows); "
                "the most costly linears stay float until it holds. Needs calibration data."})
    reference: str = field(default="agreement", metadata={
        "help": "with max_drop: judge the drop on agreement with the float model's predictions (default; honest on "
                "rows the model trained on) or on the rows' labels (rows it never saw)"})

    def __post_init__(self) -> None:
        if self.backend == "onnxruntime":
            # An ONNX Runtime int8 model is an ONNX file, not a torch model that compress() can return.
            raise ValueError("DynamicQuantConfig(backend='onnxruntime') is not a torch step: export with "
                             "hfcompress.export_onnx(model, folder, int8=True) (CLI: `hfcompress export --onnx "
                             "--int8`), or use backend='torch'.")
        check_choice("backend", self.backend, BACKENDS)
        if self.weight_bits is not None and self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be 7 or 8; got {self.weight_bits!r}. 7 keeps activations at 8 bits "
                             "without overflow on AVX2 CPUs; 8 is the torch.ao default; leave it unset to choose "
                             "by this CPU.")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}; got {self.rounding!r}.")
        check_max_batches(self.max_batches)
        check_smoothing(self.smoothing)
        check_range("max_drop", self.max_drop, 0, allow_none=True, what="points of accuracy int8 may lose")
        check_choice("reference", self.reference, DROP_REFERENCES)
        unknown = [m for m in self.modules if m not in MODULE_GROUPS]
        if unknown or not self.modules:
            raise ValueError(f"modules must be a non-empty subset of {MODULE_GROUPS}; got {self.modules!r}.")

    @property
    def requires_dataloader(self) -> bool:
        """Whether ``compress`` needs ``dataloader=`` for this config."""
        return self.rounding == "gptq" or self.smoothing is not None or self.max_drop is not None


QAT_BACKENDS = ("torch", "onnxruntime")


@dataclass
class QuantAwareConfig(MethodConfig):
    """Fine-tune with the int8 rounding simulated, so the weights settle where int8 loses least; then convert.

    Every selected linear computes, in training and evaluation alike, what the int8 kernels compute: weights
    rounded per output channel to ``weight_bits`` (symmetric, the grid :class:`DynamicQuantConfig` uses) and
    inputs rounded per tensor to 8 (or 7) bits over their own [min, max] range, as the dynamic kernels of torch
    and ONNX Runtime quantize activations; gradients pass the rounding unchanged (straight-through). At the end
    of training ``backend="torch"`` converts the model with ``DynamicQuantConfig(modules, weight_bits,
    embeddings)``: the same int8 modules, record, save/load and card as post-training int8. With
    ``backend="onnxruntime"`` the model stays float, ready for ``export_onnx(model, folder, int8=True,
    weight_bits=...)`` (same grid).

    Example:
        >>> trainer = CompressionTrainer(model=model, args=args, train_dataset=train, teacher=float_model,
        ...                              distillation=DistillationConfig(), compression=[QuantAwareConfig()])
        >>> Trainer(model=model, args=args, train_dataset=train, callbacks=[QuantAwareCallback(QuantAwareConfig())])
    """

    name: ClassVar[str] = "qat"
    backend: str = field(default="torch", metadata={
        "help": "torch (convert to int8 modules at the end) or onnxruntime (stay float; export_onnx(int8=True))"})
    modules: list[str] = field(default_factory=lambda: ["attention", "ffn"],
                               metadata={"help": "Linear groups trained for int8: attention ffn (or ffn_in, ffn_out)"})
    weight_bits: int | None = field(default=None, metadata={
        "help": "7 or 8; default: what DynamicQuantConfig picks on this CPU (torch), 7 (onnxruntime, as export_onnx)"})
    embeddings: bool = field(default=False, metadata={"help": "torch backend: also store the word embedding as int8"})

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, QAT_BACKENDS)
        if self.weight_bits is not None and self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be 7 or 8 (or unset); got {self.weight_bits!r}.")
        unknown = [m for m in self.modules if m not in MODULE_GROUPS]
        if unknown or not self.modules:
            raise ValueError(f"modules must be a non-empty list of {', '.join(MODULE_GROUPS)}; got {self.modules!r}.")


INT8_KINDS = (False, True, "dynamic", "static")


@dataclass
class OnnxExportConfig(MethodConfig):
    """How ``export_onnx`` writes a model for ONNX Runtime: one object read by the function, the
    ``hfcompress export`` flags and a recipe's ``export`` stage alike.

    ``int8``: False (float), True / "dynamic" (activation scales per call) or "static" (scales calibrated once on
    ``dataloader``, QDQ). ``optimize``: ONNX Runtime's transformer fusions (None: by this CPU, see
    ``kernels.default_ort_fusions``). The rest are int8 options; see :func:`export_onnx` for what each buys.

    Example:
        >>> export_onnx(model, "onnx-int8", OnnxExportConfig(int8=True, weight_bits=8), tokenizer=tokenizer)
        >>> OnnxExportConfig.from_dict({"int8": "static", "max_batches": 16}).requires_dataloader
        True
    """

    name: ClassVar[str] = "onnx"

    int8: bool | str = field(default=True, metadata={
        "help": "False, True/dynamic (activation scales per call) or static (scales calibrated once)"})
    optimize: bool | None = field(default=None, metadata={
        "help": "ONNX Runtime's transformer fusions (default: yes, except int8 on VNNI CPUs)"})
    per_channel: bool = field(default=True, metadata={"help": "int8 weight scales per output channel"})
    opset: int = field(default=17, metadata={"help": "ONNX opset"})
    keep_ffn_out_float: bool = field(default=False, metadata={
        "help": "leave the FFN output MatMuls in float (more accurate, a little slower)"})
    weight_bits: int = field(default=7, metadata={
        "help": "7 avoids int16 saturation in AVX2 kernels; 8 is ONNX Runtime's default"})
    ffn_per_token: bool = field(default=False, metadata={
        "help": "one activation scale per token in the FFN MatMuls (5-12%% slower at batch 1)"})
    rounding: str = field(default="nearest", metadata={
        "help": "nearest, or gptq (weights rounded with error feedback; calibrates on training rows)"})
    smoothing: float | None = field(default=None, metadata={
        "help": "SmoothQuant alpha on the FFN linears, e.g. 0.8 (calibrates on training rows)"})
    max_batches: int | None = field(default=None, metadata={"help": "calibration batches used (default: all given)"})

    def __post_init__(self) -> None:
        if self.int8 not in INT8_KINDS or (isinstance(self.int8, int) and not isinstance(self.int8, bool)):
            raise ValueError(f"int8 must be True / 'dynamic' (activation scales per call), 'static' (scales calibrated "
                             f"on dataloader=...) or False; got {self.int8!r}.")
        if self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be 7 or 8; got {self.weight_bits!r}.")
        check_choice("rounding", self.rounding, ROUNDINGS)
        check_smoothing(self.smoothing)
        check_max_batches(self.max_batches)
        check_range("opset", self.opset, 13, what="ONNX opset; attention exports need 13 or later")
        int8, static = bool(self.int8), self.int8 == "static"
        if static and self.ffn_per_token:
            raise ValueError("ffn_per_token gives every token its own scale per call; int8='static' fixes the scales "
                             "at export. Use one or the other.")
        if self.ffn_per_token and not (int8 and self.optimize is not False):
            raise ValueError("ffn_per_token needs int8=True and optimize=True: it quantizes the FFN MatMuls around ONNX "
                             "Runtime's fused GELU. Drop ffn_per_token, or export with int8 and optimize on.")
        if self.rounding == "gptq" and (not (int8 and self.per_channel) or self.ffn_per_token):
            raise ValueError("rounding='gptq' rounds onto ONNX Runtime's per-channel int8 grid: it needs int8=True and "
                             "per_channel=True, and not ffn_per_token (which quantizes the FFN on its own grid).")
        if self.smoothing is not None and (not int8 or self.ffn_per_token or self.keep_ffn_out_float):
            raise ValueError("smoothing moves the FFN inputs' range into int8 weights: it needs int8=True, and "
                             "neither ffn_per_token nor keep_ffn_out_float (which treat the FFN MatMuls their own way).")

    @property
    def static(self) -> bool:
        return self.int8 == "static"

    @property
    def requires_dataloader(self) -> bool:
        """Whether the export calibrates on ``dataloader=`` (static scales, GPTQ rounding, SmoothQuant)."""
        return self.static or self.rounding == "gptq" or self.smoothing is not None

    def resolved_optimize(self) -> bool:
        """The fusions this export runs: as given, else by this CPU (static: unfused)."""
        if self.optimize is not None:
            return self.optimize
        if self.static:
            return False
        return True if self.ffn_per_token or self.keep_ffn_out_float else default_ort_fusions(bool(self.int8))
