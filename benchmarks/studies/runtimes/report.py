"""Runtimes: every runtime's form of each model, each timed in a process of its own (its own table)."""

from __future__ import annotations

from pathlib import Path

from reporting import read_note


HERE = Path(__file__).resolve().parent


def runtime_table(payload: dict) -> str:
    """benchmarks/runtimes.py: every runtime's form of each model, timed each in a process of its own."""
    hw = payload["hardware"]
    metric = payload["metric"]
    # Runs of the base-size model name it (MiniLM-L6 runs came first and say nothing).
    model = " (all-mpnet-base-v2, 12 layers)" if "mpnet" in payload.get("model", "") else ""
    lines = [f"{payload['task'].upper()}{model}, host {hw.get('cpu')} with {hw.get('int8_isa')} int8 instructions"
             f"{' and bf16' if hw.get('bf16') else ''}; each row timed in a process of its own, {payload['cycles']} "
             f"cycles in rotating order, {payload['rounds_bs1']} rounds at batch 1 per process; speedup = median over "
             "cycles of the per-cycle ratio against the teacher in torch fp32 (range over cycles in brackets).", "",
             f"| model | runtime | {metric} | drop | size MB | bs1 ms | bs1 speedup | bs32 ms | bs32 speedup |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        family, runtime = row["name"].split(": ", 1)
        low1, high1 = row["speedup_bs1_range"]
        low32, high32 = row["speedup_bs32_range"]
        lines.append(f"| {family} | {runtime} | {100 * row['score']:.2f} | {row['score_drop']:+.2f} | "
                     f"{row['size_bytes'] / 1e6:.1f} | {row['latency_bs1_ms']:.1f} | {row['speedup_bs1']:.2f}x "
                     f"({low1:.2f}-{high1:.2f}) | {row['latency_bs32_ms']:.0f} | {row['speedup_bs32']:.2f}x "
                     f"({low32:.2f}-{high32:.2f}) |")
    pruned = [row for row in payload["rows"] if "prune_seconds" in row and row["name"].endswith("torch fp32")]
    if pruned:
        lines += ["", "Retraining-free pruning's wall time on this host (2 threads): " + "; ".join(
            f"{row['family']} {row['prune_seconds']:.0f} s" + (" (" + ", ".join(
                f"{stage} {seconds:.0f} s" for stage, seconds in row["prune_stage_seconds"].items()) + ")"
                if row.get("prune_stage_seconds") else "") for row in pruned) + "."]
    if payload.get("plot"):
        lines += ["", f"Plot: [{Path(payload['plot']).name}]({Path(payload['plot']).relative_to('benchmarks')})"]
    lines += ["", "The ONNX Runtime and OpenVINO int8 teachers timed alternating in one process (ONNX Runtime spinning "
                  "off), against their own processes above:", "",
              "| model | batch | one process ms | own process ms |", "|---|---|---|---|"]
    for batch, models in payload["one_process_effect"].items():
        for name, timing in models.items():
            lines.append(f"| {name} | {batch[2:]} | {timing['one_process_ms']:.1f} | {timing['own_process_ms']:.1f} |")
    return "\n".join(lines)



def summary(payloads: list[dict]) -> list[str]:
    lines = [read_note(HERE, "runtimes"), ""] if (HERE / "runtimes.md").is_file() else []
    for payload in payloads:
        lines += [runtime_table(payload), ""]
    return lines
