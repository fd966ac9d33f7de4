#!/usr/bin/env python
"""Is a retraining-free latency budget met where the model will run, from whatever shape the model has?

For each starting model (the fine-tuned teacher; the teacher already pruned retraining-free to 0.7 kept FLOPs, an
uneven shape; any saved model given with --start NAME=FOLDER, e.g. a pipeline's truncated and distilled stage) and
each runtime (torch fp32 in this process, or an export format such as openvino_int8): the starting model is timed
on that runtime, the budget is its batch-1 time / --speedup, and `StructuredPruningConfig(max_latency_ms=budget,
latency_runtime=runtime)` prunes a copy (no training). The result is then exported afresh and timed against the
start, alternating in one process on the same runtime (one runtime at a time: runtimes are never timed together),
and both are scored on the full dev set in that runtime.

    python benchmarks/latency_budget.py --task sst2 --runtimes torch openvino_int8 \
        --start "3 layers + KD=benchmarks/cache/pipeline/sst2/kd3_int8/stages/01-truncate3"

Writes results/retraining_free_<task><tag>.json/.md (tag default _latency_budget), a file of the retraining-free study.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from common import CACHE, TASK_SETUPS, get_teacher, load_data, run_payload, save_run, shown_path, teacher_dir, train_batches

from hfcompress import StructuredPruningConfig, compress, get_record
from hfcompress.benchmark import evaluate_model, row_id
from hfcompress.data import get_task
from hfcompress.pipeline import load_model
from hfcompress.runtimes import export_config
from hfcompress.timing import paired_latency

SEQ_LEN = 128  # every timing in this file: batch 1, 128 tokens
CALIBRATION_BATCHES = 32  # x 32 training rows: the pruning's calibration (and 2 of them calibrate timed int8 exports)
ROUNDS = 40


def _runnable(model, runtime: str, folder: Path, calibration: list):
    """The model as ``runtime`` runs it: itself for torch, else its export in ``folder`` (written once)."""
    if runtime == "torch":
        return model.eval()
    spec, config = export_config(runtime)
    if not (folder / spec.marker).is_file():
        spec.export(model, folder, config, tokenizer=None, dataloader=calibration)
    return spec.runner.from_pretrained(folder)


def run(task: str, runtimes: list[str], starts: dict[str, str], speedup: float, tag: str) -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    metric = get_task(task).main_metric
    batches = list(train_batches(data["train"], tokenizer, 42))[:CALIBRATION_BATCHES]
    work = CACHE / "latency_budget" / task
    start_dirs = {"teacher": teacher_dir(task)}
    uneven = work / "retraining-free-0.7"
    if not (uneven / "config.json").is_file():
        compress(copy.deepcopy(teacher), StructuredPruningConfig(kept_flops=0.7), dataloader=batches).save_pretrained(uneven)
    start_dirs["teacher pruned retraining-free to 0.7 FLOPs"] = uneven
    start_dirs.update({name: Path(folder) for name, folder in starts.items()})
    rows = []
    for start_name, start_dir in start_dirs.items():
        start = load_model(start_dir).eval()
        for runtime in runtimes:
            key = f"{start_name}-{runtime}".replace(" ", "_")
            start_runner = _runnable(start, runtime, work / key / "start", batches[:10])
            start_ms = paired_latency({"start": start_runner}, [], batch_size=1, seq_len=SEQ_LEN, threads=None,
                                      rounds=ROUNDS)["median_ms"]["start"]
            budget = round(start_ms / speedup, 2)
            began = time.perf_counter()
            try:
                pruned = compress(copy.deepcopy(start), StructuredPruningConfig(
                    max_latency_ms=budget, latency_runtime=runtime, seq_length=SEQ_LEN), dataloader=batches)
            except ValueError as error:  # a budget below what pruning heads and neurons can reach: a result too
                rows.append({"id": row_id(key), "name": f"{start_name}: {runtime}", "start": start_name,
                             "runtime": runtime, "start_dir": shown_path(Path(start_dir)), "start_ms": start_ms,
                             "budget_ms": budget, "reachable": False, "error": str(error)})
                print(f"[{task}] {start_name}: {runtime}: start {start_ms:.1f} ms, budget {budget} ms: {error}",
                      flush=True)
                continue
            seconds = time.perf_counter() - began
            info = get_record(pruned).steps[-1]["info"]
            pruned_runner = _runnable(pruned, runtime, work / key / "pruned", batches[:10])
            timed = paired_latency({"pruned": pruned_runner, "start": start_runner}, [("pruned", "start")],
                                   batch_size=1, seq_len=SEQ_LEN, threads=None, rounds=ROUNDS)
            ratio = timed["ratios"]["pruned / start"]
            # The start by itself once more: how far this machine's speed moved while the pruning ran.
            start_ms_after = paired_latency({"start": start_runner}, [], batch_size=1, seq_len=SEQ_LEN, threads=None,
                                            rounds=ROUNDS)["median_ms"]["start"]
            start_score = evaluate_model(start_runner, data["validation"], task)[metric]
            score = evaluate_model(pruned_runner, data["validation"], task)[metric]
            measured = ratio["median"] * start_ms  # the ratio to the start, on the time that set the budget
            rows.append({
                "id": row_id(key), "name": f"{start_name}: {runtime}", "start": start_name, "runtime": runtime,
                "start_dir": shown_path(Path(start_dir)), "start_score": start_score, "score": score,
                "metrics": {metric: score}, "score_drop": 100 * (start_score - score),
                "start_ms": start_ms, "start_ms_while_pruning": info["latency_table"]["current_ms"],
                "start_ms_at_retiming": start_ms_after,
                "budget_ms": budget, "predicted_ms": info["latency_ms_predicted"],
                "measured_while_pruning_ms": info["latency_ms_measured"], "latency_margin": info.get("latency_margin", 0.0),
                "measured_ms": measured, "ratio_ci95": ratio["ci95"], "met": measured <= budget,
                "speedup_vs_start": 1 / ratio["median"], "kept_flops_measured": info["kept_flops_measured"],
                "prune_seconds": round(seconds, 1),
                "heads": [len(k) for k in get_record(pruned).steps[-1]["shape"].get("kept_heads", [])],
                "ffn": get_record(pruned).steps[-1]["shape"].get("ffn_sizes"),
            })
            row = rows[-1]
            print(f"[{task}] {row['name']}: start {start_ms:.1f} ms (pruning's {row['start_ms_while_pruning']:.1f}, "
                  f"at re-timing {start_ms_after:.1f}), budget {budget} ms, measured {measured:.1f} ms "
                  f"({'met' if row['met'] else 'MISSED'}), {metric} {100 * start_score:.2f} -> {100 * score:.2f}, "
                  f"pruned in {seconds:.0f} s", flush=True)
    payload = run_payload("retraining_free", setup, teacher_info, data, rows, speedup=speedup,
                          experiment="latency_budget", calibration_rows=CALIBRATION_BATCHES * 32, rounds=ROUNDS, seq_len=SEQ_LEN,
                          timing="batch 1, 128 tokens, 2 threads; each result timed against its start alternating in "
                                 "one process on the same runtime (median of per-round ratios, 95% bootstrap interval)")
    if tag:
        payload["tag"] = tag
    save_run(payload, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2", choices=sorted(TASK_SETUPS))
    parser.add_argument("--runtimes", nargs="+", default=["torch", "openvino_int8"])
    parser.add_argument("--start", nargs="*", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--speedup", type=float, default=2.0, help="budget = the start's batch-1 time / this")
    parser.add_argument("--tag", default="_latency_budget")
    args = parser.parse_args()
    starts = dict(item.split("=", 1) for item in args.start)
    run(args.task, args.runtimes, starts, args.speedup, args.tag)


if __name__ == "__main__":
    main()
