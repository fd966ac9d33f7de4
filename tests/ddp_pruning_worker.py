"""Run by tests/test_distributed.py, under torchrun (2 CPU processes, gloo) or alone: movement pruning or iterative
heads/FFN pruning for a few steps with the same global batch; each process saves its final state and its masks."""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, BertConfig, Trainer, TrainingArguments

from hfcompress import (CompressionTrainer, FFNPruningConfig, HeadPruningConfig, IterativePruningCallback,
                        MovementPruningConfig, get_record)

method, out = sys.argv[1], sys.argv[2]
world = int(os.environ.get("WORLD_SIZE", 1))
torch.manual_seed(0)
config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                    num_labels=3, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = AutoModelForSequenceClassification.from_config(config)
generator = torch.Generator().manual_seed(0)
rows = [{"input_ids": torch.randint(5, 120, (10,), generator=generator), "attention_mask": torch.ones(10, dtype=torch.long),
         "labels": torch.tensor(i % 3)} for i in range(64)]
args = TrainingArguments(out, max_steps=8, per_device_train_batch_size=8 // world, report_to=[], use_cpu=True,
                         save_strategy="no", learning_rate=0.05, seed=0, data_seed=0, train_sampling_strategy="sequential", optim="sgd",
                         **({"ddp_backend": "gloo"} if world > 1 else {}))
if method == "movement":
    compression = [MovementPruningConfig(pruning_method="topK", final_remaining=0.5, initial_warmup=1, final_warmup=2)]
    CompressionTrainer(model=model, args=args, train_dataset=rows, compression=compression).train()
else:
    # The importance batches are the same on every process (not the Trainer's shard): identical decisions.
    batches = [{k: torch.stack([r[k] for r in rows[i:i + 8]]) for k in ("input_ids", "attention_mask", "labels")}
               for i in (0, 8, 16)]
    callback = IterativePruningCallback([HeadPruningConfig(target=0.5, iterations=2),
                                         FFNPruningConfig(target=0.5, iterations=2)], batches, prune_every=4)
    # A plain Trainer scales a classifier's mean loss by the process count unless told not to (CompressionTrainer
    # does this itself): average_tokens_across_devices=False keeps the 2-process run equal to the 1-process one.
    args.average_tokens_across_devices = False
    Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback]).train()
rank = int(os.environ.get("RANK", 0))
record = get_record(model)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, os.path.join(out, f"rank{rank}.safetensors"),
          metadata={"world_size": str(world), "record": json.dumps([s["shape"] for s in record.steps], default=str)})
if torch.distributed.is_initialized():
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
