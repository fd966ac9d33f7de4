"""Is our torch int8 model slower than plain torch.ao? A long interleaved timing of just those.

The main int8 table (benchmarks/quantization.py) times nine models 30 rounds each; its bs1
differences between ours and ``torch.ao.quantization.quantize_dynamic`` (a few percent) are
within that table's noise. Here only the contenders run, in alternation, many rounds, and
each round also gives a paired ratio (ours / theirs, same round), which cancels machine drift:

- fp32 teacher;
- torch.ao ``quantize_dynamic``, default qconfig (per-tensor weight scale);
- torch.ao ``quantize_dynamic`` with ``per_channel_dynamic_qconfig`` (per-channel, as ours);
- ours, ``compress(model, DynamicQuantConfig())`` (per-channel int8 buffers, kernel packed lazily).

    python benchmarks/int8_kernels.py --task sst2 --rounds 200
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings

import torch

from common import RESULTS, TASK_SETUPS, get_teacher

from hfcompress import DynamicQuantConfig, compress
from hfcompress.benchmark import _timed_passes, hardware, write_results


def torch_ao(model, per_channel: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig if per_channel else None
        spec = {torch.nn.Linear: qconfig} if per_channel else {torch.nn.Linear}
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)


def quartiles(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4)
    return [round(q[0], 3), round(q[2], 3)]


def main(task: str, rounds: int, seq_lens: list[int], batch_sizes: list[int]) -> None:
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
    cases = []
    for seq_len in seq_lens:
        for batch in batch_sizes:
            n = rounds if batch == 1 else max(20, rounds // 10)
            times = _timed_passes(models, batch, seq_len, threads=2, warmup=10, rounds=n)
            case = {"batch_size": batch, "seq_len": seq_len, "rounds": n,
                    "median_ms": {k: round(statistics.median(v), 3) for k, v in times.items()},
                    "quartiles_ms": {k: quartiles(v) for k, v in times.items()},
                    "speedup_vs_fp32": {k: round(statistics.median(times["fp32"]) / statistics.median(v), 3)
                                        for k, v in times.items()},
                    "paired_ratio": {}}
            for a, b in pairs:
                ratios = [x / y for x, y in zip(times[a], times[b])]
                case["paired_ratio"][f"{a} / {b}"] = {"median": round(statistics.median(ratios), 4),
                                                      "quartiles": quartiles(ratios)}
            cases.append(case)
            print(case, flush=True)
    payload = {"benchmark": "int8_kernels", "task": task, "teacher": teacher_info, "cases": cases,
               "hardware": hardware(), "threads": 2,
               "note": "one process, models timed in rotating alternation; paired_ratio = per-round time ratio"}
    lines = [f"task **{task}** teacher, random token ids, 2 threads; models timed in alternation "
             "(order rotates every round); median ms, and the per-round paired ratio of ours to torch.ao.", "",
             "| batch | seq | rounds | fp32 ms | torch.ao per-tensor ms | torch.ao per-channel ms | ours ms | "
             "ours / torch.ao per-tensor | ours / torch.ao per-channel | per-channel / per-tensor (torch.ao) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        m, r = c["median_ms"], c["paired_ratio"]
        ratio = [r[f"{a} / {b}"] for a, b in pairs]
        lines.append(f"| {c['batch_size']} | {c['seq_len']} | {c['rounds']} | {m['fp32']:.1f} | "
                     f"{m['torch.ao per-tensor']:.1f} | {m['torch.ao per-channel']:.1f} | "
                     f"{m['hfcompress int8 (torch)']:.1f} | "
                     + " | ".join(f"{x['median']:.3f} [{x['quartiles'][0]:.2f}, {x['quartiles'][1]:.2f}]"
                                  for x in ratio) + " |")
    write_results(payload, RESULTS / f"int8_kernels_{task}.json")
    (RESULTS / f"int8_kernels_{task}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seq_lens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    options = parser.parse_args()
    main(options.task, options.rounds, options.seq_lens, options.batch_sizes)
