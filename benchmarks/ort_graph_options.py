"""Which of our ONNX Runtime export options costs speed against plain ONNX Runtime int8?

Ours (onnxruntime) differs from the plain ``quantize_dynamic`` recipe in three ways: ONNX
Runtime's transformer fusions before quantizing (``optimize``), per-channel weight scales
(``per_channel``) and 7-bit weights (``weight_bits``). On an AVX2 CPU the fused graph was level
with plain ONNX Runtime or faster (benchmarks/int8_kernels.py); on an AVX-512 VNNI CPU it was
slower (benchmarks/quantization.py). This times the variants in between, alternating, on the
SST-2 teacher with random token ids, as per-round ratios to plain ONNX Runtime with a 95%
bootstrap interval (``paired_latency``). Speed only: scores are in the quantization table.

    python benchmarks/ort_graph_options.py --rounds 400
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from common import RESULTS, TASK_SETUPS, get_teacher

from hfcompress import OnnxSequenceClassifier, export_onnx
from hfcompress.benchmark import hardware, paired_latency, write_results

VARIANTS = {
    "plain ONNX Runtime int8 (no fusions, per-tensor, 8-bit weights)": dict(optimize=False, per_channel=False, weight_bits=8),
    "no fusions, per-channel, 8-bit weights": dict(optimize=False, per_channel=True, weight_bits=8),
    "no fusions, per-channel, 7-bit weights": dict(optimize=False, per_channel=True, weight_bits=7),
    "fusions, per-tensor, 8-bit weights": dict(optimize=True, per_channel=False, weight_bits=8),
    "fusions, per-channel, 8-bit weights": dict(optimize=True, per_channel=True, weight_bits=8),
    "fusions, per-channel, 7-bit weights": dict(optimize=True, per_channel=True, weight_bits=7),
}


def main(task: str, rounds: int) -> None:
    teacher, _, _ = get_teacher(TASK_SETUPS[task])
    rounds_by_batch = {1: rounds, 32: max(20, rounds // 10)}
    rows = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings
        models = {name: OnnxSequenceClassifier.from_pretrained(export_onnx(teacher, Path(folder) / str(i), int8=True, **options))
                  for i, (name, options) in enumerate(VARIANTS.items())}
        plain = next(iter(VARIANTS))
        pairs = [(name, plain) for name in VARIANTS if name != plain]
        timed = {batch: paired_latency(models, pairs, batch_size=batch, rounds=batch_rounds)
                 for batch, batch_rounds in rounds_by_batch.items()}
    for name, options in VARIANTS.items():
        row = {"name": name, **options, **{f"latency_bs{b}_ms": timed[b]["median_ms"][name] for b in (1, 32)}}
        if name != plain:
            row.update({f"this_over_plain_bs{b}": timed[b]["ratios"][f"{name} / {plain}"] for b in (1, 32)})
        rows.append(row)
    payload = {"benchmark": "ort_graph_options", "task": task, "rows": rows, "hardware": hardware(),
               "latency": f"models timed in alternation, {rounds_by_batch[1]} rounds (batch 1) / {rounds_by_batch[32]} "
                          "(batch 32), seq 128, random token ids, 2 intra-op threads, each pass 20 ms after the "
                          "previous; ratio = median per-round time ratio to plain ONNX Runtime, 95% bootstrap interval"}
    write_results(payload, RESULTS / f"ort_graph_options_{task}.json")
    for row in rows:
        ratios = [row.get(f"this_over_plain_bs{b}", {"median": 1.0})["median"] for b in (1, 32)]
        print(f"{row['name']}: bs1 {row['latency_bs1_ms']:.1f} ms ({ratios[0]:.3f}), "
              f"bs32 {row['latency_bs32_ms']:.0f} ms ({ratios[1]:.3f})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--rounds", type=int, default=400)
    options = parser.parse_args()
    main(options.task, options.rounds)
