"""Vocabulary pruning: #28's targets per task."""

from __future__ import annotations

from pathlib import Path

from reporting import read_note


HERE = Path(__file__).resolve().parent


def summary(payloads: list[dict]) -> list[str]:
    """Issue #28's targets per task: file -40% or more with <= 0.2 points lost, and with int8 embeddings and an
    int8 encoder a file <= 15% of fp32; each against the teacher of the same run."""
    lines = [read_note(HERE, "vocabulary"), ""]
    for payload in payloads:
        rows = payload["rows"]
        base = rows[0]
        metrics = ["f1", "accuracy"] if payload["task"] == "mrpc" else ["accuracy"]
        parts = []
        for row in rows[1:]:
            text = f"{row['name']}: {row['vocab_size']:,} tokens, file {row['size_ratio']:.0%} of fp32"
            if row.get("metrics") and base.get("metrics"):
                drops = {m: 100 * (base["metrics"][m] - row["metrics"][m]) for m in metrics}
                text += " (drop " + ", ".join(f"{m} {d:.2f}" for m, d in drops.items()) + ")"
                int8 = "int8" in row["id"].split("-")
                met = row["size_ratio"] <= (0.15 if int8 else 0.60) and (int8 or all(d <= 0.2 for d in drops.values()))
                text += f", {'meets' if met else 'misses'} " + (
                    "the <= 15% file target" if int8 else "-40% file at <= 0.2 points")
            parts.append(text)
        source = payload.get("data", {}).get("vocabulary_from", "train split")
        lines.append(f"- {payload['task']} (vocabulary from the {source}): " + "; ".join(parts) + ".")
    return lines + [""]
