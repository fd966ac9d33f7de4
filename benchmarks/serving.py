#!/usr/bin/env python
"""One loaded model answering concurrent requests, as a server does: throughput at 1, 2 and 8 client threads.

Each runner form of the task's teacher (as runtimes.py made them: torch fp32, hfcompress torch int8, ONNX Runtime
int8, OpenVINO int8) is loaded once in a process of its own and sent batch-1 requests of 128 tokens from 1, 2 and 8
threads (`hfcompress.timing.concurrent_throughput`); every answer is checked against the same request answered alone.

    python benchmarks/serving.py --tasks sst2 --requests 96

Writes results/serving_<task>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import BASE, CACHE, RESULTS, ROOT, shown_path

from hfcompress.benchmark import hardware, write_results

FORMS = {"torch fp32": None, "hfcompress torch int8": "torch-int8", "ONNX Runtime int8 (hfcompress)": "ort-int8",
         "OpenVINO int8 (NNCF)": "ov-int8"}


def serve_alone(folder: str, requests: int) -> dict:
    """What each process runs: load the model as a user would, then the concurrent-clients measurement."""
    from hfcompress.pipeline import load_model
    from hfcompress.timing import concurrent_throughput

    return concurrent_throughput(load_model(folder), clients=(1, 2, 8), requests=requests, seq_len=128, threads=2)


def run_task(task: str, requests: int) -> None:
    from common import teacher_dir

    work = CACHE / "runtimes" / (task if BASE.key == "minilm" else f"{BASE.key}/{task}") / "teacher"
    rows = []
    for name, sub in FORMS.items():
        folder = teacher_dir(task) if sub is None else work / sub
        if not (folder / "config.json").is_file():
            raise SystemExit(f"{folder} is missing: run benchmarks/runtimes.py --tasks {task} first (it exports them)")
        result = subprocess.run([sys.executable, __file__, "--serve", str(folder), "--requests", str(requests)],
                                capture_output=True, text=True, cwd=ROOT, check=True)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append({"name": f"teacher: {name}", "model_dir": shown_path(Path(folder)),
                     **{f"per_second_{k}": v for k, v in measured["per_second"].items()},
                     "mismatches": measured["mismatches"], "requests": requests})
        print(f"[{task}] {name}: " + ", ".join(f"{k} clients {v:.1f}/s" for k, v in measured["per_second"].items()),
              flush=True)
    payload = {"benchmark": "serving", "task": task, "model": BASE.note, "rows": rows, "hardware": hardware(),
               "note": "requests per second at batch 1, 128 tokens, 2 intra-op threads per model, from 1 / 2 / 8 "
                       "client threads; each form in a process of its own; mismatches: answers that differed from "
                       "the same request answered alone"}
    stem = f"serving_{task}{BASE.results_suffix}"
    write_results(payload, RESULTS / f"{stem}.json")
    lines = ["| model | 1 client /s | 2 clients /s | 8 clients /s | wrong answers |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['per_second_1']:.1f} | {row['per_second_2']:.1f} | "
                     f"{row['per_second_8']:.1f} | {sum(row['mismatches'].values())} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2"])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        print(json.dumps(serve_alone(options.serve, options.requests)))
        sys.exit(0)
    for task_name in options.tasks:
        run_task(task_name, options.requests)
