#!/usr/bin/env python
"""Pruning on a GLUE or CLUE task: movement pruning while fine-tuning, or heads/FFN by importance.

    # movement (--pruning_method topK | threshold | sigmoied_threshold | magnitude), flags of MovementPruningConfig
    python scripts/prune_glue.py --method movement --pruning_method topK --final_remaining 0.1 \
        --model_name_or_path M --task_name sst2 --output_dir out/movement --num_train_epochs 10
    # heads / ffn by importance (flags of HeadPruningConfig / FFNPruningConfig), then fine-tune
    python scripts/prune_glue.py --method heads --target 0.5 --model_name_or_path M --task_name mrpc \
        --output_dir out/heads --num_train_epochs 1
    # either, with distillation from the unpruned model: --distill [--distill_alpha 0.5 --distill_temperature 2]

Flags: TrainingArguments, TaskArguments and DistillArguments (hfcompress.scripting) and the method's config.
``--method`` is the record name (movement | heads | ffn), as in ``config.json`` and every recipe.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import warnings

from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments, set_seed

from hfcompress import CompressionTrainer, FFNPruningConfig, HeadPruningConfig, MovementPruningConfig, compress
from hfcompress.methods.movement.config import PRUNING_METHODS
from hfcompress.atomic import writing_folder
from hfcompress.finetune import build_trainer
from hfcompress.hub import build_model_card
from hfcompress.scripting import (DistillArguments, TaskArguments, load_predecessor, load_tokenized,
                                  parse_with_recipe, print_produced, quiet_libraries,
                                  read_recipe, report)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("hfcompress").setLevel(logging.INFO)  # our one line per stage; the libraries stay quiet
    quiet_libraries()
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--method", default=None)
    known, argv = selector.parse_known_args(sys.argv[1:])
    recipe, _ = read_recipe(argv)
    method = known.method or recipe.get("method", "movement")
    if method in PRUNING_METHODS:  # the spelling of the last release: --method was movement's algorithm
        warnings.warn(f"--method {method} is now --method movement --pruning_method {method}; --method names the "
                      "record (movement | heads | ffn). The old spelling stops working in the next release.",
                      FutureWarning)
        argv, method = ["--pruning_method", method, *argv], "movement"
    classes = {"movement": MovementPruningConfig, "heads": HeadPruningConfig, "ffn": FFNPruningConfig}
    if method not in classes:
        raise SystemExit(f"--method must be one of {sorted(classes)} (movement's algorithm is --pruning_method); "
                         f"got {method!r}.")
    config_cls = classes[method]
    importance = config_cls if method != "movement" else None
    task_args, config, distill, training = parse_with_recipe(
        (TaskArguments, config_cls, DistillArguments, TrainingArguments), argv, skip=("method",))
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
    with writing_folder(pruned_dir) as partial:  # a killed save leaves the previous model, not half of one
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    label = f"pruned ({method if importance is not None else config.pruning_method})"
    results = report([("unpruned", teacher), (label, model)], data, task_args,
                     training.output_dir, baseline="unpruned", extra={"pruning": config.to_dict()})
    build_model_card(pruned_dir, results=results, base_model=task_args.model_name_or_path).save(
        os.path.join(pruned_dir, "README.md"))
    print_produced(pruned_dir, training.output_dir, task_args)


if __name__ == "__main__":
    main()
