"""Is our torch int8 model slower than plain torch.ao? A long interleaved timing of just those.

The main int8 table (benchmarks/quantization.py) times nine models 30 rounds each; its bs1
differences between ours and ``torch.ao.quantization.quantize_dynamic`` (a few percent) are
within that table's noise. Here only the contenders run, in alternation, many rounds, and
each round also gives a paired ratio (ours / theirs, same round), which cancels machine drift:

- fp32 teacher;
- torch.ao ``quantize_dynamic``, default qconfig (per-tensor weight scale);
- torch.ao ``quantize_dynamic`` with ``per_channel_dynamic_qconfig`` (per-channel, as ours);
- ours, ``compress(model, DynamicQuantConfig())`` (per-channel int8 buffers, kernel packed lazily);
- with ``--onnx``: plain ONNX Runtime int8 and ours (onnxruntime), as in benchmarks/quantization.py.

    python benchmarks/int8_kernels.py --task sst2 --rounds 300 --onnx
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import warnings
from pathlib import Path

import torch

from common import RESULTS, TASK_SETUPS, get_teacher

from hfcompress import DynamicQuantConfig, OnnxSequenceClassifier, compress, export_onnx
from hfcompress.benchmark import hardware, write_results
from hfcompress.timing import timed_passes

# Each timed pass starts this long after the previous one: see hfcompress.benchmark.interleaved_latency.
SETTLE_MS = 20.0


def torch_ao(model, per_channel: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig if per_channel else None
        spec = {torch.nn.Linear: qconfig} if per_channel else {torch.nn.Linear}
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)


def quartiles(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4)
    return [round(q[0], 3), round(q[2], 3)]


def main(task: str, rounds: int, seq_lens: list[int], batch_sizes: list[int], onnx: bool, tag: str = "") -> None:
    teacher, _, teacher_info = get_teacher(TASK_SETUPS[task])
    teacher.eval()
    models = {
        "fp32": teacher,
        "torch.ao per-tensor": torch_ao(teacher, per_channel=False),
        "torch.ao per-channel": torch_ao(teacher, per_channel=True),
        "hfcompress int8 (torch)": compress(copy.deepcopy(teacher), DynamicQuantConfig()),
    }
    pairs = [("hfcompress int8 (torch)", "torch.ao per-tensor"), ("hfcompress int8 (torch)", "torch.ao per-channel"),
             ("torch.ao per-channel", "torch.ao per-tensor")]
    with tempfile.TemporaryDirectory() as work:
        if onnx:
            # As in benchmarks/quantization.py: plain = unoptimized export, per-tensor; ours = per-channel, 7-bit.
            plain = export_onnx(teacher, Path(work) / "plain", int8=True, optimize=False, per_channel=False,
                                weight_bits=8)
            ours = export_onnx(teacher, Path(work) / "ours", int8=True)  # this CPU's default graph (kernels.py)
            models["plain ONNX Runtime int8"] = OnnxSequenceClassifier.from_pretrained(plain)
            models["hfcompress int8 (onnxruntime)"] = OnnxSequenceClassifier.from_pretrained(ours)
            pairs.append(("hfcompress int8 (onnxruntime)", "plain ONNX Runtime int8"))
        cases = []
        for seq_len in seq_lens:
            for batch in batch_sizes:
                n = rounds if batch == 1 else max(20, rounds // 10)
                times = timed_passes(models, batch, seq_len, threads=2, warmup=10, rounds=n, settle_ms=SETTLE_MS)
                fp32 = statistics.median(times["fp32"])
                case = {"batch_size": batch, "seq_len": seq_len, "rounds": n,
                        "median_ms": {k: round(statistics.median(v), 3) for k, v in times.items()},
                        "quartiles_ms": {k: quartiles(v) for k, v in times.items()},
                        "speedup_vs_fp32": {k: round(fp32 / statistics.median(v), 3) for k, v in times.items()},
                        "paired_ratio": {}}
                for a, b in pairs:
                    ratios = [x / y for x, y in zip(times[a], times[b])]
                    case["paired_ratio"][f"{a} / {b}"] = {"median": round(statistics.median(ratios), 4),
                                                          "quartiles": quartiles(ratios)}
                cases.append(case)
                print(case, flush=True)
    payload = {"benchmark": "int8_kernels", "task": task, "teacher": teacher_info, "cases": cases,
               "hardware": hardware(), "threads": 2,
               "settle_ms": SETTLE_MS,
               "note": "one process, models timed in rotating alternation, each pass 20 ms after the previous one "
                       "ended; paired_ratio = per-round time ratio"}
    names = list(models)
    lines = [f"task **{task}** teacher, random token ids, 2 threads (2 intra-op threads for ONNX Runtime); models "
             "timed in alternation (order rotates every round): median ms with the speedup over fp32, then the "
             "median per-round paired ratio of two models' times.", "",
             "| batch | seq | rounds | " + " | ".join(f"{n} ms" for n in names) + " | "
             + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
             "|" + "---|" * (3 + len(names) + len(pairs))]
    for c in cases:
        m, x, r = c["median_ms"], c["speedup_vs_fp32"], c["paired_ratio"]
        cells = [f"{m[n]:.1f}" + ("" if n == "fp32" else f" ({x[n]:.2f}x)") for n in names]
        ratios = [r[f"{a} / {b}"] for a, b in pairs]
        lines.append(f"| {c['batch_size']} | {c['seq_len']} | {c['rounds']} | " + " | ".join(cells) + " | "
                     + " | ".join(f"{v['median']:.3f} [{v['quartiles'][0]:.2f}, {v['quartiles'][1]:.2f}]"
                                  for v in ratios) + " |")
    write_results(payload, RESULTS / f"int8_kernels_{task}{tag}.json")
    (RESULTS / f"int8_kernels_{task}{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seq_lens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--onnx", action="store_true", help="also plain ONNX Runtime int8 and ours (onnxruntime)")
    parser.add_argument("--tag", default="", help="suffix of the results files (e.g. the machine's int8 ISA)")
    options = parser.parse_args()
    main(options.task, options.rounds, options.seq_lens, options.batch_sizes, options.onnx, options.tag)
