"""Measure what compression costs and buys: parameters, file size, latency, dev score.

Used by ``benchmarks/``, the scripts and the CLI so every number is measured the same way.
Latency comes from :mod:`hfcompress.timing` (medians of timed passes after warm-up, models alternated).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from .data.metrics import task_metrics
from .data.tasks import get_task
from .cpu import cpu_summary, full_range_int8_kernels, int8_isa
from .devices import describe, model_device
from .timing import concurrent_throughput, interleaved_latency, measure_latency, paired_latency  # noqa: F401  (public here too)


def count_parameters(model: nn.Module) -> int:
    """Weights counted once even when shared (tied), including int8 weights kept outside ``parameters()``.

    Int8 modules keep weights outside ``parameters()``: hfcompress's own modules list them in
    ``weight_tensors()``, ``torch.ao`` dynamic linears return them from ``weight()`` / ``bias()``.
    They are weights all the same.
    """
    from torch.ao.nn.quantized.dynamic import Linear as TorchDynamicLinear

    seen, total = set(), 0
    tensors = list(model.parameters())
    for module in model.modules():
        if callable(getattr(module, "weight_tensors", None)):
            tensors += [t for t in module.weight_tensors() if t is not None]
        elif isinstance(module, TorchDynamicLinear):
            tensors += [t for t in (module.weight(), module.bias()) if t is not None]
    for tensor in tensors:
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def saved_size_bytes(model: PreTrainedModel, save_fn: Any = None) -> int:
    """Bytes of the weight files ``save_pretrained`` writes (config and tokenizer excluded)."""
    with tempfile.TemporaryDirectory() as folder:
        (save_fn or model.save_pretrained)(folder)
        return weights_size_bytes(folder)


def weights_size_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the weight files in a saved model folder."""
    suffixes = (".safetensors", ".bin", ".onnx", ".data")
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.name.endswith(suffixes))


def benchmark_rows(
    entries: list[dict[str, Any]],
    *,
    eval_dataset: Any = None,
    task: str | None = None,
    batch_sizes: Iterable[int] = (1, 32),
    seq_len: int = 128,
    threads: int | None = 2,
    rounds: int | dict[int, int] = 30,
    baseline: str | None = None,
) -> list[dict[str, Any]]:
    """Rows for several models measured in one run: each scored and sized, all timed in alternation.

    ``entries``: dicts with ``name`` and ``model``, optionally ``size_bytes``, ``extra`` and ``eval_dataset`` (its
    own tokenization of the rows, for a model whose tokenizer changed).
    ``rounds``: timing rounds, or rounds per batch size (batch 1 is cheap and noisy: give it more).
    Every model is timed against ``baseline`` (default: the first entry) round by round: each row
    gets ``paired[bsN]`` with the median per-round speedup, its 95% interval and whether the
    interval excludes 1 (``rankable``); :func:`add_ratios` uses it and :func:`unrankable` words it.

    Example:
        >>> rows = benchmark_rows([{"name": "fp32", "model": m}, {"name": "int8", "model": q}],
        ...                       eval_dataset=dev, task="sst2")
        >>> rows[1]["paired"]["bs1"]   # {'baseline': 'fp32', 'speedup': 2.1, 'ci95': [1.9, 2.3], 'rankable': True}
    """
    rows = [benchmark_model(e["name"], e["model"], eval_dataset=e.get("eval_dataset", eval_dataset), task=task, size_bytes=e.get("size_bytes"),
                            batch_sizes=(), extra=e.get("extra")) for e in entries]
    models = {e["name"]: e["model"] for e in entries}
    baseline = baseline or entries[0]["name"]
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the entries {list(models)}")
    pairs = [(name, baseline) for name in models if name != baseline]
    for batch_size in batch_sizes:
        count = rounds.get(batch_size, 30) if isinstance(rounds, dict) else rounds
        timing = paired_latency(models, pairs, batch_size=batch_size, seq_len=seq_len, threads=threads, rounds=count)
        for row in rows:
            row[f"latency_bs{batch_size}_ms"] = timing["median_ms"][row["name"]]
            ratio = timing["ratios"].get(f"{row['name']} / {baseline}")
            if ratio is not None:  # time ratio candidate / baseline -> speedup baseline / candidate
                low, high = ratio["ci95"]
                row.setdefault("paired", {})[f"bs{batch_size}"] = {
                    "baseline": baseline, "speedup": 1 / ratio["median"], "ci95": [1 / high, 1 / low],
                    "rankable": not low <= 1.0 <= high, "rounds": count}
    return rows


