"""What this machine's int8 kernels can do: the defaults that depend on the CPU are chosen here.

Measured on two CPUs of the same name and core count (benchmarks/RESULTS.md): on an AVX2-only
one, 8-bit x 8-bit int8 products saturate and ONNX Runtime's transformer fusions made int8 BERT
level or faster; on one with AVX-512 VNNI the products are exact and the same fusions cost ~9%
(paired timing, both batch sizes). Each choice is recorded with the model it shaped.
"""

from __future__ import annotations

from ...cpu import VNNI_ISAS, full_range_int8_kernels, int8_isa


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
