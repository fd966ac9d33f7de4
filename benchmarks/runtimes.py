#!/usr/bin/env python
"""Every CPU runtime hfcompress ships, on the same models, in one run: which one should a user serve?

Models: the fine-tuned teacher and its retraining-free pruned form (half the head+FFN FLOPs, no training; optionally
any saved pipeline result given with --extra NAME=FOLDER). Runtimes for each: torch fp32; hfcompress torch int8
(int8 embeddings); ONNX Runtime int8, ours (per-channel, this CPU's graph) and plain (`quantize_dynamic` as its docs
show it); OpenVINO at the CPU's default precision (bf16 where the CPU has it), forced f32, and int8 by NNCF
(300 calibration rows the teacher never saw, transformer preset).

Scores: dev set, every row. Latency: each runtime is timed **in a process of its own** (OpenVINO and ONNX Runtime
in one process slowed each other), sequence 128, 2 threads, batch 1 and 32; the processes run in rotating order for
--cycles cycles, and a speedup is the median over cycles of the per-cycle ratio against torch fp32 of the same
model family's teacher. To show the effect that rules out one process, the ONNX Runtime and OpenVINO int8 models are
also timed alternating in one process (spinning off), beside their separate-process medians.

    python benchmarks/runtimes.py --tasks sst2 mrpc
    python benchmarks/runtimes.py --time FOLDER --rounds 30      # one model alone (what each process runs)

Writes results/runtimes_<task>.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from common import (BASE, CACHE, RESULTS, ROOT, TASK_SETUPS, get_teacher, guard_rows, load_data, run_payload, shown_path,
                    teacher_dir, train_batches)

from reporting import pareto_plot, study_report

from hfcompress import (DynamicQuantConfig, StructuredPruningConfig, compress, export_onnx, export_openvino)
from hfcompress.benchmark import evaluate_model, hardware, weights_size_bytes, write_results
from hfcompress.data import get_task
from hfcompress.pipeline import load_model

SEQ_LEN = 128


FORMS = ("torch fp32", "hfcompress torch int8", "ONNX Runtime int8 (hfcompress)", "ONNX Runtime int8 (plain quantize_dynamic)",
         "OpenVINO, CPU default precision", "OpenVINO f32", "OpenVINO int8 (NNCF)")


def _variants(name: str, torch_dir: Path, work: Path, calibration, tokenizer, forms: tuple[str, ...] = FORMS) -> list[dict]:
    """The runtime forms (``forms``, of FORMS) of the PyTorch model in ``torch_dir``, written under ``work``
    (reused when there)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(torch_dir).eval()
    rows = [{"name": f"{name}: torch fp32", "folder": torch_dir, "runtime": "torch", "precision": "fp32"}]

    def made(folder: Path, build) -> Path:
        form = {"torch-int8": FORMS[1], "ort-int8": FORMS[2], "ort-int8-plain": FORMS[3], "ov": FORMS[4],
                "ov-f32": FORMS[5], "ov-int8": FORMS[6]}[folder.name]
        if form in forms and not (folder / "config.json").is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build(folder)
        return folder

    int8_torch = made(work / "torch-int8", lambda f: compress(copy.deepcopy(model), DynamicQuantConfig(
        backend="torch", embeddings=True)).save_pretrained(f))
    rows.append({"name": f"{name}: hfcompress torch int8", "folder": int8_torch, "runtime": "torch", "precision": "int8"})
    rows.append({"name": f"{name}: ONNX Runtime int8 (hfcompress)", "runtime": "onnxruntime", "precision": "int8",
                 "folder": made(work / "ort-int8", lambda f: export_onnx(model, f, int8=True, tokenizer=tokenizer))})
    rows.append({"name": f"{name}: ONNX Runtime int8 (plain quantize_dynamic)", "runtime": "onnxruntime",
                 "precision": "int8", "folder": made(work / "ort-int8-plain", lambda f: export_onnx(
                     model, f, int8=True, optimize=False, per_channel=False, weight_bits=8, tokenizer=tokenizer))})
    rows.append({"name": f"{name}: OpenVINO, CPU default precision", "runtime": "openvino", "precision": "default",
                 "folder": made(work / "ov", lambda f: export_openvino(model, f, tokenizer=tokenizer))})
    rows.append({"name": f"{name}: OpenVINO f32", "runtime": "openvino", "precision": "f32",
                 "folder": made(work / "ov-f32", lambda f: export_openvino(model, f, precision="f32",
                                                                           tokenizer=tokenizer))})
    rows.append({"name": f"{name}: OpenVINO int8 (NNCF)", "runtime": "openvino", "precision": "int8",
                 "folder": made(work / "ov-int8", lambda f: export_openvino(
                     model, f, int8=True, calibration_rows=300, dataloader=calibration(), tokenizer=tokenizer))})
    rows = [row for row in rows if row["name"].split(": ", 1)[1] in forms]
    for row in rows:
        row["family"] = name
    return rows


