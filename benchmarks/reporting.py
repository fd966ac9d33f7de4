"""What the study reports share: their notes, finding rows by id, and a few cells every report words the same.

A study's ``report.py`` (beside its ``study.yaml``) may define ``summary(payloads) -> list[str]`` (lines before
the generic tables) and ``appendix(payloads) -> list[str]`` (lines after them); ``make_results.py`` calls them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def read_note(folder: Path, name: str) -> str:
    """A study's prose, kept as markdown beside its study.yaml (edited there, not in code)."""
    return (folder / f"{name}.md").read_text(encoding="utf-8").rstrip("\n")


def by_id(rows: list[dict], row_id: str) -> dict | None:
    """The row with this id (results rows carry stable ids: ``hfcompress.benchmark.row_id``), or None."""
    return next((row for row in rows if row["id"] == row_id), None)


def with_prefix(rows: list[dict], prefix: str) -> list[dict]:
    """The rows whose id is ``prefix`` or starts with its words (a family of variants: "soft-movement-10" finds
    "soft-movement-10" and "soft-movement-10-magnitude-init", not "soft-movement-100")."""
    return [row for row in rows if row["id"] == prefix or row["id"].startswith(prefix + "-")]


def study_report(key: str) -> ModuleType | None:
    """``studies/<key>/report.py`` as a module (None when the study has none)."""
    path = HERE / "studies" / key / "report.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"studies.{key}.report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_drop_speedup(candidates: list[dict], teacher: dict, speedup: str, suffix: str = "") -> list[str]:
    """Summary cells of the best-scoring row: score (name without ``suffix``), drop from the teacher, speedup."""
    if not candidates:
        return ["", "", ""]
    best = max(candidates, key=lambda r: r["score"])
    return [f"{100 * best['score']:.2f} ({best['name'].removesuffix(suffix)})",
            f"{100 * (teacher['score'] - best['score']):.2f}", f"{best.get(speedup, 0):.2f}x"]


def hardware_line(hardware: dict) -> str:
    """The small print under a table: where it was measured (with the int8 ISA when the JSON records it)."""
    isa = f" ({hardware['int8_isa']})" if hardware.get("int8_isa") else ""
    return f"<sub>{hardware.get('cpu')}, {hardware.get('cpu_count')} cores{isa}, torch {hardware.get('torch')}</sub>"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def paired_verdict(ratio: dict, bar: float | None = None) -> str:
    """ours / plain per-round time ratio -> "faster" / "level" / "slower". Repeated runs (``bar`` given, e.g.
    0.97): "slower" when plain's speed over ours, median over the repeats, is below the bar; single runs: by
    whether the 95% interval excludes 1."""
    if bar is not None:
        speed = 1 / ratio["median"]
        return "slower" if speed < bar else "faster" if speed > 1 / bar else "level"
    low, high = ratio["ci95"]
    return "slower" if low > 1.0 else "faster" if high < 1.0 else "level"