def speedup_legend(baseline: str) -> str:
    """The line under a table of paired speedups that says how to read them."""
    return (f"speedup: median of per-round time ratios against {baseline} (timed in alternation), 95% interval in "
            "brackets; ? = the interval includes 1")


def unrankable(rows: list[dict[str, Any]]) -> list[str]:
    """One warning per (row, batch size) whose paired speedup interval includes 1: the machine was too
    noisy to tell which model is faster.

    Example:
        >>> for line in unrankable(rows): print(line)
    """
    lines = []
    for row in rows:
        for batch, paired in (row.get("paired") or {}).items():
            if not paired["rankable"]:
                low, high = paired["ci95"]
                lines.append(
                    f"{row['name']} vs {paired['baseline']} at batch {batch[2:]}: speedup {paired['speedup']:.2f}x, "
                    f"95% interval {low:.2f}x-{high:.2f}x includes 1, so this run cannot rank them. For a quieter "
                    f"measurement: more rounds (--repeats {max(100, 3 * paired['rounds'])}), fewer threads "
                    "(--threads 1), an idle machine.")
    return lines


def predict(model: nn.Module | Any, dataset: Any, batch_size: int = 64) -> np.ndarray:
    """Logits of ``model`` over a tokenized dataset (``input_ids`` etc. plus ``label``)."""
    from torch.utils.data import DataLoader

    config = getattr(model, "config", None)
    collate = _PadCollator(pad_token_id=getattr(config, "pad_token_id", None) or 0)
    device = next(model.parameters()).device if isinstance(model, nn.Module) else torch.device("cpu")
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    loader = DataLoader(dataset.with_format(columns=columns), batch_size=batch_size, collate_fn=collate)
    if isinstance(model, nn.Module):
        model.eval()
    outputs = []
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs.append(model(**batch).logits.float().cpu().numpy())
    return np.concatenate(outputs)


class _PadCollator:
    """Right-pads a batch of token lists to its longest row (pad id for input_ids, 0 elsewhere)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(row["input_ids"]) for row in rows)
        batch = {}
        for key in rows[0]:
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([list(row[key]) + [pad] * (length - len(row[key])) for row in rows])
        return batch


def evaluate_model(model: nn.Module | Any, dataset: Any, task: str, batch_size: int = 64) -> dict[str, float]:
    """Task metrics of ``model`` on a tokenized split with a ``label`` column."""
    logits = predict(model, dataset, batch_size=batch_size)
    return task_metrics(task, logits, np.asarray(dataset["label"]))


def hardware() -> dict[str, Any]:
    """Where the numbers were measured (goes next to every result)."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                               info["cpu"])
    except OSError:
        pass
    # int8 speed (and AVX2's 16-bit saturation) depends on these more than on the CPU's name.
    info["int8_isa"] = int8_isa()
    info["int8_8x8_exact"] = full_range_int8_kernels()
    info["bf16"] = cpu_summary()["bf16"]
    return info


