"""Copy a script's ``results.json`` (scripts/theseus_glue.py, prune_glue.py) into benchmarks/results.

The scripts write their table next to the model they train; this adds the fields
``make_results.py`` reads (benchmark name, data block) without touching any number.

    python benchmarks/import_script_results.py outputs/iflytek/results.json benchmarks/results/theseus_script_iflytek.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--benchmark", default="theseus_script")
    options = parser.parse_args()
    payload = json.loads(options.source.read_text())
    task_args = payload.get("task_args", {})
    payload["benchmark"] = options.benchmark
    payload["data"] = {"train_rows": payload.get("train_rows"), "dev_rows": payload.get("dev_rows"),
                       "max_length": task_args.get("max_seq_length"), "dev_split": task_args.get("dev_split"),
                       "train_subset_of": task_args.get("max_train_samples")}
    if "theseus" in payload:
        config = payload["theseus"]
        payload["note"] = (f"Run of scripts/theseus_glue.py (command in benchmarks/studies/theseus_script/study.yaml): predecessor fine-tuned "
                           f"{task_args.get('teacher_epochs')} epochs first, then {config['scheduler']} schedule from "
                           f"p = {config['replacing_rate']} (k = {config['scheduler_linear_k']}), "
                           f"successor_init={config['successor_init']}.")
    # Paths on the machine that ran it mean nothing in the repository.
    payload.pop("successor_dir", None)
    task_args.pop("model_name_or_path", None)
    task_args.pop("data_dir", None)
    options.target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {options.target}")


if __name__ == "__main__":
    main()
