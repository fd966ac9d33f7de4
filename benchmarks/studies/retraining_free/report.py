"""Retraining-free structured pruning: #30's targets per run, and the spread over calibration seeds."""

from __future__ import annotations

from pathlib import Path

from reporting import by_id, read_note, with_prefix


HERE = Path(__file__).resolve().parent


def _retraining_free_seeds(payloads: list[dict]) -> list[str]:
    """Fisher + reconstruction at FLOPs 0.5 over the runs that differ only in the calibration rows' seed."""
    lines = []
    for task in sorted({p["task"] for p in payloads}):
        runs = [p for p in payloads if p["task"] == task and p.get("calibration_rows") == 1024]
        drops = {}
        for payload in runs:
            half = by_id(payload["rows"], "fisher-reconstruction-flops-0-5")
            if half is not None:
                metrics, base = half["metrics"], payload["rows"][0]["metrics"]
                drops[payload.get("seed")] = {m: 100 * (base[m] - metrics[m]) for m in metrics}
        if len(drops) < 2:
            continue
        metric_names = list(next(iter(drops.values())))
        text = ", ".join(f"{m} drop mean {sum(d[m] for d in drops.values()) / len(drops):.2f} (seeds: "
                         + ", ".join(f"{d[m]:.2f}" for d in drops.values()) + ")" for m in metric_names)
        lines.append(f"- {task}, FLOPs 0.5 with 1024 calibration rows drawn with seeds {sorted(drops)}: {text}.")
    return lines + ([""] if lines else [])


def summary(payloads: list[dict]) -> list[str]:
    """Issue #30's targets per run: at half the head+FFN FLOPs with no fine-tuning, the drop against the teacher
    (SST-2 <= 1.0 point; MRPC <= 1.5 F1 and <= 2.0 accuracy), the margin over today's one-shot pruning, and the
    pruning time (< 5 minutes)."""
    lines = [read_note(HERE, "retraining_free"), ""]
    lines += _retraining_free_seeds(payloads)
    for payload in payloads:
        rows = payload["rows"]
        teacher = rows[0]
        half = by_id(rows, "fisher-reconstruction-flops-0-5")
        oneshot = next(iter(with_prefix(rows, "one-shot")), None)
        if half is None:
            continue
        drop = 100 * (teacher["score"] - half["score"])
        rows_note = f", {payload['calibration_rows']} calibration rows" if payload.get("calibration_rows") else ""
        seed_note = f", seed {payload['seed']}" if payload.get("seed") not in (None, 42) else ""
        text = (f"- {payload['task']}{rows_note}{seed_note}: at half the "
                f"head+FFN FLOPs, no fine-tuning: **{100 * half['score']:.2f}** vs teacher {100 * teacher['score']:.2f} "
                f"({drop:.2f} points")
        metrics, base = half.get("metrics", {}), teacher.get("metrics", {})
        if payload["task"] == "mrpc" and "accuracy" in metrics:
            text += f" of F1, {100 * (base['accuracy'] - metrics['accuracy']):.2f} of accuracy"
        text += f"), pruned in {half.get('prune_seconds', float('nan')):.0f} s"
        if oneshot is not None:
            text += f"; one-shot heads/FFN 50% by gate gradients: {100 * oneshot['score']:.2f}"
        for peer in with_prefix(rows, "textpruner"):
            text += (f"; {peer['name'].split(',')[0]}: {100 * peer['score']:.2f} "
                     f"({100 * (half['score'] - peer['score']):+.2f} for hfcompress)")
        lines.append(text + f"; speedup {half.get('speedup_bs1', 0):.2f}x / {half.get('speedup_bs32', 0):.2f}x "
                            "at batch 1 / 32.")
        for row in (r for r in rows if r.get("max_latency_ms")):
            wanted = float(row["name"].split("teacher / ")[1].split()[0])
            got = row.get("paired", {}).get("bs1", {})
            if not got:
                continue
            low, high = got["ci95"]
            lines.append(f"  - batch-1 budget teacher / {wanted:g} ({row['max_latency_ms']} ms): measured speedup "
                         f"{got['speedup']:.2f}x ({low:.2f}-{high:.2f}), "
                         f"{'within' if got['speedup'] >= wanted / 1.1 else 'outside'} 10% of the budget; score "
                         f"{100 * row['score']:.2f}, pruned in {row.get('prune_seconds', float('nan')):.0f} s.")
    return lines + [""]
