#!/usr/bin/env python
"""TextPruner's head + FFN pruning (no fine-tuning) run on a saved model, in its own transformers-4 environment.

TextPruner 1.1 calls ``model.prune_heads``, which transformers 5 removed, so it cannot run next to hfcompress.
This script runs inside a separate virtualenv (see benchmarks/peers/README.md) and writes which heads and FFN
neurons TextPruner keeps; the hfcompress benchmark then removes exactly those units from the same model in its
own run, so TextPruner's choice is scored and timed beside ours under the same conditions. TextPruner only
zeroes or drops the units it prunes (it changes no other weight), so removing its masked units reproduces its
pruned model exactly; the dev score it measures itself (``--dev``) is written too, as a cross-check.

    /path/to/peer-venv/bin/python benchmarks/peers/textpruner_masks.py --model TEACHER_DIR \
        --calibration calibration.safetensors --heads 6.5 --ffn 700 --iterations 1 --output masks.json

The calibration file holds batches ``batch<i>.input_ids`` / ``.attention_mask`` / ``.token_type_ids`` /
``.labels`` (safetensors, no pickles); ``--dev`` the same layout with ``labels``. Not a dependency of hfcompress.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from safetensors.torch import load_file


def batches(path: str) -> list[dict[str, torch.Tensor]]:
    tensors = load_file(path)
    count = 1 + max(int(key.split(".")[0][len("batch"):]) for key in tensors)
    return [{key.split(".", 1)[1]: value for key, value in tensors.items() if key.split(".")[0] == f"batch{i}"}
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved fine-tuned model folder (config.json + safetensors)")
    parser.add_argument("--calibration", required=True, help="safetensors of calibration batches with labels")
    parser.add_argument("--heads", type=float, required=True, help="target average heads per layer")
    parser.add_argument("--ffn", type=float, required=True, help="target average FFN width per layer")
    parser.add_argument("--iterations", type=int, default=1, help="TextPruner's n_iters (1 = one-shot)")
    parser.add_argument("--even", action="store_true", help="same heads / width in every layer")
    parser.add_argument("--dev", help="safetensors of dev batches with labels: TextPruner's own accuracy")
    parser.add_argument("--output", required=True, help="JSON file for the kept heads and neurons per layer")
    options = parser.parse_args()

    import textpruner
    import transformers
    from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(options.model).eval()
    # TextPruner slices by average x layers, so it takes whole per-layer averages only: the nearest ones.
    heads, ffn = round(options.heads), round(options.ffn)
    start = time.perf_counter()
    pruner = TransformerPruner(model, transformer_pruning_config=TransformerPruningConfig(
        target_ffn_size=ffn, target_num_of_heads=heads, pruning_method="iterative", n_iters=options.iterations,
        head_even_masking=options.even, ffn_even_masking=options.even),
        general_config=GeneralConfig(use_device="cpu", output_dir=options.output + ".work"))
    pruner.prune(dataloader=batches(options.calibration), save_model=False, keep_shape=True)
    seconds = time.perf_counter() - start
    result = {
        "kept_heads": [[i for i, v in enumerate(row) if v > 0] for row in pruner.head_mask.tolist()],
        "kept_neurons": [[i for i, v in enumerate(row) if v > 0] for row in pruner.ffn_mask.tolist()],
        "seconds": round(seconds, 1), "iterations": options.iterations, "even": options.even,
        "target_heads_per_layer": heads, "target_ffn_per_layer": ffn,
        "textpruner": textpruner.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
    }
    if options.dev:
        correct = total = 0
        with torch.no_grad():
            for batch in batches(options.dev):
                labels = batch.pop("labels")
                correct += int((model(**batch).logits.argmax(-1) == labels).sum())
                total += len(labels)
        result["dev_accuracy_in_textpruner"] = round(100 * correct / total, 2)
    with open(options.output, "w") as handle:
        json.dump(result, handle)
    print(f"kept {sum(map(len, result['kept_heads']))} heads and {sum(map(len, result['kept_neurons']))} neurons "
          f"in {seconds:.1f} s -> {options.output}")


if __name__ == "__main__":
    main()
