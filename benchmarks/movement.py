"""Movement pruning benchmark: magnitude vs hard vs soft movement, and structured movement.

For each task, in one run, starting from the fine-tuned teacher with the same steps and learning
rates: magnitude pruning, hard movement (topK) and soft movement (sigmoied_threshold) at 10% and
3% remaining encoder weights, and structured (heads + FFN neurons) movement at 50%. Soft
movement does not target a fraction directly: its actual remaining fraction is reported.

    python benchmarks/movement.py --tasks sst2 mrpc --epochs 2
"""

from __future__ import annotations

import argparse
import copy
import math


from common import RESULTS, TASK_SETUPS, get_teacher, load_data, training_args

from hfcompress import CompressionTrainer, DistillationConfig, MovementPruningConfig, get_record
from hfcompress.benchmark import add_ratios, benchmark_model, format_table, hardware, write_results
from hfcompress.data import get_task
from hfcompress.finetune import build_trainer


def variants():
    common = dict(initial_warmup=0.1, final_warmup=0.2, scores_learning_rate=1e-2)
    out = {}
    for remaining in (0.10, 0.03):
        tag = f"{int(remaining * 100)}%"
        out[f"magnitude {tag}"] = MovementPruningConfig(method="magnitude", final_remaining=remaining, **common)
        out[f"hard movement {tag}"] = MovementPruningConfig(method="topK", final_remaining=remaining, **common)
    out["soft movement (lambda 1)"] = MovementPruningConfig(method="sigmoied_threshold", initial_threshold=0.0,
                                                            final_threshold=0.1, regularization_lambda=1.0, **common)
    out["structured movement 50% (heads + FFN rows)"] = MovementPruningConfig(method="topK", granularity="row",
                                                                            final_remaining=0.5, **common)
    return out


def run_task(task: str, epochs: float, lr: float, seed: int, distill: bool) -> None:
    setup = TASK_SETUPS[task]
    spec = get_task(task)
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    steps = math.ceil(data["train"].num_rows / 32 * epochs)
    rows = [benchmark_model("teacher", teacher, eval_dataset=data["validation"], task=task)]
    for name, config in variants().items():
        args = training_args(f"movement-{task}", steps, lr, seed)
        trainer = build_trainer(copy.deepcopy(teacher), tokenizer, task, args, data["train"],
                                trainer_cls=CompressionTrainer, compression=[config],
                                teacher=copy.deepcopy(teacher) if distill else None,
                                distillation=DistillationConfig() if distill else None)
        trainer.train()
        model = trainer.model
        remaining = next(s["remaining"] for s in get_record(model).steps if s["method"] == "movement")
        rows.append(benchmark_model(name, model, eval_dataset=data["validation"], task=task,
                                    extra={"remaining_encoder_weights": remaining}))
        print(f"[{task}] {name}: {rows[-1]['score']:.4f}, remaining {remaining:.3f}", flush=True)
    add_ratios(rows, "teacher")
    payload = {
        "benchmark": "movement", "task": task, "metric": spec.main_metric,
        "model": "all-MiniLM-L6-v2 fine-tuned (benchmarks/common.py teacher)", "teacher": teacher_info,
        "data": {"train_rows": data["train"].num_rows, "dev_rows": data["validation"].num_rows,
                 "max_length": setup.max_length},
        "steps": steps, "learning_rate": lr, "distillation": distill, "seed": seed, "rows": rows,
        "hardware": hardware(),
        "note": "sizes are the dense save_pretrained files (pruned weights stored as zeros)",
    }
    write_results(payload, RESULTS / f"movement_{task}.json", RESULTS / f"movement_{task}.md")
    print(format_table(rows, spec.main_metric), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--distill", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    for task_name in options.tasks:
        run_task(task_name, options.epochs, options.lr, options.seed, options.distill)
