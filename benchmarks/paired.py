"""Paired comparison of two benchmarked models on the same dev rows.

A one-to-two-point gap between two models on one dev set says little read from the scores alone
(SST-2 dev: one standard error of a single score is ~1.3 points). Both models saw the same rows,
so the paired view is sharper: how many rows one gets right and the other wrong, an exact McNemar
test on those, and a paired bootstrap interval for the difference in the task's main metric.

The models are the ones the benchmark kept (``model_dir`` of each row, benchmarks/cache); their dev
score is recomputed and must equal the recorded one, so a model overwritten by a later run is
refused instead of compared.

    python benchmarks/paired.py results/movement_sst2_kd_2000.json "soft movement 10%, magnitude init" \\
        results/movement_sst2_kd_2000_magnitude.json "magnitude 10%" --out results/paired_movement_sst2_2000.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from common import ROOT, TASK_SETUPS, load_data, minilm_path

import hfcompress  # noqa: F401  (loads compressed checkpoints)
from hfcompress.benchmark import hardware, predict
from hfcompress.data import get_task, task_metrics

BOOTSTRAP = 10_000


def saved_row(results: Path, name: str) -> tuple[dict, dict]:
    payload = json.loads(results.read_text())
    row = next((r for r in payload["rows"] if r["name"] == name), None)
    if row is None:
        raise SystemExit(f"{results}: no row named {name!r}; rows: {[r['name'] for r in payload['rows']]}")
    if not row.get("model_dir"):
        raise SystemExit(f"{results}: the model of {name!r} was not kept (no model_dir); rerun its benchmark.")
    if not (ROOT / row["model_dir"] / "config.json").is_file():
        raise SystemExit(f"{results}: the model of {name!r} is gone from {row['model_dir']} (benchmarks/cache is not "
                         "committed); rerun its benchmark.")
    return payload, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_a", type=Path)
    parser.add_argument("name_a")
    parser.add_argument("results_b", type=Path)
    parser.add_argument("name_b")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    (payload_a, row_a), (payload_b, row_b) = saved_row(args.results_a, args.name_a), saved_row(args.results_b,
                                                                                               args.name_b)
    task = payload_a["task"]
    if payload_b["task"] != task:
        raise SystemExit(f"Different tasks: {task} vs {payload_b['task']}.")
    metric = get_task(task).main_metric
    # The benchmarks' tokenizer (get_teacher's), without loading or training a teacher.
    dev = load_data(TASK_SETUPS[task], AutoTokenizer.from_pretrained(minilm_path()))["validation"]
    labels = np.asarray(dev["label"])

    predicted = {}
    for row in (row_a, row_b):
        model = AutoModelForSequenceClassification.from_pretrained(ROOT / row["model_dir"])
        logits = predict(model, dev)
        score = task_metrics(task, logits, labels)[metric]
        if abs(score - row["score"]) > 1e-9:
            raise SystemExit(f"{row['name']!r}: the kept model scores {score:.4f}, its results row {row['score']:.4f}: "
                             "the folder was overwritten by a later run; rerun the benchmark.")
        predicted[row["name"]] = logits.argmax(-1)

    a, b = predicted[args.name_a], predicted[args.name_b]
    right_a, right_b = a == labels, b == labels
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    mcnemar = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0

    rng = np.random.default_rng(args.seed)
    differences = []
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, len(labels), len(labels))
        differences.append(task_metrics(task, a[rows], labels[rows])[metric]
                           - task_metrics(task, b[rows], labels[rows])[metric])
    differences = np.asarray(differences)
    result = {
        "benchmark": "paired", "task": task, "metric": metric, "dev_rows": len(labels),
        "a": {"name": args.name_a, "results": args.results_a.name, "score": row_a["score"]},
        "b": {"name": args.name_b, "results": args.results_b.name, "score": row_b["score"]},
        "difference": row_a["score"] - row_b["score"],
        "rows_only_a_right": only_a, "rows_only_b_right": only_b, "mcnemar_exact_p": mcnemar,
        "bootstrap_samples": BOOTSTRAP, "bootstrap_seed": args.seed,
        "difference_ci95": [float(np.quantile(differences, 0.025)), float(np.quantile(differences, 0.975))],
        "bootstrap_share_a_not_better": float((differences <= 0).mean()),
        "hardware": hardware(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    low, high = result["difference_ci95"]
    print(f"[{task}] {args.name_a} {100 * row_a['score']:.2f} vs {args.name_b} {100 * row_b['score']:.2f}: "
          f"rows only A right {only_a}, only B right {only_b}, McNemar p = {mcnemar:.3f}; "
          f"{metric} difference 95% CI [{100 * low:+.2f}, {100 * high:+.2f}]", flush=True)


if __name__ == "__main__":
    main()
