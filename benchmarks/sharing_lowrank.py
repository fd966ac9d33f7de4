"""Weight sharing and low-rank benchmark on real MiniLM-L6 teachers, each variant fine-tuned after.

For each task, in one run: the teacher; layers shared in groups of 2, 3 and 6 (init = group
mean); low-rank attention+FFN at 50% and 25% of their parameters (50% also with one global
budget, ranks per layer; 50% activation-aware: factors fitted to each layer's outputs on train
batches); every variant fine-tuned for
the same steps and learning rate, and measured before and after.

    python benchmarks/sharing_lowrank.py --tasks sst2 mrpc
    python benchmarks/sharing_lowrank.py --tasks sst2 --finetune_steps 400 --lr 1e-4 --distill --tag _kd \
        --variants "shared, groups of 2" "low-rank 50% (attention+FFN)"
"""

from __future__ import annotations

import copy
import math


from common import (benchmark_parser, run_payload, save_run, TASK_SETUPS, get_teacher, keep_variant, load_data, teacher_dir,
                    shown_path, train_batches, training_args)

from hfcompress import CompressionTrainer, DistillationConfig, LowRankConfig, WeightSharingConfig, compress
from hfcompress.benchmark import add_ratios, benchmark_rows
from hfcompress.finetune import build_trainer

VARIANTS = {
    "shared, groups of 2": WeightSharingConfig(group_size=2, init="mean"),
    # Shared linears fitted to both members' outputs on 32 train batches (RegMean), the rest the mean.
    "shared, groups of 2, RegMean init": WeightSharingConfig(group_size=2, init="regmean", max_batches=32),
    # Only the linears' weight matrices tied: each layer keeps its biases and LayerNorms (~5k parameters).
    "shared, groups of 2, RegMean init, own biases and LayerNorms": WeightSharingConfig(
        group_size=2, init="regmean", max_batches=32, linear_weights_only=True),
    # Cycle sharing (Takase & Kiyono 2021): pairs 3 layers apart, so the model runs its 3 unique layers twice in order.
    "shared, groups of 2 as cycle (0+3, 1+4, 2+5), RegMean init": WeightSharingConfig(
        group_size=2, pattern="cycle", init="regmean", max_batches=32),
    # ... starting from the teacher's first 3 layers (runs 0, 1, 2, 0, 1, 2): the first half is the truncated model.
    "shared, groups of 2 as cycle (0+3, 1+4, 2+5), first-layer init": WeightSharingConfig(
        group_size=2, pattern="cycle", init="first"),
    "shared, groups of 3": WeightSharingConfig(group_size=3, init="mean"),
    "shared, all 6 layers": WeightSharingConfig(group_size=6, init="mean"),
    "low-rank 50% (attention+FFN)": LowRankConfig(param_ratio=0.5),
    "low-rank 50%, global allocation": LowRankConfig(param_ratio=0.5, allocation="global"),
    "low-rank 25% (attention+FFN)": LowRankConfig(param_ratio=0.25),
    # Staged: factorize to 75%, fine-tune half the steps, factorize that to 50%, fine-tune the rest.
    "low-rank 50% in 2 stages (75% -> 50%)": [LowRankConfig(param_ratio=0.75), LowRankConfig(param_ratio=0.5)],
    # SVD of W S (S S^T = inputs' second moment on 32 train batches): fits outputs, not weights.
    "low-rank 50%, activation-aware": LowRankConfig(param_ratio=0.5, activation_aware=True, max_batches=32),
    "low-rank 50%, activation-aware, global allocation": LowRankConfig(param_ratio=0.5, activation_aware=True,
                                                                       max_batches=32, allocation="global"),
}


def encoder_params(model) -> int:
    """Parameters of the encoder layers, each shared tensor counted once."""
    return sum(p.numel() for n, p in model.named_parameters() if ".encoder." in n)


def run_task(task: str, finetune_epochs: float, lr: float, seed: int, finetune_steps: int | None = None,
             names: list[str] | None = None, tag: str = "", distill: bool = False, hidden_weight: float = 0.0) -> None:
    setup = TASK_SETUPS[task]
    teacher, tokenizer, teacher_info = get_teacher(setup)
    data = load_data(setup, tokenizer)
    steps = finetune_steps or math.ceil(data["train"].num_rows / 32 * finetune_epochs)
    entries = [{"name": "teacher", "model": teacher, "extra": {"model_dir": shown_path(teacher_dir(task)),
                                                            "encoder_params": encoder_params(teacher)}}]
    for name, config in VARIANTS.items():
        if names and name not in names:
            continue
        stages = config if isinstance(config, list) else [config]
        model = copy.deepcopy(teacher)
        for index, stage in enumerate(stages):
            calibration = train_batches(data["train"], tokenizer, seed) if stage.requires_dataloader else None
            model = compress(model, copy.deepcopy(stage), dataloader=calibration)
            if len(stages) == 1:  # a staged variant's first stage is not the model it names
                entries.append(keep_variant("sharing_lowrank", task, f"{name}, no fine-tune", copy.deepcopy(model),
                                            {"encoder_params": encoder_params(model)}))
            stage_steps = steps // len(stages) + (steps % len(stages) if index == len(stages) - 1 else 0)
            # A different seed per stage so later stages do not replay the first stage's batches.
            args = training_args(f"sharing-{task}", stage_steps, lr, seed + index)
            # The untied / full-rank teacher is the distillation teacher (#7: "optionally with distillation").
            kd = dict(trainer_cls=CompressionTrainer, teacher=teacher,
                      distillation=DistillationConfig(hidden_weight=hidden_weight)) if distill else {}
            build_trainer(model, tokenizer, task, args, data["train"], **kd).train()
        entries.append(keep_variant("sharing_lowrank", task, f"{name} + fine-tune", model,
                                    {"encoder_params": encoder_params(model)}))
        print(f"[{task}] {name}: compressed and fine-tuned", flush=True)
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task)
    add_ratios(rows, "teacher")
    encoder_bytes = 4 * sum(p.numel() for n, p in teacher.named_parameters() if ".encoder." in n)
    payload = run_payload(
        "sharing_lowrank", setup, teacher_info, data, rows, teacher_encoder_bytes=encoder_bytes,
        finetune_steps=steps, finetune_lr=lr, finetune_distillation=distill,
        finetune_hidden_weight=hidden_weight if distill else None, seed=seed)
    save_run(payload, tag)


if __name__ == "__main__":
    parser = benchmark_parser(__doc__, list(VARIANTS))
    parser.add_argument("--hidden_weight", type=float, default=0.0,
                        help="with --distill: weight of the layer-to-layer hidden-state MSE (0: logits only)")
    options = parser.parse_args()
    for task_name in options.tasks:
        run_task(task_name, options.finetune_epochs, options.lr, options.seed, options.finetune_steps,
                 options.variants, options.tag, options.distill, options.hidden_weight)
