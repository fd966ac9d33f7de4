#!/usr/bin/env python
"""Retraining-free structured pruning against one-shot importance pruning, real MiniLM-L6, one run per task.

Rows, all measured in this run: the fine-tuned teacher; today's one-shot heads 50% + FFN 50% by gate-gradient
importance (no fine-tune); Fisher mask search at kept head+FFN FLOPs 0.5 without reconstruction (ablation);
Fisher + least-squares reconstruction at kept FLOPs 0.6 / 0.5 / 0.4 (no fine-tuning); and the same three
followed by a short distilled fine-tune. Every pruning sees the same calibration rows (8 batches of 32 training
rows, labels used); its wall time on this machine is recorded as `prune_seconds`.

    python benchmarks/retraining_free.py --tasks sst2 mrpc
    python benchmarks/retraining_free.py --tasks sst2 --finetune_steps 200
    python benchmarks/retraining_free.py --tasks sst2 --variants one-shot "fisher+reconstruct 0.5" \
        --calibration_batches 32 --tag _1024rows

Writes results/retraining_free_<task><tag>.json/.md.
"""

from __future__ import annotations

import copy
import time

from common import (benchmark_parser, get_teacher, keep_variant, load_data, run_payload, save_run, TASK_SETUPS,
                    train_batches, training_args)

from hfcompress import (CompressionTrainer, DistillationConfig, FFNPruningConfig, HeadPruningConfig,
                        StructuredPruningConfig, compress, get_record)
from hfcompress.benchmark import add_ratios, benchmark_rows
from hfcompress.finetune import build_trainer

CALIBRATION_BATCHES = 8  # x 32 rows = 256 calibration rows
LEVELS = (0.6, 0.5, 0.4)
VARIANTS = ["one-shot", "fisher", *[f"fisher+reconstruct {k}" for k in LEVELS], *[f"+ KD {k}" for k in LEVELS]]


def run_task(task: str, steps: int, lr: float, seed: int, names: list[str] | None, tag: str,
             calibration_batches: int = CALIBRATION_BATCHES) -> None:
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
                                                                "calibration_rows", "seq_length")}

    wanted = set(names or VARIANTS)
    entries = [{"name": "teacher (fine-tuned MiniLM-L6)", "model": teacher}]
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
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task)
    add_ratios(rows, rows[0]["name"])
    payload = run_payload("retraining_free", setup, teacher_info, data, rows, calibration_rows=32 * calibration_batches,
                          finetune_steps=steps, finetune_lr=lr, seed=seed,
                          note="kept FLOPs count the encoder's attention heads and FFN neurons at the calibration "
                               "rows' mean length; no row but the '+ KD' ones saw any training step")
    save_run(payload, tag)


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, VARIANTS)
    parser.add_argument("--calibration_batches", type=int, default=CALIBRATION_BATCHES, help="batches of 32 rows")
    options = parser.parse_args()
    for task_name in options.tasks:
        run_task(task_name, options.finetune_steps or 200, options.lr, options.seed, options.variants, options.tag,
                 options.calibration_batches)
