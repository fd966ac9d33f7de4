"""What this machine's int8 kernels can do: the defaults that depend on the CPU are chosen here.

Measured on two CPUs of the same name and core count (benchmarks/RESULTS.md): on an AVX2-only
one, 8-bit x 8-bit int8 products saturate and ONNX Runtime's transformer fusions made int8 BERT
level or faster; on one with AVX-512 VNNI the products are exact and the same fusions cost ~9%
(paired timing, both batch sizes). Each choice is recorded with the model it shaped.
"""

from __future__ import annotations

import functools
import warnings

import torch

VNNI_ISAS = ("amx-int8", "avx512-vnni", "avx-vnni")


@functools.cache
def int8_isa() -> str:
    """The widest int8 dot-product instructions of this CPU (Linux ``/proc/cpuinfo``), or "unknown".

    Example:
        >>> int8_isa()
        'avx512-vnni'
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        return "unknown"
    present = set(flags)
    for flag, name in (("amx_int8", "amx-int8"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
                       ("avx512bw", "avx512bw"), ("avx2", "avx2")):
        if flag in present:
            return name
    return "other"


@functools.cache
def full_range_int8_kernels() -> bool:
    """Do this process's torch int8 linear kernels multiply 8-bit activations by 8-bit weights exactly?

    x86 int8 kernels without VNNI (AVX2's and plain AVX-512's vpmaddubsw) add pairs of uint8 x
    int8 products in 16-bit registers, which saturate for 8-bit activations times 8-bit weights
    (2 * 255 * 127 > 32767); VNNI (vpdpbusd) accumulates in 32 bits. Which kernel runs depends on
    the CPU, on fbgemm's ``FBGEMM_ENABLE_INSTRUCTIONS`` cap and on the quantized engine, so this
    asks the kernel itself: one product that saturates if anything does (measured once per process).

    Example:
        >>> full_range_int8_kernels()  # True on AVX-512 VNNI CPUs, False on AVX2 ones
        True
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensor creation is marked deprecated
            weight = torch._make_per_channel_quantized_tensor(
                torch.full((8, 64), 127, dtype=torch.int8), torch.ones(8, dtype=torch.double),
                torch.zeros(8, dtype=torch.long), 0)
            packed = torch.ops.quantized.linear_prepack(weight, None)
            x = torch.full((2, 64), 255.0)
            x[:, 0] = 0.0  # activation range [0, 255]: scale 1, every value is its own uint8 level
            out = torch.ops.quantized.linear_dynamic(x, packed, False)
    except (RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(out, x @ weight.dequantize().T))


def default_weight_bits() -> int:
    """Torch backend: 8-bit weights where the kernels keep 8-bit activations exact with them (VNNI), else 7."""
    return 8 if full_range_int8_kernels() else 7


def default_ort_fusions(int8: bool) -> bool:
    """ONNX Runtime: run the transformer fusions before int8 quantization unless this CPU has VNNI.

    With VNNI, ONNX Runtime's unfused DynamicQuantizeLinear + MatMulInteger path was ~9% faster at
    batch 1 and 32 than the fused QAttention graph (benchmarks/RESULTS.md); without it, the fusions were
    level or faster. Float exports always fuse.
    """
    return not int8 or int8_isa() not in VNNI_ISAS
