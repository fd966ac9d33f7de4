"""Movement pruning benchmark: magnitude vs hard vs soft movement, and structured movement.

For each task, in one run, starting from the fine-tuned teacher with the same steps and learning
rates: magnitude pruning, hard movement (topK) and soft movement (sigmoied_threshold with one global cutoff that follows
the same cubic schedule, ``target_remaining=True``) at 10% and 3% remaining encoder weights, and
structured (heads + FFN neurons) movement at 50%. Element-level results are also saved in the
compact sparse form, reloaded with the Auto class and checked against the dense logits.

    python benchmarks/movement.py --tasks sst2 mrpc --epochs 2
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from common import (benchmark_parser, run_payload, save_run, CACHE, TASK_SETUPS, get_teacher, keep_variant, load_data, slug,
                    shown_path, teacher_dir, training_args)

from hfcompress import CompressionTrainer, DistillationConfig, MovementPruningConfig, get_record, store_sparse
from hfcompress.benchmark import add_ratios, benchmark_rows, weights_size_bytes
from hfcompress.finetune import build_trainer


def _movement_methods(remaining: float) -> dict[str, dict]:
    """Hard and soft movement settings at one remaining fraction (without warm-up or score init)."""
    return {"hard movement": dict(pruning_method="topK", final_remaining=remaining),
            "soft movement": dict(pruning_method="sigmoied_threshold", target_remaining=True, final_remaining=remaining,
                                  regularization_lambda=1.0)}


def variants():
    common = dict(initial_warmup=0.1, final_warmup=0.2, scores_learning_rate=1e-2)
    structured = dict(pruning_method="topK", granularity="row", final_remaining=0.5)
    levels = {f"{int(remaining * 100)}%": remaining for remaining in (0.10, 0.03)}
    out = {}
    for tag, remaining in levels.items():
        out[f"magnitude {tag}"] = MovementPruningConfig(pruning_method="magnitude", final_remaining=remaining, **common)
        for name, settings in _movement_methods(remaining).items():
            out[f"{name} {tag}"] = MovementPruningConfig(**settings, **common)
    out["structured movement 50% (heads + FFN rows)"] = MovementPruningConfig(**structured, **common)
    # The same methods with scores starting from |W| instead of zeros (scores_init="magnitude"):
    # at a few hundred steps the zero start prunes nearly at random (see RESULTS.md).
    warm = dict(common, scores_init="magnitude")
    for tag, remaining in levels.items():
        for name, settings in _movement_methods(remaining).items():
            out[f"{name} {tag}, magnitude init"] = MovementPruningConfig(**settings, **warm)
    out["structured movement 50%, magnitude init"] = MovementPruningConfig(**structured, **warm)
    return out


def sparse_form(model, folder: Path, dev_inputs: dict) -> dict:
    """Save the compact sparse form, reload it with the Auto class and compare logits."""
    sparse = store_sparse(copy.deepcopy(model))
    sparse.save_pretrained(folder)
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    model.eval()
    with torch.inference_mode():
        difference = (loaded(**dev_inputs).logits - model(**dev_inputs).logits).abs().max().item()
    return {"sparse_size_bytes": weights_size_bytes(folder), "sparse_reload_max_abs_logit_diff": difference}


def run_task(task: str, epochs: float, lr: float, seed: int, distill: bool, steps: int | None = None,
             names: list[str] | None = None, tag: str = "") -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    steps = steps or math.ceil(data["train"].num_rows / 32 * epochs)
    model_inputs = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in data["validation"].column_names]
    dev_inputs = DataCollatorWithPadding(tokenizer)(
        [{c: row[c] for c in model_inputs} for row in data["validation"].select(range(8))])
    entries = [{"name": "teacher", "model": teacher,
                "extra": {"model_dir": shown_path(teacher_dir(task)), "remaining_encoder_weights": 1.0}}]
    for name, config in variants().items():
        if names and name not in names:
            continue
        args = training_args(f"movement-{task}", steps, lr, seed)
        trainer = build_trainer(copy.deepcopy(teacher), tokenizer, task, args, data["train"],
                                trainer_cls=CompressionTrainer, compression=[config],
                                teacher=copy.deepcopy(teacher) if distill else None,
                                distillation=DistillationConfig() if distill else None)
        trainer.train()
        model = trainer.model
        remaining = next(s["info"]["remaining"] for s in get_record(model).steps if s["method"] == "movement")
        extra = {"remaining_encoder_weights": remaining}
        if config.granularity == "element":
            extra.update(sparse_form(model, CACHE / "movement" / task / (slug(name) + "-sparse"), dev_inputs))
        entries.append(keep_variant("movement", task, name, model, extra))
        print(f"[{task}] {name}: remaining {remaining:.3f}", flush=True)
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task)
    add_ratios(rows, "teacher")
    payload = run_payload(
        "movement", setup, teacher_info, data, rows, steps=steps, learning_rate=lr, scores_learning_rate=1e-2,
        distillation=distill, seed=seed,
        note=("size_bytes: the dense save_pretrained file (pruned weights stored as zeros); sparse_size_bytes: "
              "the same model after store_sparse (kept values + 1 bit per encoder weight), reloaded with "
              "AutoModelForSequenceClassification and compared on 8 dev rows. Unstructured sparsity runs on "
              "dense kernels: no speedup is expected from it."))
    save_run(payload, tag)


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, list(variants()), epochs=2.0, epochs_flag="epochs", steps_flag="steps",
                              distill_help="fine-tune with distillation from the teacher")
    options = parser.parse_args()
    for task_name in options.tasks:
        run_task(task_name, options.epochs, options.lr, options.seed, options.distill, options.steps,
                 options.variants, options.tag)
