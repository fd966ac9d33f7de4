"""Structured pruning benchmark: attention heads and FFN neurons by importance, real MiniLM-L6.

For each task, in one run: the fine-tuned teacher; 25/50/75% of heads removed; 25/50% of FFN
neurons removed; 50% heads + 50% FFN; each measured right after pruning and after a short
fine-tune (same steps and learning rate for every variant). Importance uses 32 training
batches. Writes which heads were removed and a heat map of head importance per layer.

    python benchmarks/structured.py --tasks sst2 mrpc
    # Iterative: remove the share in 3 rounds inside the fine-tune (steps 0, 1/4, 1/2), importance
    # recomputed each round, then fine-tune the rest of the steps.
    python benchmarks/structured.py --tasks sst2 --finetune_steps 300 --iterations 3 --distill --tag _iterative
"""

from __future__ import annotations

import copy
import math


from common import (benchmark_parser, run_payload, save_run, RESULTS, TASK_SETUPS, get_teacher, keep_variant, load_data, teacher_dir,
                    shown_path, train_batches, training_args)

from hfcompress import (CompressionTrainer, DistillationConfig, FFNPruningConfig, HeadPruningConfig,
                        IterativePruningCallback, compress, get_record)
from hfcompress.benchmark import add_ratios, benchmark_rows
from hfcompress.finetune import build_trainer

VARIANTS = {
    "heads 25%": [HeadPruningConfig(target=0.25)],
    "heads 50%": [HeadPruningConfig(target=0.5)],
    "heads 75%": [HeadPruningConfig(target=0.75)],
    "ffn 25%": [FFNPruningConfig(target=0.25)],
    "ffn 50%": [FFNPruningConfig(target=0.5)],
    "heads 50% + ffn 50%": [HeadPruningConfig(target=0.5), FFNPruningConfig(target=0.5)],
}


def heatmap(importance, removed, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    image = axis.imshow(importance, cmap="viridis", aspect="auto")
    for layer, heads in removed.items():
        for head in heads:
            axis.text(head, layer, "x", ha="center", va="center", color="white")
    axis.set_xlabel("head")
    axis.set_ylabel("layer")
    axis.set_title(title)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_task(task: str, finetune_epochs: float, lr: float, seed: int, finetune_steps: int | None = None,
             names: list[str] | None = None, distill: bool = False, tag: str = "", iterations: int = 1) -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    def loader():
        return train_batches(data["train"], tokenizer, seed)

    steps = finetune_steps or math.ceil(data["train"].num_rows / 32 * finetune_epochs)
    entries = [{"name": "teacher (12 heads x 6 layers, FFN 1536)", "model": teacher,
                "extra": {"model_dir": shown_path(teacher_dir(task))}}]
    removed_heads = {}
    # Rounds at steps 0, s/(n+1), ..., so the last round still gets half the steps or more.
    prune_every = steps // (iterations + 1)
    prune_steps = [prune_every * r for r in range(iterations)] if iterations > 1 else None
    for name, configs in VARIANTS.items():
        if names and name not in names:
            continue
        model = copy.deepcopy(teacher)
        configs = [copy.deepcopy(config) for config in configs]
        callbacks = []
        for config in configs:
            config.max_batches = 32
            config.iterations = iterations
            if iterations == 1:
                compress(model, config, dataloader=loader())
            else:
                callbacks.append(IterativePruningCallback(config, loader(), prune_every=prune_every))
        args = training_args(f"structured-{task}", steps, lr, seed)
        kd = dict(trainer_cls=CompressionTrainer, teacher=teacher, distillation=DistillationConfig()) if distill else {}
        trainer = build_trainer(model, tokenizer, task, args, data["train"], callbacks=callbacks, **kd)
        if iterations == 1:
            entries.append(keep_variant("structured" + tag, task, f"{name}, no fine-tune", copy.deepcopy(model)))
        trainer.train()
        model = trainer.model
        record = [s for s in get_record(model).steps if s["method"] == "heads"]
        if record:
            kept = record[-1]["shape"]["kept_heads"]
            removed = {layer: [h for h in range(12) if h not in keep] for layer, keep in enumerate(kept)}
            removed_heads[name] = removed
            if name == "heads 50%":
                heatmap(record[-1]["info"]["importance"], removed, RESULTS / f"structured_{task}_head_importance.png",
                        f"{task}: head importance (x = removed at 50%)")
        finetuned = f"{name} + " + (f"{iterations}-round iterative " if iterations > 1 else "") + "fine-tune" + \
            (" with KD" if distill else "")
        entries.append(keep_variant("structured" + tag, task, finetuned, model))
        print(f"[{task}] {name}: pruned and fine-tuned", flush=True)
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task)
    add_ratios(rows, rows[0]["name"])
    payload = run_payload(
        "structured", setup, teacher_info, data, rows, importance_batches=32, finetune_steps=steps,
        finetune_distillation=distill, finetune_lr=lr, iterations=iterations, prune_steps=prune_steps, seed=seed,
        removed_heads=removed_heads)
    save_run(payload, tag)


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=1,
                        help="prune in this many rounds during the fine-tune (importance recomputed each round)")
    options = parser.parse_args()
    for task_name in options.tasks:
        run_task(task_name, options.finetune_epochs, options.lr, options.seed, options.finetune_steps,
                 options.variants, options.distill, options.tag, options.iterations)
