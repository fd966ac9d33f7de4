#!/usr/bin/env python
"""Pruning on a GLUE or CLUE task: movement pruning while fine-tuning, or heads/FFN by importance.

    # movement (topK | threshold | sigmoied_threshold | magnitude), flags of MovementPruningConfig
    python scripts/prune_glue.py --method topK --final_remaining 0.1 --model_name_or_path M --task_name sst2 \
        --output_dir out/movement --num_train_epochs 10
    # heads / ffn by importance (flags of HeadPruningConfig / FFNPruningConfig), then fine-tune
    python scripts/prune_glue.py --method heads --target 0.5 --model_name_or_path M --task_name mrpc \
        --output_dir out/heads --num_train_epochs 1
    # either, with distillation from the unpruned model: --distill [--distill_alpha 0.5 --distill_temperature 2]

Flags: TrainingArguments, TaskArguments and DistillArguments (hfcompress.scripting) and the method's config.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys

from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments, set_seed

from hfcompress import CompressionTrainer, FFNPruningConfig, HeadPruningConfig, MovementPruningConfig, compress
from hfcompress.finetune import build_trainer
from hfcompress.hub import build_model_card
from hfcompress.scripting import (DistillArguments, TaskArguments, load_predecessor, load_tokenized,
                                  parse_with_recipe, report)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--method", default="topK")
    known, _ = selector.parse_known_args()
    importance = {"heads": HeadPruningConfig, "ffn": FFNPruningConfig}.get(known.method)
    argv = sys.argv[1:]
    if importance is not None:  # --method picks the config class here; it is not one of its fields
        at = argv.index("--method")
        argv = argv[:at] + argv[at + 2:]
    config_cls = importance or MovementPruningConfig
    task_args, config, distill, training = parse_with_recipe(
        (TaskArguments, config_cls, DistillArguments, TrainingArguments), argv)
    set_seed(training.seed)
    tokenizer = AutoTokenizer.from_pretrained(task_args.model_name_or_path)
    data = load_tokenized(task_args, tokenizer, training.seed)
    teacher = load_predecessor(task_args, training, tokenizer, data)
    model = copy.deepcopy(teacher)
    kd = distill.trainer_kwargs(copy.deepcopy(teacher).eval())

    if importance is not None:
        loader = DataLoader(data["train"].rename_column("label", "labels"), batch_size=training.per_device_train_batch_size,
                            shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))
        config.max_batches = config.max_batches or 32
        compress(model, config, dataloader=loader)
        if training.num_train_epochs > 0 or training.max_steps > 0:
            build_trainer(model, tokenizer, task_args.task_name, training, data["train"], data["validation"],
                          trainer_cls=CompressionTrainer, **kd).train()
    else:
        trainer = build_trainer(model, tokenizer, task_args.task_name, training, data["train"], data["validation"],
                                trainer_cls=CompressionTrainer, compression=[config], **kd)
        trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
        model = trainer.model
    pruned_dir = os.path.join(training.output_dir, "pruned")
    model.save_pretrained(pruned_dir)
    tokenizer.save_pretrained(pruned_dir)
    # A recipe's method reaches the config, not the selector: name the row from what ran.
    label = f"pruned ({known.method if importance is not None else config.method})"
    results = report([("unpruned", teacher), (label, model)], data, task_args,
                     training.output_dir, baseline="unpruned", extra={"pruning": config.to_dict()})
    build_model_card(pruned_dir, results=results, base_model=task_args.model_name_or_path).save(
        os.path.join(pruned_dir, "README.md"))


if __name__ == "__main__":
    main()