def benchmark_model(
    name: str,
    model: nn.Module | Any,
    *,
    eval_dataset: Any = None,
    task: str | None = None,
    size_bytes: int | None = None,
    batch_sizes: Iterable[int] = (1, 32),
    seq_len: int = 128,
    threads: int | None = 2,
    repeats: int = 30,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of a results table: params, file size, latency per batch size, dev metrics.

    Example:
        >>> row = benchmark_model("teacher", model, eval_dataset=dev, task="sst2")
    """
    row: dict[str, Any] = {"name": name, "device": describe(model_device(model))}
    if isinstance(model, nn.Module):
        row["params"] = count_parameters(model)
        row["size_bytes"] = size_bytes if size_bytes is not None else saved_size_bytes(model)
    else:
        row["params"] = getattr(model, "num_parameters", None)
        row["size_bytes"] = size_bytes
    for batch_size in batch_sizes:
        row[f"latency_bs{batch_size}_ms"] = measure_latency(
            model, batch_size=batch_size, seq_len=seq_len, threads=threads, repeats=repeats
        )["median_ms"]
    if eval_dataset is not None:
        if task is None:
            raise ValueError("benchmark_model needs task=... to score eval_dataset.")
        row["metrics"] = evaluate_model(model, eval_dataset, task)
        row["score"] = row["metrics"][get_task(task).main_metric]
    if extra:
        row.update(extra)
    return row


def add_ratios(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Add speedups, size/params ratios and score retention against the row named ``baseline``."""
    base = next((r for r in rows if r["name"] == baseline), None)
    if base is None:
        raise ValueError(f"No row named {baseline!r} among {[r['name'] for r in rows]}.")
    for row in rows:
        for key in [k for k in base if k.startswith("latency_bs")]:
            batch = key[len("latency_"):-3]
            paired = (row.get("paired") or {}).get(batch)
            if paired and paired["baseline"] == baseline:  # measured round by round: the better estimate
                row["speedup_" + batch] = paired["speedup"]
            elif row.get(key):
                row["speedup_" + batch] = base[key] / row[key]
        if base.get("size_bytes") and row.get("size_bytes"):
            row["size_ratio"] = row["size_bytes"] / base["size_bytes"]
        if base.get("params") and row.get("params"):
            row["params_ratio"] = row["params"] / base["params"]
        if base.get("score") and row.get("score") is not None:
            row["score_retained"] = row["score"] / base["score"]
    return rows


def format_table(
    rows: list[dict[str, Any]], metric_name: str = "score", extra_columns: Iterable[tuple[str, str, Any]] = ()
) -> str:
    """A markdown table of benchmark rows.

    ``extra_columns``: ``(row key, header, formatter)`` triples appended after the standard columns.

    Example:
        >>> print(format_table(rows, "accuracy", [("remaining", "kept", "{:.1%}".format)]))
    """
    extra_columns = list(extra_columns)
    if any(row.get("device", "cpu") != "cpu" for row in rows):  # timed on a GPU: say which row ran where
        extra_columns.append(("device", "device", str))
    header = f"| model | {metric_name} | params | size (MB) | bs1 ms | bs32 ms | speedup bs1 | speedup bs32 | size ratio |"
    header += "".join(f" {title} |" for _, title, _ in extra_columns)
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for row in rows:
        extras = "".join(f" {'' if row.get(key) is None else fmt(row[key])} |" for key, _, fmt in extra_columns)
        score = row.get("score")
        lines.append(
            "| {name} | {score} | {params} | {size} | {bs1} | {bs32} | {s1} | {s32} | {ratio} |".format(
                name=row["name"],
                score="" if score is None else f"{100 * score:.2f}",
                params="" if row.get("params") is None else f"{row['params'] / 1e6:.2f}M",
                size="" if row.get("size_bytes") is None else f"{row['size_bytes'] / 2**20:.1f}",
                bs1=_fmt(row.get("latency_bs1_ms"), "{:.1f}"),
                bs32=_fmt(row.get("latency_bs32_ms"), "{:.0f}"),
                s1=_speedup(row, "bs1"),
                s32=_speedup(row, "bs32"),
                ratio=_fmt(row.get("size_ratio"), "{:.2f}"),
            )
            + extras
        )
    return "\n".join(lines)


def _speedup(row: dict[str, Any], batch: str) -> str:
    value = row.get("speedup_" + batch)
    paired = (row.get("paired") or {}).get(batch)
    if value is None or not paired or abs(paired["speedup"] - value) > 1e-9:
        return _fmt(value, "{:.2f}x")
    low, high = paired["ci95"]
    return f"{value:.2f}x ({low:.2f}-{high:.2f}){'' if paired['rankable'] else ' ?'}"


def _fmt(value: Any, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def row_id(name: str) -> str:
    """The stable key of a results row made from its first name: lower case, every run of other characters one
    hyphen. Reports find rows by this key, so a row's shown ``name`` can change without losing the row.

    Example:
        >>> row_id("soft movement 10%, magnitude init")
        'soft-movement-10-magnitude-init'
    """
    key = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(part for part in key.split("-") if part)


def with_row_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with an ``id`` on each (kept where a row has one, else :func:`row_id` of its name); two rows with
    one id raise, since a report could not tell them apart."""
    rows = [row if row.get("id") else {"id": row_id(row["name"]), **row} for row in rows]
    seen: dict[str, str] = {}
    for row in rows:
        if row["id"] in seen:
            raise ValueError(f"Rows {seen[row['id']]!r} and {row['name']!r} share the id {row['id']!r}: give one of "
                             "them an explicit 'id'.")
        seen[row["id"]] = row["name"]
    return rows


def write_results(payload: dict[str, Any], json_path: str | os.PathLike, markdown_path: str | os.PathLike | None = None) -> None:
    """Write ``payload`` (with ``rows``, each given a stable ``id``: :func:`with_row_ids`) as JSON, and its rows as a
    markdown table."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "hardware": payload.get("hardware", hardware())}
    if payload.get("rows"):
        payload["rows"] = with_row_ids(payload["rows"])
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)
    if markdown_path is not None:
        Path(markdown_path).write_text(format_table(payload["rows"], payload.get("metric", "score")) + "\n",
                                       encoding="utf-8")
