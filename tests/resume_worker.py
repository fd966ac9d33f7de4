"""Run by tests/test_resume.py in a subprocess: a short training run of one method, saving checkpoints, that the
test kills after a checkpoint; the test then resumes it in its own process (``train(..., resume=True)``). Writes
each method's final model to OUT/METHOD/final (several methods in one process: the uninterrupted references, one
process start for all)."""

import argparse
import sys

import torch
from transformers import AutoModelForSequenceClassification, BertConfig, TrainingArguments

from hfcompress import (CompressionTrainer, FFNPruningConfig, HeadPruningConfig, IterativePruningCallback,
                        LowRankConfig, MovementPruningConfig, QuantAwareConfig, TheseusConfig, WeightSharingConfig)
from hfcompress.methods.movement.config import PRUNING_METHODS

METHODS = {
    **{f"movement-{method}": (lambda method=method: [MovementPruningConfig(
        pruning_method=method, final_remaining=0.5, initial_warmup=2, final_warmup=4,
        **({"regularization_lambda": 1.0} if method == "sigmoied_threshold" else {}))]) for method in PRUNING_METHODS},
    "iterative": lambda: [],
    "theseus": lambda: [TheseusConfig(successor_layers=2, replacing_rate=0.5, steps_for_replacing=8)],
    "qat": lambda: [QuantAwareConfig(backend="torch")],
    "sharing": lambda: [WeightSharingConfig(group_size=2, pattern="cycle")],
    "lowrank": lambda: [LowRankConfig(param_ratio=0.5)],
}


def train(method: str, out: str, resume: bool = False, steps: int = 16, save_steps: int = 4) -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, num_labels=3, max_position_embeddings=64)
    model = AutoModelForSequenceClassification.from_config(config)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 110, (64, 12), generator=generator)
    labels = torch.randint(0, 3, (64,), generator=generator)
    rows = [{"input_ids": ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": labels[i]}
            for i in range(64)]
    args = TrainingArguments(f"{out}/run", max_steps=steps, per_device_train_batch_size=8,
                             learning_rate=5e-3, save_strategy="steps", save_steps=save_steps, report_to=[],
                             use_cpu=True, seed=0, data_seed=0)
    callbacks = []
    if method == "iterative":  # rounds at steps 0, 5 and 10; importance on the same fixed batches every time
        batches = [{k: torch.stack([r[k] for r in rows[i:i + 8]]) for k in ("input_ids", "attention_mask", "labels")}
                   for i in (0, 8)]
        callbacks.append(IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=3),
                                                   FFNPruningConfig(target=0.5, iterations=3)], batches,
                                                  prune_every=5))
    trainer = CompressionTrainer(model=model, args=args, train_dataset=rows, compression=METHODS[method](),
                                 callbacks=callbacks)
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.model.save_pretrained(f"{out}/final")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("methods", nargs="+", choices=list(METHODS))
    parser.add_argument("--resume", action="store_true")
    options = parser.parse_args()
    for method in options.methods:
        train(method, f"{options.out}/{method}", options.resume)
    print("finished", file=sys.stderr)
