#!/usr/bin/env python
"""Quantization-aware fine-tuning against post-training int8, real MiniLM-L6, one run per task, several seeds.

Rows, all measured in this run: the fp32 teacher; post-training int8 of the teacher (hfcompress torch, and the
ONNX Runtime export), both at this CPU's defaults; and per seed: the teacher fine-tuned further in float for the
same steps with the same distillation, then int8 (the control: what the extra fine-tune alone buys); and QAT
(``QuantAwareConfig``: int8 simulated while fine-tuning with distillation from the fp32 teacher) converted to
torch int8 and, separately trained on ONNX Runtime's grid, exported to ONNX Runtime int8. Int8 embeddings on the
torch rows (the file-size target). The accuracy guard (``DynamicQuantConfig(max_drop=0.3)``) estimates its drop
on 1024 training rows, never on the dev rows reported.

    python benchmarks/qat.py --tasks mrpc sst2 --steps 120 --seeds 42 43 44

``--from_base``: QAT as *the* fine-tune, the way a user who has not fine-tuned yet would use it. Per seed, MiniLM
is fine-tuned on the task with the teacher's recipe (epochs, lr, batch; no distillation, last step kept, no dev
selection) twice: in float (then post-training int8) and with QAT (then converted). Drops are paired per seed
against that seed's float model.

    python benchmarks/qat.py --tasks mrpc --from_base --seeds 42 43 44 --tag _from_base

Writes results/qat_<task><tag>.json/.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from common import (CACHE, get_teacher, guard_rows, keep_variant, load_data, minilm_path, run_payload, save_run,
                    TASK_SETUPS, train_batches, training_args)

from hfcompress import (CompressionTrainer, DistillationConfig, DynamicQuantConfig, OnnxSequenceClassifier,
                        QuantAwareConfig, compress, export_onnx)
from hfcompress.benchmark import add_ratios, benchmark_rows, weights_size_bytes
from hfcompress.finetune import build_trainer
from hfcompress.data import get_task
from hfcompress.methods.quantization.kernels import default_ort_fusions

ORT_BITS = 7  # export_onnx's default grid


def _fine_tune(teacher, tokenizer, task, data, steps, lr, seed, compression, name):
    model = copy.deepcopy(teacher)
    args = training_args(f"qat-{task}-{name}-{seed}", steps, lr, seed)
    trainer = build_trainer(model, tokenizer, task, args, data["train"], trainer_cls=CompressionTrainer,
                            teacher=teacher, distillation=DistillationConfig(), compression=compression)
    trainer.train()
    return trainer.model


def run_task(task: str, steps: int, lr: float, seeds: list[int], tag: str, work: Path) -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    fusions = default_ort_fusions(int8=True)
    guard_data, unseen = guard_rows(setup, tokenizer, data)
    guard_note = "1024 training rows outside the teacher's subset" if unseen else "1024 training rows"

    def ort(model, name, **kind):
        folder = export_onnx(model, work / f"{task}-{name}", **({"int8": True, "optimize": fusions} | kind),
                             weight_bits=ORT_BITS)
        return {"model": OnnxSequenceClassifier.from_pretrained(folder), "size_bytes": weights_size_bytes(folder)}

    entries = [{"name": "fp32 teacher", "model": teacher},
               {"name": "post-training int8 (torch)",
                "model": compress(copy.deepcopy(teacher), DynamicQuantConfig(embeddings=True))},
               {"name": f"post-training int8 (torch), accuracy guard max_drop 0.3 ({guard_note})",
                "model": compress(copy.deepcopy(teacher), DynamicQuantConfig(embeddings=True, max_drop=0.3,
                                                                             max_batches=32,
                                                                             reference="labels" if unseen else
                                                                             "agreement"),
                                  dataloader=train_batches(guard_data, tokenizer, 1))},
               {"name": "post-training int8 (onnxruntime)", **ort(teacher, "ptq")},
               {"name": "post-training int8 (onnxruntime, static QDQ, 1024 calibration rows)",
                **ort(teacher, "static", int8="static", dataloader=train_batches(data["train"], tokenizer, 0),
                      max_batches=32)}]
    for seed in seeds:
        control = _fine_tune(teacher, tokenizer, task, data, steps, lr, seed, [], "float")
        entries.append({"name": f"float KD fine-tune, then int8 (torch), seed {seed}", "extra": {"seed": seed},
                        "model": compress(copy.deepcopy(control), DynamicQuantConfig(embeddings=True))})
        entries.append({"name": f"float KD fine-tune, then int8 (onnxruntime), seed {seed}", "extra": {"seed": seed},
                        **ort(control, f"control-{seed}")})
        qat_torch = _fine_tune(teacher, tokenizer, task, data, steps, lr, seed,
                               [QuantAwareConfig(backend="torch", embeddings=True)], "torch")
        # Kept (cache/qat/<task>/), so quantization.py can time the QAT models in its whole table.
        entries.append(keep_variant("qat", task, f"QAT, int8 (torch), seed {seed}", qat_torch, {"seed": seed}))
        qat_ort = _fine_tune(teacher, tokenizer, task, data, steps, lr, seed,
                             [QuantAwareConfig(backend="onnxruntime", weight_bits=ORT_BITS)], "onnxruntime")
        entries.append({"name": f"QAT, int8 (onnxruntime), seed {seed}", "extra": {"seed": seed},
                        **ort(qat_ort, f"qat-{seed}")})
        print(f"[{task}] seed {seed}: done", flush=True)
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task, rounds={1: 60, 32: 20})
    add_ratios(rows, rows[0]["name"])
    means = {}
    for kind in ("float KD fine-tune, then int8 (torch)", "float KD fine-tune, then int8 (onnxruntime)",
                 "QAT, int8 (torch)", "QAT, int8 (onnxruntime)"):
        picked = [r for r in rows if r["name"].startswith(kind + ",")]
        means[kind] = {metric: statistics.mean(r["metrics"][metric] for r in picked)
                       for metric in picked[0]["metrics"]} if picked else {}
    payload = run_payload("qat", setup, teacher_info, data, rows, finetune_steps=steps, finetune_lr=lr,
                          finetune_distillation=True, seeds=seeds, seed_means=means,
                          note=f"every fine-tune: {steps} steps at lr {lr}, distillation from the fp32 teacher; "
                               f"ONNX Runtime rows: {ORT_BITS}-bit per-channel weights, "
                               f"{'fused' if fusions else 'unfused'} graph (this CPU's default)")
    save_run(payload, tag)


def run_from_base(task: str, seeds: list[int], tag: str, steps: int | None = None) -> None:
    setup = TASK_SETUPS[task]
    _, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    steps = steps or math.ceil(setup.teacher_epochs * math.ceil(data["train"].num_rows / 32))

    def fine_tune(seed, compression, name):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(),
                                                                   num_labels=get_task(task).num_labels)
        args = training_args(f"qat-base-{task}-{name}-{seed}", steps, setup.teacher_lr, seed)
        trainer = build_trainer(model, tokenizer, task, args, data["train"], trainer_cls=CompressionTrainer,
                                compression=compression)
        trainer.train()
        return trainer.model

    entries = []
    for seed in seeds:
        dense = fine_tune(seed, [], "float")
        entries.append({"name": f"float fine-tune, seed {seed}", "model": dense, "extra": {"seed": seed}})
        entries.append({"name": f"float fine-tune, then post-training int8 (torch), seed {seed}",
                        "model": compress(copy.deepcopy(dense), DynamicQuantConfig(embeddings=True)),
                        "extra": {"seed": seed}})
        entries.append({"name": f"QAT fine-tune, int8 (torch), seed {seed}", "extra": {"seed": seed},
                        "model": fine_tune(seed, [QuantAwareConfig(backend="torch", embeddings=True)], "qat")})
        print(f"[{task}] seed {seed}: done", flush=True)
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task, rounds={1: 60, 32: 20})
    add_ratios(rows, rows[0]["name"])
    by_seed = {seed: {r["name"].split(", seed")[0]: r for r in rows if r.get("seed") == seed} for seed in seeds}
    drops = {}
    for kind in ("float fine-tune, then post-training int8 (torch)", "QAT fine-tune, int8 (torch)"):
        per_seed = [{metric: by_seed[s]["float fine-tune"]["metrics"][metric] - by_seed[s][kind]["metrics"][metric]
                     for metric in by_seed[s][kind]["metrics"]} for s in seeds]
        drops[kind] = {metric: statistics.mean(d[metric] for d in per_seed) for metric in per_seed[0]}
    payload = run_payload("qat", setup, teacher_info, data, rows, finetune_steps=steps, finetune_lr=setup.teacher_lr,
                          finetune_distillation=False, from_base=True, seeds=seeds, paired_mean_drops=drops,
                          note=f"every row fine-tuned from pretrained MiniLM for {steps} steps at lr "
                               f"{setup.teacher_lr}, batch 32, no distillation, last step kept; drops paired per "
                               "seed against that seed's float fine-tune")
    save_run(payload, tag)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["mrpc", "sst2"])
    parser.add_argument("--steps", type=int, default=None,
                        help="fine-tuning steps of every trained row (default 120; --from_base: the teacher's epochs)")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--tag", default="", help="suffix of the results files")
    parser.add_argument("--from_base", action="store_true", help="QAT as the task fine-tune itself (see above)")
    options = parser.parse_args()
    if options.from_base:
        for task_name in options.tasks:
            run_from_base(task_name, options.seeds, options.tag, options.steps)
        raise SystemExit(0)
    # ONNX exports stay in the cache (not committed) beside the kept torch models: quantization.py re-times them.
    for task_name in options.tasks:
        run_task(task_name, options.steps or 120, options.lr, options.seeds, options.tag, CACHE / "qat" / task_name)
