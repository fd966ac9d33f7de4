"""Run by tests/test_resume.py in a subprocess: a short training run of one method, saving checkpoints, that the
test kills after a checkpoint and starts again with ``--resume``. Writes the final model to OUT/final."""

import argparse
import sys

import torch
from transformers import AutoModelForSequenceClassification, BertConfig, TrainingArguments

from hfcompress import CompressionTrainer, LowRankConfig, QuantAwareConfig, WeightSharingConfig

METHODS = {
    "qat": lambda: [QuantAwareConfig(backend="torch")],
    "sharing": lambda: [WeightSharingConfig(group_size=2, pattern="cycle")],
    "lowrank": lambda: [LowRankConfig(param_ratio=0.5)],
}

parser = argparse.ArgumentParser()
parser.add_argument("method", choices=list(METHODS))
parser.add_argument("out")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--steps", type=int, default=16)
parser.add_argument("--save_steps", type=int, default=4)
options = parser.parse_args()

torch.manual_seed(0)
config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                    num_labels=3, max_position_embeddings=64)
model = AutoModelForSequenceClassification.from_config(config)
generator = torch.Generator().manual_seed(1)
ids = torch.randint(5, 110, (64, 12), generator=generator)
labels = torch.randint(0, 3, (64,), generator=generator)
rows = [{"input_ids": ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": labels[i]}
        for i in range(64)]
args = TrainingArguments(f"{options.out}/run", max_steps=options.steps, per_device_train_batch_size=8,
                         learning_rate=5e-3, save_strategy="steps", save_steps=options.save_steps, report_to=[],
                         use_cpu=True, seed=0, data_seed=0)
trainer = CompressionTrainer(model=model, args=args, train_dataset=rows, compression=METHODS[options.method]())
trainer.train(resume_from_checkpoint=True if options.resume else None)
trainer.model.save_pretrained(f"{options.out}/final")
print("finished", file=sys.stderr)
