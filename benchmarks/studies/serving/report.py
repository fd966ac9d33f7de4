"""Serving: requests per second from 1, 2 and 8 client threads, per runner form, and wrong answers; beside each
form, its batch-1 and batch-32 latency from the runtimes study (same teacher folders, same host, another run)."""

from __future__ import annotations

import json

from pathlib import Path

from reporting import RESULTS, by_id, read_note

HERE = Path(__file__).resolve().parent


def _latencies(task: str, model: str) -> list[dict]:
    """The rows of the runtimes run on the same task and model (the payloads name the model alike)."""
    for path in sorted(RESULTS.glob(f"runtimes_{task}*.json")):
        payload = json.loads(path.read_text())
        if payload.get("task") == task and payload.get("model") == model:
            return payload["rows"]
    return []


def _ms(row: dict | None, key: str) -> str:
    return f"{row[key]:.1f}" if row and row.get(key) is not None else "-"


def summary(payloads: list[dict]) -> list[str]:
    lines = [read_note(HERE, "serving"), ""]
    for payload in payloads:
        hw = payload.get("hardware", {})
        timed = _latencies(payload["task"], payload["model"])
        lines += [f"{payload['task'].upper()}, host {hw.get('cpu')} ({hw.get('int8_isa')}), {payload['note']}. "
                  "The latency columns come from the runtimes study's run of the same forms (one client, one "
                  "process per form).", "",
                  "| model | 1 client /s | 2 clients /s | 8 clients /s | wrong answers | batch 1 ms | batch 32 ms |",
                  "|---|---|---|---|---|---|---|"]
        for row in payload["rows"]:
            latency = by_id(timed, row["id"])
            lines.append(f"| {row['name']} | {row['per_second_1']:.1f} | {row['per_second_2']:.1f} | "
                         f"{row['per_second_8']:.1f} | {sum(row['mismatches'].values())} | "
                         f"{_ms(latency, 'latency_bs1_ms')} | {_ms(latency, 'latency_bs32_ms')} |")
        lines.append("")
    return lines
