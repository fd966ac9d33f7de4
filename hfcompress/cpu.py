"""What this machine's CPU offers, probed once per process: the int8 dot-product instructions (which decide int8
speed and, without VNNI, whether 8-bit x 8-bit products saturate), and bf16/AMX (which OpenVINO uses for "fp32").

Measurement (every results file names the host's ISA beside its speedups) and the int8 methods (whose defaults
follow the CPU) both read it, so it belongs to neither.

Example:
    >>> int8_isa()
    'avx512-vnni'
    >>> cpu_summary()
    {'int8_isa': 'avx512-vnni', 'bf16': True, 'amx': False}
"""

from __future__ import annotations

import functools
import warnings

import torch


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    except OSError:
        flags = None
    return frozenset(flags or ())


VNNI_ISAS = ("amx-int8", "avx512-vnni", "avx-vnni")


@functools.cache
def int8_isa() -> str:
    """The widest int8 dot-product instructions of this CPU (Linux ``/proc/cpuinfo``), or "unknown".

    Example:
        >>> int8_isa()
        'avx512-vnni'
    """
    present = cpu_flags()
    if not present:
        return "unknown"
    for flag, name in (("amx_int8", "amx-int8"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
                       ("avx512bw", "avx512bw"), ("avx2", "avx2")):
        if flag in present:
            return name
    return "other"


# (rows, input features): batch-1 and many-row calls, and a small and a BERT-size reduction, because an int8 library
# may pick its kernel by shape; every one must be exact for 8-bit activations to be safe.
_PROBE_SHAPES = ((1, 64), (2, 64), (64, 768))


@functools.cache
def full_range_int8_kernels() -> bool:
    """Do this process's torch int8 linear kernels multiply 8-bit activations by 8-bit weights exactly?

    x86 int8 kernels without VNNI (AVX2's and plain AVX-512's vpmaddubsw) add pairs of uint8 x
    int8 products in 16-bit registers, which saturate for 8-bit activations times 8-bit weights
    (2 * 255 * 127 > 32767); VNNI (vpdpbusd) accumulates in 32 bits. Which kernel runs depends on
    the CPU, on fbgemm's ``FBGEMM_ENABLE_INSTRUCTIONS`` cap and on the quantized engine, so this
    asks the kernels themselves: products that saturate if anything does, at several shapes (measured
    once per process). A saturated sum is off by about half, so the check allows float rounding (a
    kernel may apply the scales in another order) and nothing more. A kernel that raises answers "no",
    with a warning naming the error.

    Example:
        >>> full_range_int8_kernels()  # True on AVX-512 VNNI CPUs, False on AVX2 ones
        True
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensor creation is marked deprecated
            for rows, features in _PROBE_SHAPES:
                weight = torch._make_per_channel_quantized_tensor(
                    torch.full((8, features), 127, dtype=torch.int8), torch.ones(8, dtype=torch.double),
                    torch.zeros(8, dtype=torch.long), 0)
                packed = torch.ops.quantized.linear_prepack(weight, None)
                x = torch.full((rows, features), 255.0)
                x[:, 0] = 0.0  # activation range [0, 255]: scale 1, every value is its own uint8 level
                out = torch.ops.quantized.linear_dynamic(x, packed, False)
                if not torch.allclose(out, x @ weight.dequantize().T, rtol=1e-4, atol=0.0):
                    return False
    except (RuntimeError, NotImplementedError) as error:
        warnings.warn(f"The torch int8 kernel probe failed ({error}); int8 linears with 8-bit weights will use 7-bit "
                      "activations in this process.", RuntimeWarning, stacklevel=2)
        return False
    return True


def cpu_summary() -> dict[str, object]:
    """The CPU facts a speedup depends on: int8 instructions, bf16 (OpenVINO runs "fp32" in bf16 where it is
    present) and AMX."""
    flags = cpu_flags()
    return {"int8_isa": int8_isa(), "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
            "amx": "amx_int8" in flags or "amx_bf16" in flags}
