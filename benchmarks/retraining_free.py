#!/usr/bin/env python
"""Retraining-free structured pruning against one-shot importance pruning, real MiniLM-L6, one run per task.

Rows, all measured in this run: the fine-tuned teacher; today's one-shot heads 50% + FFN 50% by gate-gradient
importance (no fine-tune); Fisher mask search at kept head+FFN FLOPs 0.5 without reconstruction (ablation);
Fisher + least-squares reconstruction at kept FLOPs 0.6 / 0.5 / 0.4 (no fine-tuning); the same three
followed by a short distilled fine-tune; Fisher + reconstruction under a batch-1 latency budget of 1/2 and 1/2.5
of the teacher's time on this machine (at the 128 tokens every row is timed at); and TextPruner 1.1's pruning
(one-shot, and its 8-iteration variant, no fine-tuning) at the per-layer average heads and FFN width of our
kept-FLOPs 0.5 model (rounded to whole numbers, the only averages TextPruner takes), run in its own transformers-4 environment (``--peer_python``, see peers/README.md) and
applied here as the units it keeps. Every pruning sees the same calibration rows (32 batches of 32 training rows,
labels used); its wall time on this machine is recorded as `prune_seconds`.

    python benchmarks/retraining_free.py --tasks sst2 mrpc --peer_python ../peers-venv/bin/python
    python benchmarks/retraining_free.py --tasks sst2 --finetune_steps 200
    python benchmarks/retraining_free.py --tasks sst2 --variants one-shot "fisher+reconstruct 0.5" \
        --calibration_batches 32 --tag _1024rows

Writes results/retraining_free_<task><tag>.json/.md.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path

import torch
from common import (BASE, CACHE, ROOT, benchmark_parser, get_teacher, keep_variant, load_data, run_payload, save_run,
                    TASK_SETUPS, teacher_dir, train_batches, training_args)
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from hfcompress import (CompressionTrainer, DistillationConfig, FFNPruningConfig, HeadPruningConfig,
                        StructuredPruningConfig, compress, get_record)
from hfcompress.benchmark import add_ratios, benchmark_rows, measure_latency
from hfcompress.finetune import build_trainer
from hfcompress.structure import remove_ffn_neurons, remove_heads

CALIBRATION_BATCHES = 32  # x 32 rows = 1024 calibration rows (256 rows: SST-2 -1.15 points at FLOPs 0.5, 1024: -0.58)
LEVELS = (0.6, 0.5, 0.4, 0.3)
ABLATION = (0.5, 0.4)  # Kwon et al.'s steps one at a time: search / + rearrangement / + mask tuning / + our refit
SPEEDUPS = (2.0, 2.5)  # latency budgets: the teacher's batch-1 time divided by these
TEXTPRUNER = {"textpruner": 1, "textpruner iterative": 8}  # variant -> TextPruner's n_iters
VARIANTS = ["one-shot", "fisher", *[f"fisher+reconstruct {k}" for k in LEVELS], *[f"+ KD {k}" for k in LEVELS],
            *[f"latency {k}x" for k in SPEEDUPS], *[f"ablation {k}" for k in ABLATION], *TEXTPRUNER]
TIMED_LENGTH = 128  # benchmark_rows times every row at this many tokens


def _write_batches(loader, path: Path, count: int | None = None) -> None:
    tensors = {}
    for index, batch in enumerate(loader):
        if count is not None and index >= count:
            break
        tensors.update({f"batch{index}.{key}": value.contiguous() for key, value in batch.items()})
    save_file(tensors, str(path))


def textpruner_entries(task: str, teacher, data, tokenizer, calibration, structure_model, calibration_batches: int,
                       peer_python: str, wanted: set[str], tag: str) -> list[dict]:
    """TextPruner's choice of heads and neurons (computed in its own environment), removed from the teacher here."""
    work = CACHE / "peers" / task
    work.mkdir(parents=True, exist_ok=True)
    _write_batches(calibration(), work / "calibration.safetensors", calibration_batches)
    dev = data["validation"].with_format("torch", columns=[c for c in ("input_ids", "attention_mask",
                                                                          "token_type_ids", "label")
                                                              if c in data["validation"].column_names])
    collate = DataCollatorWithPadding(tokenizer)
    _write_batches(DataLoader(dev, batch_size=64, collate_fn=lambda rows: {
        ("labels" if k == "label" else k): v for k, v in collate(rows).items()}), work / "dev.safetensors")
    step = get_record(structure_model).steps[-1]["shape"]
    layers = len(step["kept_heads"])
    heads, ffn = sum(map(len, step["kept_heads"])) / layers, sum(step["ffn_sizes"]) / layers
    entries = []
    for name, iterations in TEXTPRUNER.items():
        if name not in wanted:
            continue
        out = work / f"masks_{iterations}.json"
        command = [peer_python, str(ROOT / "benchmarks" / "peers" / "textpruner_masks.py"), "--model",
                   str(teacher_dir(task)), "--calibration", str(work / "calibration.safetensors"), "--dev",
                   str(work / "dev.safetensors"), "--heads", str(heads), "--ffn", str(ffn), "--iterations",
                   str(iterations), "--output", str(out)]
        subprocess.run(command, check=True)
        result = json.loads(out.read_text())
        model = copy.deepcopy(teacher)
        remove_ffn_neurons(model, {layer: [n for n in range(model.config.intermediate_size) if n not in set(kept)]
                                   for layer, kept in enumerate(result["kept_neurons"])})
        remove_heads(model, {layer: [h for h in range(model.config.num_attention_heads) if h not in set(kept)]
                             for layer, kept in enumerate(result["kept_heads"])})
        label = (f"TextPruner {result['textpruner']} "
                 f"{'one-shot' if iterations == 1 else f'{iterations} iterations'}, same heads + neurons (nearest whole per-layer averages)")
        entries.append(keep_variant("retraining_free" + tag, task, label, model, {
            "prune_seconds": result["seconds"], "peer": {k: result[k] for k in ("textpruner", "transformers", "torch")},
            "peer_own_dev_accuracy": result.get("dev_accuracy_in_textpruner")}))
    return entries


