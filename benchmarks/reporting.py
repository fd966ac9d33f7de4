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


def pareto_front(rows: list[dict], latency: str = "latency_bs1_ms", score: str = "score") -> list[dict]:
    """The rows no other row beats on both latency (lower) and score (higher), fastest first.

    >>> rows = [{"n": "a", "latency_bs1_ms": 10, "score": 0.9}, {"n": "b", "latency_bs1_ms": 5, "score": 0.8},
    ...         {"n": "c", "latency_bs1_ms": 12, "score": 0.85}, {"n": "d", "latency_bs1_ms": 20, "score": 0.95}]
    >>> [row["n"] for row in pareto_front(rows)]
    ['b', 'a', 'd']
    """
    front, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r[latency], -r[score])):
        if row[score] > best:
            front.append(row)
            best = row[score]
    return front


def pareto_plot(rows: list[dict], metric: str, path: Path, title: str,
                latency: str = "latency_bs1_ms") -> None:
    """Score against batch-1 latency, one point per row (styled by ``row["kind"]``: teacher, peer or hfcompress),
    the Pareto front drawn through the rows nothing beats (named, with the teacher and peers; the others faded);
    saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    styles = {"teacher": ("black", "s"), "peer": ("tab:gray", "^"), "hfcompress": ("tab:blue", "o")}
    labels = {"teacher": "teacher", "peer": "what a user would do", "hfcompress": "hfcompress"}
    front = pareto_front(rows, latency)
    # Names only where they can be read: on the front, the teacher and the peers; the rest are faded points.
    named = {id(row) for row in front} | {id(row) for row in rows if row.get("kind") in ("teacher", "peer")}
    for row in rows:
        color, marker = styles[row.get("kind", "hfcompress")]
        axis.scatter(row[latency], 100 * row["score"], color=color, marker=marker, s=60,
                     alpha=1.0 if id(row) in named else 0.35)
        if id(row) in named:
            axis.annotate(row["name"], (row[latency], 100 * row["score"]), fontsize=7, xytext=(4, 3),
                          textcoords="offset points")
    axis.step([r[latency] for r in front], [100 * r["score"] for r in front], where="post", color="tab:blue",
              alpha=0.4, linewidth=1, label="Pareto front")
    for kind in sorted({row.get("kind", "hfcompress") for row in rows}, key=list(styles).index):
        color, marker = styles[kind]
        axis.scatter([], [], color=color, marker=marker, label=labels[kind])
    axis.set_xlabel("latency, batch 1, seq 128 (ms, this machine)")
    axis.set_ylabel(f"dev {metric}")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
