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


def _latency_budgets(payload: dict) -> list[str]:
    """benchmarks/latency_budget.py: a budget from any starting shape, met on the runtime it names."""
    hw = payload["hardware"]
    lines = [f"Latency budgets on {payload['task'].upper()} (start's batch-1 time / {payload['speedup']:g}, no training; "
             f"host {hw.get('cpu')} with {hw.get('int8_isa')} int8 instructions; {payload['timing']}; "
             + (f"the pruning aimed {100 * margin:g}% under the budget" if (margin := next(
                 (r["latency_margin"] for r in payload["rows"] if "latency_margin" in r), 0.0))
                else "the pruning aimed at the budget itself (before latency_margin)")
             + "):", "",
             f"| start | runtime | start ms | start ms as the pruning timed it | budget ms | predicted | "
             f"measured while pruning | re-measured (95% CI) | met | {payload['metric']} start -> pruned | FLOPs kept | "
             f"pruning s |", "|---" * 12 + "|"]
    for row in payload["rows"]:
        if row.get("reachable") is False:
            lines.append(f"| {row['start']} | {row['runtime']} | {row['start_ms']:.1f} | - | {row['budget_ms']:.1f} | "
                         f"not reachable by pruning heads and neurons: {row['error'].split(';')[0]} | | | | | | |")
            continue
        # Re-measured = the pruned/start time ratio (paired rounds) x the start's own time that set the budget: the
        # start's median inside the pair drifted with the machine, the ratio did not.
        ratio = 1 / row["speedup_vs_start"]
        low, high = (row["ratio_ci95"][0] * row["start_ms"], row["ratio_ci95"][1] * row["start_ms"])
        again, met = ratio * row["start_ms"], ratio * row["start_ms"] <= row["budget_ms"]
        pruning_ms = (f"{row['start_ms_while_pruning']:.1f}" if "start_ms_while_pruning" in row else "not recorded") + (
            f" (again after: {row['start_ms_at_retiming']:.1f})" if "start_ms_at_retiming" in row else "")
        lines.append(f"| {row['start']} | {row['runtime']} | {row['start_ms']:.1f} | {pruning_ms} | {row['budget_ms']:.1f} | "
                     f"{row['predicted_ms']:.1f} | {row['measured_while_pruning_ms']:.1f} | {again:.1f} "
                     f"({low:.1f}-{high:.1f}) | {'yes' if met else '**no**'} | {100 * row['start_score']:.2f} -> "
                     f"{100 * row['score']:.2f} | {row['kept_flops_measured']:.2f} | {row['prune_seconds']:.0f} |")
    return lines + [""]


def summary(payloads: list[dict]) -> list[str]:
    """Issue #30's targets per run: at half the head+FFN FLOPs with no fine-tuning, the drop against the teacher
    (SST-2 <= 1.0 point; MRPC <= 1.5 F1 and <= 2.0 accuracy), the margin over today's one-shot pruning, and the
    pruning time (< 5 minutes)."""
    lines = [read_note(HERE, "retraining_free"), ""]
    lines += _retraining_free_seeds([p for p in payloads if p.get("experiment") != "latency_budget"])
    for payload in (p for p in payloads if p.get("experiment") == "latency_budget"):
        lines += _latency_budgets(payload)
    for payload in (p for p in payloads if p.get("experiment") != "latency_budget"):
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
