"""BERT-of-Theseus benchmark: real fine-tuned teachers, real GLUE/CLUE data, baselines in the same run.

For each task: the fine-tuned teacher (MiniLM-L6 by default; HFCOMPRESS_BENCH_MODEL=mpnet-base for the 12-layer
all-mpnet-base-v2); successors of ``--layers`` layers (default: half the teacher's) trained with Theseus
(constant and linear schedules, optionally with distillation from the predecessor); and the
baseline a user would otherwise pick, the teacher's first k layers fine-tuned for the same
number of steps. Every trained variant gets the same step budget and the same learning-rate
grid; the best dev score of each is reported (with the grid's other scores in the JSON).

    python benchmarks/theseus.py --tasks sst2 mrpc rte tnews --lrs 5e-5 1e-4
    HFCOMPRESS_BENCH_MODEL=mpnet-base python benchmarks/theseus.py --tasks mrpc --layers 4 --lrs 1e-4 --tag _4l \
        --variants "first-4-layers (baseline)" "theseus constant"
    python benchmarks/theseus.py --tasks sst2 --epochs 3 --lrs 1e-4 --tag _3ep \\
        --variants "first-3-layers (baseline)" "theseus constant" "theseus constant + KD"
Results: benchmarks/results/theseus_<task>[_mpnet]<tag>.json; benchmarks/make_results.py writes RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch
from torch import nn

from common import (BASE, CACHE, MODEL_NOTE, RESULTS, TASK_SETUPS, get_teacher, load_data, shown_path, teacher_dir,
                    training_args)

from hfcompress import CompressionTrainer, DistillationConfig, TheseusConfig, get_adapter
from hfcompress.benchmark import add_ratios, benchmark_rows, format_table, hardware, write_results
from hfcompress.data import get_task
from hfcompress.finetune import build_trainer

BUDGET_EPOCHS = {"sst2": 1, "mrpc": 3, "rte": 3, "tnews": 1, "iflytek": 4}


def first_layers(model, k: int):
    """The baseline: the teacher truncated to its first k layers (a standard smaller model)."""
    small = copy.deepcopy(model)
    adapter = get_adapter(small)
    adapter.set_layers(small, nn.ModuleList(list(adapter.layers(small))[:k]))
    return small


def train_variant(name, model, tokenizer, setup, data, steps, lr, seed, compression=None, teacher=None,
                  distillation=None):
    args = training_args(f"theseus-{setup.task}-{name}-{lr}", steps, lr, seed)
    kwargs = {}
    if compression is not None or teacher is not None:
        kwargs = dict(trainer_cls=CompressionTrainer, compression=compression or [], teacher=teacher,
                      distillation=distillation if teacher is not None else None)
    trainer = build_trainer(model, tokenizer, setup.task, args, data["train"], data["validation"], **kwargs)
    started = time.time()
    trainer.train()
    metrics = trainer.evaluate()
    return trainer.model, metrics, time.time() - started


def successor_dir(task: str, name: str, tag: str = "") -> Path:
    return CACHE / "theseus" / f"{task}{BASE.results_suffix}{tag}" / name.replace(" ", "_").replace(",", "").replace("+", "plus")


LOGIT_KD = DistillationConfig(temperature=2.0, alpha=0.5)
# Logits plus every successor layer's output against the predecessor's output at the same depth.
HIDDEN_KD = DistillationConfig(temperature=2.0, alpha=0.5, hidden_weight=1.0)


def variants(steps: int, k: int = 3) -> dict[str, tuple[list | None, DistillationConfig | None]]:
    """name -> (Theseus configs, or None for the truncated baseline; distillation from the teacher or None), for
    successors of ``k`` layers."""
    half = steps // 2
    # Linear: p goes from 0.3 to 1 over the first half, as the constant schedule's stage 1.
    linear_k = 0.7 / max(1, half)

    def constant(**overrides):
        settings = dict(successor_layers=k, replacing_rate=0.5, steps_for_replacing=half, successor_init="block_last")
        return [TheseusConfig(**{**settings, **overrides})]

    return {
        f"first-{k}-layers (baseline)": (None, None),
        "theseus constant": (constant(), None),
        "theseus linear": ([TheseusConfig(successor_layers=k, scheduler="linear", replacing_rate=0.3,
                                          scheduler_linear_k=linear_k, successor_init="block_last")], None),
        "theseus constant + KD": (constant(), LOGIT_KD),
        "theseus constant, init=first": (constant(successor_init="first"), None),
        # Two ways to spend less of the budget with the embeddings and classifier frozen.
        "theseus constant, replacing 25%": (constant(steps_for_replacing=steps // 4), None),
        "theseus constant, all trained in replacing": (constant(train_classifier_in_replacing=True), None),
        "theseus constant + KD (hidden states)": (constant(), HIDDEN_KD),
        # Not a #4 baseline: shows how much of a KD variant's score is the distillation itself.
        f"first-{k}-layers + KD (hidden states)": (None, HIDDEN_KD),
    }


def run_task(task: str, lrs: list[float], names: list[str] | None, seed: int, tag: str = "",
             epochs: float | None = None, layers: int | None = None) -> None:
    setup = TASK_SETUPS[task]
    spec = get_task(task)
    teacher, tokenizer, teacher_info = get_teacher(setup, seed=42)
    data = load_data(setup, tokenizer, seed=42)
    steps = math.ceil(math.ceil(data["train"].num_rows / 32) * (epochs or BUDGET_EPOCHS[task]))
    depth = get_adapter(teacher).num_layers(teacher.config)
    k = layers or depth // 2
    if not 1 <= k < depth:
        raise SystemExit(f"--layers {k}: the teacher has {depth} layers; give 1 to {depth - 1}")
    known = variants(steps, k)
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown variants {unknown} for {k} layers; known: {sorted(known)}")
    grid: dict[str, dict] = {}
    models = {}
    for name, (compression, distillation) in known.items():
        if names and name not in names:
            continue
        for lr in lrs:
            key = f"{name} @ {lr:g}"
            torch.manual_seed(seed)
            start = first_layers(teacher, k) if compression is None else copy.deepcopy(teacher)
            kd_teacher = copy.deepcopy(teacher) if distillation is not None else None
            model, metrics, seconds = train_variant(f"{len(grid)}", start, tokenizer, setup, data, steps, lr, seed,
                                                    copy.deepcopy(compression), kd_teacher, distillation)
            score = metrics[f"eval_{spec.main_metric}"]
            grid[key] = {"name": name, "lr": lr, "score": score, "train_seconds": seconds}
            print(f"[{task}] {key}: {spec.main_metric}={score:.4f} ({seconds:.0f}s)", flush=True)
            best = max((g for g in grid.values() if g["name"] == name), key=lambda g: g["score"])
            if best["lr"] == lr:
                models[name] = model
            _save(task, setup, teacher_info, data, steps, seed, grid, rows=None, tag=tag)
    teacher_name = f"teacher ({depth} layers)"
    entries = [{"name": teacher_name, "model": teacher,
                "extra": {"model_dir": shown_path(teacher_dir(task))}}]
    for name, model in models.items():
        best = max((g for g in grid.values() if g["name"] == name), key=lambda g: g["score"])
        # Kept (not committed) for re-timing on a quiet machine and for later benchmarks (int8 of a successor).
        folder = successor_dir(task, name, tag)
        model.save_pretrained(folder)
        entries.append({"name": name, "model": model,
                        "extra": {"learning_rate": best["lr"], "model_dir": shown_path(folder)}})
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task)
    add_ratios(rows, teacher_name)
    _save(task, setup, teacher_info, data, steps, seed, grid, rows, tag=tag)
    print(format_table(rows, spec.main_metric), flush=True)


def _save(task, setup, teacher_info, data, steps, seed, grid, rows, tag=""):
    payload = {
        "benchmark": "theseus",
        "task": task,
        "metric": get_task(task).main_metric,
        "model": MODEL_NOTE,
        "data": {"train_rows": data["train"].num_rows, "dev_rows": data["validation"].num_rows,
                 "max_length": setup.max_length, "train_subset_of": setup.train_rows,
                 "dev_split": setup.dev_split},
        "teacher": teacher_info,
        "steps": steps,
        "batch_size": 32,
        "seed": seed,
        "tag": tag,
        "grid": grid,
        "rows": rows or [],
        "hardware": hardware(),
        "latency": "all models timed in alternation, median of 30 rounds after 5 warm-up passes, seq 128, 2 threads",
    }
    stem = f"theseus_{task}{BASE.results_suffix}{tag}"
    write_results(payload, RESULTS / f"{stem}.json", RESULTS / f"{stem}.md" if rows else None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "rte", "tnews"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[5e-5, 1e-4])
    parser.add_argument("--variants", nargs="*", default=None, help="subset of variant names")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tag", default="", help="suffix of the results files and successor cache: a run with "
                                                  "--variants or --epochs does not overwrite the full table")
    parser.add_argument("--epochs", type=float, default=None, help="step budget in epochs (default: BUDGET_EPOCHS)")
    parser.add_argument("--layers", type=int, default=None, help="successor layers (default: half the teacher's)")
    options = parser.parse_args()
    if (options.variants or options.epochs) and not options.tag:
        parser.error("--variants / --epochs make a partial or different run: give it a --tag")
    for task_name in options.tasks:
        run_task(task_name, options.lrs, options.variants, options.seed, options.tag, options.epochs, options.layers)
