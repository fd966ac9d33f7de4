"""Which of our ONNX Runtime export options costs speed against plain ONNX Runtime int8?

Ours (onnxruntime) differs from the plain ``quantize_dynamic`` recipe in three ways: ONNX
Runtime's transformer fusions before quantizing (``optimize``), per-channel weight scales
(``per_channel``) and 7-bit weights (``weight_bits``). On an AVX2 CPU ours was level with plain
ONNX Runtime (benchmarks/int8_kernels.py); on an AVX-512 VNNI CPU it was 7-13% slower
(benchmarks/quantization.py). This times the variants in between, alternating, on the SST-2
teacher with random token ids. Speed only: scores are in the quantization table.

    python benchmarks/ort_graph_options.py --rounds 300
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from common import RESULTS, TASK_SETUPS, get_teacher

from hfcompress import OnnxSequenceClassifier, export_onnx
from hfcompress.benchmark import hardware, interleaved_latency, write_results

VARIANTS = {
    "plain ONNX Runtime int8 (no fusions, per-tensor, 8-bit weights)": dict(optimize=False, per_channel=False, weight_bits=8),
    "no fusions, per-channel, 8-bit weights": dict(optimize=False, per_channel=True, weight_bits=8),
    "no fusions, per-channel, 7-bit weights": dict(optimize=False, per_channel=True, weight_bits=7),
    "fusions, per-tensor, 8-bit weights": dict(optimize=True, per_channel=False, weight_bits=8),
    "fusions, per-channel, 8-bit weights": dict(optimize=True, per_channel=True, weight_bits=8),
    "ours (fusions, per-channel, 7-bit weights)": dict(optimize=True, per_channel=True, weight_bits=7),
}


def main(task: str, rounds: int) -> None:
    teacher, _, _ = get_teacher(TASK_SETUPS[task])
    rounds_by_batch = {1: rounds, 32: max(10, rounds // 10)}
    rows = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings
        models = {name: OnnxSequenceClassifier.from_pretrained(export_onnx(teacher, Path(folder) / str(i), int8=True, **options))
                  for i, (name, options) in enumerate(VARIANTS.items())}
        medians = {batch: interleaved_latency(models, batch_size=batch, rounds=batch_rounds)
                   for batch, batch_rounds in rounds_by_batch.items()}
    plain = next(iter(VARIANTS))
    for name, options in VARIANTS.items():
        rows.append({"name": name, **options,
                     **{f"latency_bs{b}_ms": medians[b][name] for b in (1, 32)},
                     **{f"plain_over_this_bs{b}": medians[b][plain] / medians[b][name] for b in (1, 32)}})
    payload = {"benchmark": "ort_graph_options", "task": task, "rows": rows, "hardware": hardware(),
               "latency": f"models timed in alternation, median of {rounds_by_batch[1]} rounds (batch 1) / {rounds_by_batch[32]} "
                          "(batch 32), seq 128, random token ids, 2 intra-op threads, each pass 20 ms after the previous"}
    write_results(payload, RESULTS / f"ort_graph_options_{task}.json")
    for row in rows:
        print(f"{row['name']}: bs1 {row['latency_bs1_ms']:.1f} ms ({row['plain_over_this_bs1']:.3f}), "
              f"bs32 {row['latency_bs32_ms']:.0f} ms ({row['plain_over_this_bs32']:.3f})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--rounds", type=int, default=300)
    options = parser.parse_args()
    main(options.task, options.rounds)