def run_task(task: str, steps: int, lr: float, seed: int, names: list[str] | None, tag: str,
             calibration_batches: int = CALIBRATION_BATCHES, peer_python: str | None = None) -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)

    def calibration():
        return train_batches(data["train"], tokenizer, seed)

    def pruned(configs) -> tuple:
        model = copy.deepcopy(teacher)
        start = time.perf_counter()
        for config in configs:
            compress(model, config, dataloader=calibration())
        return model, round(time.perf_counter() - start, 1)

    def info(model) -> dict:
        step = get_record(model).steps[-1]
        return {k: v for k, v in step["info"].items() if k in ("kept_flops_measured", "reconstruction_error",
                                                                "calibration_rows", "seq_length", "max_latency_ms",
                                                                "latency_ms_predicted", "latency_ms_measured")}

    wanted = set(names or VARIANTS)
    teacher_label = "teacher (fine-tuned MiniLM-L6)" if BASE.key == "minilm" else f"teacher (fine-tuned {BASE.key})"
    entries = [{"name": teacher_label, "model": teacher}]
    if "one-shot" in wanted:
        model, seconds = pruned([HeadPruningConfig(target=0.5, max_batches=calibration_batches),
                                 FFNPruningConfig(target=0.5, max_batches=calibration_batches)])
        entries.append(keep_variant("retraining_free" + tag, task, "one-shot heads 50% + FFN 50% (gate gradients)",
                                    model, {"prune_seconds": seconds}))
    if "fisher" in wanted:
        model, seconds = pruned([StructuredPruningConfig(kept_flops=0.5, reconstruct=False,
                                                         max_batches=calibration_batches)])
        entries.append(keep_variant("retraining_free" + tag, task, "Fisher mask search, FLOPs 0.5, no reconstruction",
                                    model, {"prune_seconds": seconds, **info(model)}))
    for level in LEVELS:
        if f"fisher+reconstruct {level}" not in wanted and f"+ KD {level}" not in wanted:
            continue
        model, seconds = pruned([StructuredPruningConfig(kept_flops=level, max_batches=calibration_batches)])
        if f"fisher+reconstruct {level}" in wanted:
            entries.append(keep_variant("retraining_free" + tag, task, f"Fisher + reconstruction, FLOPs {level}",
                                        copy.deepcopy(model), {"prune_seconds": seconds, **info(model)}))
        if f"+ KD {level}" in wanted:
            args = training_args(f"retraining-free-{task}", steps, lr, seed)
            trainer = build_trainer(model, tokenizer, task, args, data["train"], trainer_cls=CompressionTrainer,
                                    teacher=teacher, distillation=DistillationConfig())
            trainer.train()
            entries.append(keep_variant("retraining_free" + tag, task,
                                        f"Fisher + reconstruction, FLOPs {level}, + {steps}-step KD fine-tune",
                                        trainer.model, {"prune_seconds": seconds, **info(model)}))
        print(f"[{task}] kept FLOPs {level}: done", flush=True)
    for level in ABLATION:
        if f"ablation {level}" not in wanted:
            continue
        steps_on = (("mask search only", {"reconstruct": False}),
                    ("+ rearrangement", {"rearrange": True, "reconstruct": False}),
                    ("+ rearrangement + mask tuning", {"rearrange": True, "tune_masks": True, "reconstruct": False}),
                    ("+ rearrangement + mask tuning + output refit", {"rearrange": True, "tune_masks": True}),
                    ("+ rearrangement + output refit", {"rearrange": True}))
        for label, options in steps_on:
            model, seconds = pruned([StructuredPruningConfig(kept_flops=level, max_batches=calibration_batches,
                                                             **options)])
            entries.append(keep_variant("retraining_free" + tag, task, f"FLOPs {level}: {label}", model,
                                        {"prune_seconds": seconds, **info(model)}))
        print(f"[{task}] ablation at kept FLOPs {level}: done", flush=True)
    teacher_ms = None
    for speedup in SPEEDUPS:
        if f"latency {speedup}x" not in wanted:
            continue
        if teacher_ms is None:
            teacher_ms = measure_latency(teacher, batch_size=1, seq_len=TIMED_LENGTH, threads=2,
                                         repeats=60)["median_ms"]
        budget = round(teacher_ms / speedup, 2)
        model, seconds = pruned([StructuredPruningConfig(max_latency_ms=budget, seq_length=TIMED_LENGTH,
                                                         max_batches=calibration_batches)])
        entries.append(keep_variant("retraining_free" + tag, task,
                                    f"Fisher + reconstruction, batch-1 latency <= teacher / {speedup:g} ({budget} ms)",
                                    model, {"prune_seconds": seconds, **info(model)}))
        print(f"[{task}] latency budget {budget} ms: done", flush=True)
    if wanted & set(TEXTPRUNER):
        if peer_python is None:
            print("TextPruner rows skipped: give --peer_python (a transformers-4 virtualenv with textpruner, "
                  "see benchmarks/peers/README.md)", flush=True)
        else:
            structure, _ = pruned([StructuredPruningConfig(kept_flops=0.5, reconstruct=False,
                                                           max_batches=calibration_batches)])
            entries += textpruner_entries(task, teacher, data, tokenizer, calibration, structure, calibration_batches,
                                          peer_python, wanted, tag)
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task, seq_len=TIMED_LENGTH)
    add_ratios(rows, rows[0]["name"])
    payload = run_payload("retraining_free", setup, teacher_info, data, rows, calibration_rows=32 * calibration_batches,
                          finetune_steps=steps, finetune_lr=lr, seed=seed,
                          note="kept FLOPs count the encoder's attention heads and FFN neurons at the calibration "
                               "rows' mean length; no row but the '+ KD' ones saw any training step")
    save_run(payload, tag)


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, VARIANTS)
    parser.add_argument("--calibration_batches", type=int, default=CALIBRATION_BATCHES, help="batches of 32 rows")
    parser.add_argument("--peer_python", help="python of a transformers-4 virtualenv with textpruner (TextPruner rows)")
    options = parser.parse_args()
    for task_name in options.tasks:
        run_task(task_name, options.finetune_steps or 200, options.lr, options.seed, options.variants, options.tag,
                 options.calibration_batches, options.peer_python)
