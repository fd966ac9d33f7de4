#!/usr/bin/env python
"""BERT-of-Theseus on a GLUE or CLUE task: (fine-tune the predecessor,) compress it, print the table.

    python scripts/theseus_glue.py --model_name_or_path bert-base-uncased --task_name mrpc \
        --teacher_epochs 3 --successor_layers 6 --replacing_rate 0.3 --scheduler_type linear \
        --scheduler_linear_k 0.0006 --output_dir out/mrpc --num_train_epochs 5
    python scripts/theseus_glue.py --config configs/theseus_glue.yaml --model_name_or_path M --task_name rte

Flags: TrainingArguments, TaskArguments (hfcompress.scripting), TheseusConfig, and distillation.
"""

from __future__ import annotations

import copy
import logging
import os

from transformers import AutoTokenizer, TrainingArguments, set_seed

from hfcompress import CompressionTrainer, TheseusConfig
from hfcompress.atomic import writing_folder
from hfcompress.finetune import build_trainer
from hfcompress.hub import build_model_card, push_to_hub
from hfcompress.scripting import DistillArguments, TaskArguments, load_predecessor, load_tokenized, parse_with_recipe, print_produced, quiet_libraries, report


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("hfcompress").setLevel(logging.INFO)  # our one line per stage; the libraries stay quiet
    quiet_libraries()
    task_args, theseus, distill, training = parse_with_recipe(
        (TaskArguments, TheseusConfig, DistillArguments, TrainingArguments)
    )
    set_seed(training.seed)
    # We push the exported successor with its card ourselves, not the Trainer's checkpoints.
    push, training.push_to_hub = training.push_to_hub, False
    tokenizer = AutoTokenizer.from_pretrained(task_args.model_name_or_path)
    data = load_tokenized(task_args, tokenizer, training.seed)
    predecessor = load_predecessor(task_args, training, tokenizer, data)
    layers = predecessor.config.num_hidden_layers
    teacher = copy.deepcopy(predecessor).eval()

    trainer = build_trainer(
        predecessor, tokenizer, task_args.task_name, training, data["train"], data["validation"],
        trainer_cls=CompressionTrainer,
        compression=[theseus],
        **distill.trainer_kwargs(teacher),
    )
    trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
    successor = trainer.model
    successor_dir = os.path.join(training.output_dir, "successor")
    with writing_folder(successor_dir) as partial:  # a killed save leaves the previous successor, not half of one
        trainer.save_model(str(partial))
        tokenizer.save_pretrained(partial)
    results = report(
        [(f"predecessor ({layers} layers)", teacher), (f"theseus ({theseus.successor_layers} layers)", successor)],
        data, task_args, training.output_dir, baseline=f"predecessor ({layers} layers)",
        extra={"theseus": theseus.to_dict(), "distillation": vars(distill), "successor_dir": successor_dir},
    )
    card = build_model_card(successor_dir, results=results, base_model=task_args.model_name_or_path)
    card.save(os.path.join(successor_dir, "README.md"))
    if push:
        repo_id = training.hub_model_id or os.path.basename(os.path.abspath(training.output_dir))
        print(push_to_hub(successor_dir, repo_id, card=card, token=training.hub_token,
                          private=training.hub_private_repo))
    print_produced(successor_dir, training.output_dir, task_args)


if __name__ == "__main__":
    main()
