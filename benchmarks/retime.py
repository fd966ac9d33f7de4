"""Re-time the models of a results JSON on a quiet machine and refresh its latency columns and ratios.

Latency measured while other jobs share the two cores is noise; the benchmarks keep each
trained model (benchmarks/cache, not committed) so its latency can be measured again, alone.
Scores, sizes and parameters are untouched.

    python benchmarks/retime.py benchmarks/results/theseus_sst2.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import AutoModelForSequenceClassification

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import hfcompress  # noqa: E402,F401  (loads compressed checkpoints)
from hfcompress.benchmark import add_ratios, format_table, hardware, interleaved_latency  # noqa: E402

ROUNDS = 30


def model_dir(payload: dict, row: dict) -> Path | None:
    if row.get("model_dir"):
        return ROOT / row["model_dir"]
    if payload.get("benchmark") == "theseus":  # runs written before rows recorded their folder
        if row["name"].startswith("teacher"):
            return ROOT / "benchmarks/cache/teachers" / payload["task"]
        return ROOT / "benchmarks/cache/theseus" / payload["task"] / row["name"].replace(" ", "_").replace(
            ",", "").replace("+", "plus")
    return None


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        payload = json.loads(path.read_text())
        models = {}
        for row in payload["rows"]:
            folder = model_dir(payload, row)
            if folder is None or not (folder / "config.json").is_file():
                print(f"{path.name}: no saved model for {row['name']!r}; left as measured", flush=True)
                continue
            models[row["name"]] = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        for batch in (1, 32):
            medians = interleaved_latency(models, batch_size=batch, rounds=ROUNDS)
            for row in payload["rows"]:
                if row["name"] in medians:
                    row[f"latency_bs{batch}_ms"] = medians[row["name"]]
                    row["retimed"] = True
        add_ratios(payload["rows"], payload["rows"][0]["name"])
        payload["latency"] = ("re-timed alone by benchmarks/retime.py: models in alternation, median of 30 rounds "
                              "after 5 warm-up passes each, seq 128, 2 threads")
        payload["retime_hardware"] = hardware()
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        path.with_suffix(".md").write_text(format_table(payload["rows"], payload["metric"]) + "\n")
        print(format_table(payload["rows"], payload["metric"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
