"""Run by tests/test_distributed.py under torchrun: Theseus on 2 CPU processes (gloo)."""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, BertConfig, Trainer, TrainingArguments

from hfcompress import TheseusCallback, TheseusConfig
from hfcompress.methods.theseus import TheseusLayers

draws = []
_draw = TheseusLayers.draw


def recording_draw(self):
    result = _draw(self)
    draws.append(result)
    return result


TheseusLayers.draw = recording_draw

out = sys.argv[1]
torch.manual_seed(0)
config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=6, num_attention_heads=4, intermediate_size=64,
                    num_labels=3, max_position_embeddings=64)
model = AutoModelForSequenceClassification.from_config(config)
generator = torch.Generator().manual_seed(0)
rows = [{"input_ids": torch.randint(5, 120, (10,), generator=generator), "attention_mask": torch.ones(10, dtype=torch.long),
         "labels": torch.tensor(i % 3)} for i in range(64)]
args = TrainingArguments(out, max_steps=6, per_device_train_batch_size=4, report_to=[], use_cpu=True,
                         save_strategy="no", learning_rate=1e-3, seed=0, ddp_backend="gloo")
callback = TheseusCallback(TheseusConfig(successor_layers=3, replacing_rate=0.5, steps_for_replacing=3))
Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback]).train()
rank = int(os.environ.get("RANK", 0))
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, os.path.join(out, f"rank{rank}.safetensors"), metadata={"world_size": os.environ.get("WORLD_SIZE", "1"), "draws": json.dumps(draws)})
# Leaving with the gloo group alive lets its threads outlive the interpreter: now and then a rank aborts at exit
# ("terminate called without an active exception") after saving everything. Close it first.
if torch.distributed.is_initialized():
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