def time_alone(folder: str, rounds: int) -> dict:
    """What each timing process runs: load the model the way a user would, then time it alone."""
    from hfcompress.timing import measure_latency

    model = load_model(folder)
    out = {}
    for batch, count in ((1, rounds), (32, max(5, rounds // 3))):
        out[f"bs{batch}"] = measure_latency(model, batch_size=batch, seq_len=SEQ_LEN, threads=2, warmup=5,
                                            repeats=count)["median_ms"]
    return out


def _time_in_processes(rows: list[dict], rounds: int, cycles: int, saved: Path) -> None:
    """Each row's model timed in its own process, rows in rotating order per cycle; per-cycle medians kept (and
    written to ``saved`` after every cycle, so a run stopped later re-times nothing it finished)."""
    done = json.loads(saved.read_text()) if saved.is_file() else {}
    if done.get("names") == [r["name"] for r in rows] and done.get("rounds") == rounds:
        for row, kept in zip(rows, done["cycles"]):
            row["cycles"] = kept
    else:
        for row in rows:
            row["cycles"] = []
    for cycle in range(len(rows[0]["cycles"]), cycles):
        order = rows[cycle % len(rows):] + rows[:cycle % len(rows)]
        for row in order:
            result = subprocess.run([sys.executable, __file__, "--time", str(row["folder"]), "--rounds", str(rounds)],
                                    capture_output=True, text=True, cwd=ROOT, check=True)
            row["cycles"].append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"timing cycle {cycle + 1}/{cycles} done", flush=True)
        saved.write_text(json.dumps({"names": [r["name"] for r in rows], "rounds": rounds,
                                     "cycles": [r["cycles"] for r in rows]}))
    for row in rows:
        for batch in ("bs1", "bs32"):
            row[f"latency_{batch}_ms"] = statistics.median(c[batch] for c in row["cycles"])


def _speedups(rows: list[dict], baseline: dict) -> None:
    for row in rows:
        for batch in ("bs1", "bs32"):
            ratios = [b[batch] / c[batch] for b, c in zip(baseline["cycles"], row["cycles"])]
            row[f"speedup_{batch}"] = statistics.median(ratios)
            row[f"speedup_{batch}_range"] = [min(ratios), max(ratios)]


def _one_process_effect(rows: list[dict], rounds: int) -> dict:
    """ONNX Runtime int8 and OpenVINO int8 of the teacher alternated in one process (ORT spinning off)."""
    from hfcompress.timing import interleaved_latency

    pair = [r for r in rows if r["name"].endswith(("ONNX Runtime int8 (hfcompress)", "OpenVINO int8 (NNCF)"))][:2]
    models = {r["name"]: load_model(r["folder"]) for r in pair}
    effect = {}
    for batch, count in ((1, rounds), (32, max(5, rounds // 3))):
        timing = interleaved_latency(models, batch_size=batch, seq_len=SEQ_LEN, threads=2, rounds=count)
        effect[f"bs{batch}"] = {name: {"one_process_ms": timing[name],
                                       "own_process_ms": next(r for r in pair if r["name"] == name)[
                                           f"latency_bs{batch}_ms"]} for name in models}
    return effect


def run_task(task: str, rounds: int, cycles: int, extra: dict[str, str], tag: str, kept_flops: list[float],
             family_forms: tuple[str, ...]) -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    unseen, is_unseen = guard_rows(setup, tokenizer, data, rows=1024)
    work = CACHE / "runtimes" / (task if BASE.key == "minilm" else f"{BASE.key}/{task}")

    def calibration():
        return train_batches(unseen, tokenizer, seed=0)

    families = {"teacher": teacher_dir(task)}
    pruning = {}  # per pruned family: its wall time, and per stage when the pruning recorded it
    for level in kept_flops:
        pruned_dir = work / f"retraining-free-{level:g}" / "torch"
        if not (pruned_dir / "config.json").is_file():
            start = time.perf_counter()
            pruned = compress(copy.deepcopy(teacher), StructuredPruningConfig(kept_flops=level, max_batches=32),
                              dataloader=train_batches(data["train"], tokenizer, 42))
            pruned.save_pretrained(pruned_dir)
            (pruned_dir / "prune_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        if (pruned_dir / "prune_seconds.txt").is_file():
            info = json.loads((pruned_dir / "config.json").read_text())["quantization_config"]["steps"][-1]["info"]
            pruning[f"retraining-free {level:g} FLOPs"] = {
                "prune_seconds": float((pruned_dir / "prune_seconds.txt").read_text()),
                **({"prune_stage_seconds": info["stage_seconds"]} if "stage_seconds" in info else {})}
        families[f"retraining-free {level:g} FLOPs"] = pruned_dir
    families.update({name: Path(folder) for name, folder in extra.items()})
    rows = []
    for name, folder in families.items():
        forms = FORMS if name == "teacher" else family_forms
        rows += _variants(name, folder, work / name.replace(" ", "_"), calibration, tokenizer, forms)
    metric = get_task(task).main_metric
    for row in rows:
        model = load_model(row["folder"])
        row["metrics"] = evaluate_model(model, data["validation"], task)
        row["score"] = row["metrics"][metric]
        row["size_bytes"] = weights_size_bytes(row["folder"])
        print(f"[{task}] {row['name']}: {metric} {100 * row['score']:.2f}", flush=True)
    _time_in_processes(rows, rounds, cycles, work / "timing.json")
    baseline = rows[0]
    _speedups(rows, baseline)
    effect = _one_process_effect(rows, rounds)
    for row in rows:
        row["score_drop"] = 100 * (baseline["score"] - row["score"])
        row["model_dir"] = shown_path(Path(row.pop("folder")))
    for row in rows:
        row.update(pruning.get(row["family"], {}))
    payload = run_payload("runtimes", setup, teacher_info, data, rows, calibration_rows=300,
                          calibration_rows_unseen=is_unseen, rounds_bs1=rounds, cycles=cycles,
                          one_process_effect=effect,
                          timing="each row in a process of its own, rows in rotating order, median over cycles; "
                                 "speedups are medians of per-cycle ratios against the teacher's torch fp32")
    payload["hardware"] = hardware()
    stem = f"runtimes_{task}{BASE.results_suffix}{tag}"
    payload["plot"] = plot(payload, RESULTS / f"{stem}.png")
    write_results(payload, RESULTS / f"{stem}.json")
    table = study_report("runtimes").runtime_table(payload)
    (RESULTS / f"{stem}.md").write_text(table + "\n")
    print(table, flush=True)


def plot(payload: dict, path: Path) -> str:
    """Score against batch-1 latency for every runtime form of every model in a finished run (the teacher in
    torch fp32 as the reference, plain ONNX Runtime int8 as what a user would do); the PNG's path as results
    files record it."""
    def kind(row: dict) -> str:
        if row["name"] == "teacher: torch fp32":
            return "teacher"
        return "peer" if "plain" in row["name"] else "hfcompress"

    model = "all-mpnet-base-v2" if "mpnet" in payload.get("model", "") else "MiniLM-L6"
    rows = [{**row, "kind": kind(row)} for row in payload["rows"]]
    pareto_plot(rows, payload["metric"], path, f"{payload['task'].upper()} ({model}), every runtime: score vs "
                                                f"batch-1 latency ({payload['hardware'].get('int8_isa')} host)")
    return shown_path(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds at batch 1 per process (a third at 32)")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=FOLDER",
                        help="more PyTorch model folders to put through every runtime (e.g. a pipeline's stage)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--kept_flops", type=float, nargs="+", default=[0.5],
                        help="retraining-free pruning levels, each a model family of its own")
    parser.add_argument("--family_forms", nargs="+", default=list(FORMS), choices=list(FORMS), metavar="FORM",
                        help=f"runtime forms of the families other than the teacher (default: all of {list(FORMS)})")
    parser.add_argument("--plot", default=None, metavar="RESULTS_JSON",
                        help="draw the score/latency plot of a finished run (beside its JSON) and stop")
    parser.add_argument("--time", default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.plot:
        results = Path(options.plot)
        payload = json.loads(results.read_text())
        payload["plot"] = plot(payload, results.with_suffix(".png"))
        write_results(payload, results)
        sys.exit(0)
    if options.time:
        print(json.dumps(time_alone(options.time, options.rounds)))
        sys.exit(0)
    extras = dict(item.split("=", 1) for item in options.extra)
    for task_name in options.tasks:
        run_task(task_name, options.rounds, options.cycles, extras, options.tag, options.kept_flops,
                 tuple(options.family_forms))
