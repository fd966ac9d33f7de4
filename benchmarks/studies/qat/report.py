"""QAT, static int8 and the accuracy guard: #26's targets per run."""

from __future__ import annotations

from pathlib import Path

from hfcompress.benchmark import row_id
from reporting import by_id, read_note, with_prefix


HERE = Path(__file__).resolve().parent


def summary(payloads: list[dict]) -> list[str]:
    """Issue #26's targets per run: QAT int8 within 0.3 points of fp32 (mean over seeds; MRPC F1 and accuracy),
    at >= 1.5x batch 1 (torch) and >= 1.7x (ONNX Runtime); the guard within its max_drop on dev; int8 files
    with int8 embeddings <= 30% of fp32; and where static ONNX int8 is faster than dynamic."""
    lines = [read_note(HERE, "qat"), ""]
    for payload in payloads:
        if payload.get("paired_mean_drops"):
            lines.append(_qat_from_base_line(payload))
            continue
        rows = payload["rows"]
        teacher = rows[0]
        base = teacher.get("metrics", {})
        metrics = ["f1", "accuracy"] if payload["task"] == "mrpc" else ["accuracy"]
        parts = []
        for kind, speed_target in (("QAT, int8 (torch)", 1.5), ("QAT, int8 (onnxruntime)", 1.7),
                                   ("float KD fine-tune, then int8 (torch)", None),
                                   ("float KD fine-tune, then int8 (onnxruntime)", None)):
            picked = with_prefix(rows, row_id(kind))
            if not picked:
                continue
            drops = {m: 100 * (base[m] - sum(r["metrics"][m] for r in picked) / len(picked)) for m in metrics}
            speed = sum(r.get("speedup_bs1", 0) for r in picked) / len(picked)
            text = (f"{kind}: mean drop over {len(picked)} seeds "
                    + ", ".join(f"{m} {d:+.2f}" for m, d in drops.items()) + f", {speed:.2f}x at batch 1")
            if speed_target is not None:
                met = all(d <= 0.3 for d in drops.values()) and speed >= speed_target
                text += f" ({'meets' if met else 'misses'} <= 0.3 points at >= {speed_target}x)"
            parts.append(text)
        for row in rows[1:]:
            if with_prefix([row], "post-training"):
                drops = ", ".join(f"{m} {100 * (base[m] - row['metrics'][m]):+.2f}" for m in metrics)
                parts.append(f"{row['name']}: drop {drops}, {row.get('speedup_bs1', 0):.2f}x / "
                             f"{row.get('speedup_bs32', 0):.2f}x at batch 1 / 32, file "
                             f"{row.get('size_ratio', float('nan')):.0%} of fp32")
        static = next(iter(with_prefix(rows, "post-training-int8-onnxruntime-static")), None)
        dynamic = by_id(rows, "post-training-int8-onnxruntime")
        if static and dynamic:
            verdicts = []
            for batch in (1, 32):
                ratio = dynamic[f"latency_bs{batch}_ms"] / static[f"latency_bs{batch}_ms"]
                verdicts.append(f"batch {batch}: static {'faster' if ratio > 1.03 else 'slower' if ratio < 0.97 else 'level'}"
                                f" ({ratio:.2f}x dynamic's speed)")
            parts.append("static vs dynamic ONNX Runtime int8 on this CPU (medians of this run): "
                         + ", ".join(verdicts))
        lines.append(f"- {payload['task']}: " + "; ".join(parts) + ".")
    return lines + [""]


def _qat_from_base_line(payload: dict) -> str:
    """QAT as the task fine-tune: mean over seeds of each seed's float score minus its int8 score."""
    rows, parts = payload["rows"], []
    metrics = ["f1", "accuracy"] if payload["task"] == "mrpc" else ["accuracy"]
    for kind, drops in payload["paired_mean_drops"].items():
        picked = with_prefix(rows, row_id(kind))
        speed = sum(r.get("speedup_bs1", 0) for r in picked) / len(picked)
        text = (f"{kind}: mean paired drop over {len(picked)} seeds "
                + ", ".join(f"{m} {100 * drops[m]:+.2f}" for m in metrics) + f", {speed:.2f}x at batch 1")
        if kind.startswith("QAT"):
            met = all(100 * drops[m] <= 0.3 for m in metrics) and speed >= 1.5
            text += f" ({'meets' if met else 'misses'} <= 0.3 points at >= 1.5x)"
        parts.append(text)
    return f"- {payload['task']}, QAT as the fine-tune itself (`--from_base`): " + "; ".join(parts) + "."
