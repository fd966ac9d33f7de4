"""Serving: requests per second from 1, 2 and 8 client threads, per runner form, and wrong answers."""

from __future__ import annotations


def summary(payloads: list[dict]) -> list[str]:
    lines = []
    for payload in payloads:
        hw = payload.get("hardware", {})
        lines += [f"{payload['task'].upper()}, host {hw.get('cpu')} ({hw.get('int8_isa')}), {payload['note']}.", "",
                  "| model | 1 client /s | 2 clients /s | 8 clients /s | wrong answers |", "|---|---|---|---|---|"]
        for row in payload["rows"]:
            lines.append(f"| {row['name']} | {row['per_second_1']:.1f} | {row['per_second_2']:.1f} | "
                         f"{row['per_second_8']:.1f} | {sum(row['mismatches'].values())} |")
        lines.append("")
    return lines
