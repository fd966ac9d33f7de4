"""Timing of forward passes: the one way hfcompress measures latency (benchmarks, latency budgets, search).

Latency is the median of timed forward passes after untimed warm-up, at a fixed thread count and
sequence length, with full-length random inputs (padding is not a shortcut here). It sits below every
method so a method that needs a measured time (a latency budget) does not import the benchmark layer.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn


def _dummy_batch(model: nn.Module, batch_size: int, seq_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 1000))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(low=min(1000, vocab - 1), high=vocab, size=(batch_size, seq_len), generator=generator)
    return {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids).to(device)}


_PROCESS_WARM = False


def _warm_process(model: Any, inputs: dict[str, torch.Tensor], seconds: float = 3.0) -> None:
    """Run untimed forwards for a few seconds, once per process.

    The first model timed in a process otherwise pays for thread-pool start-up and CPU clock
    ramp-up that the models timed after it do not, which would bias every ratio against it.
    """
    global _PROCESS_WARM
    if _PROCESS_WARM:
        return
    start = time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - start < seconds:
            model(**inputs)
    _PROCESS_WARM = True


BUSY_LOAD_PER_CORE = 1.5


def warn_if_busy() -> float | None:
    """Warn when other processes already load the CPU: every time measured now would be slow and noisy.

    The 1-minute load average counts this process's own threads too (about one per core while it trains), so
    only a load well above the core count means someone else is computing (measured: a test run beside a
    benchmark inflated a latency budget 40x). Returns the load average (None where the system has none).
    """
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cores = os.cpu_count() or 1
    if load > BUSY_LOAD_PER_CORE * cores:
        warnings.warn(f"The CPU is busy (1-minute load average {load:.1f} on {cores} cores): latency measured now "
                      "is slow and noisy. Time on an otherwise idle machine.", RuntimeWarning, stacklevel=3)
    return load


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device if isinstance(model, nn.Module) else torch.device("cpu")


def timed_passes(
    models: dict[str, Any], batch_size: int, seq_len: int, threads: int | None, warmup: int, rounds: int,
    settle_ms: float = 0.0,
) -> dict[str, list[float]]:
    """Forward times (ms) per model: warm-up passes each, then ``rounds`` rounds of one pass per model.

    The order rotates every round so drift of the machine is shared by all models. With several
    models, each timed pass starts ``settle_ms`` after the previous one ended (see
    ``interleaved_latency``).
    """
    if _device(next(iter(models.values()))).type == "cpu":
        warn_if_busy()
    names = list(models)
    inputs = {name: _dummy_batch(models[name], batch_size, seq_len, _device(models[name])) for name in names}
    training = {name: getattr(models[name], "training", False) for name in names}
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for model in models.values():
            if isinstance(model, nn.Module):
                model.eval()
        with torch.inference_mode():
            _warm_process(models[names[0]], inputs[names[0]])
            for name in names:
                for _ in range(warmup):
                    models[name](**inputs[name])
            for round_index in range(rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    if settle_ms and len(names) > 1:
                        time.sleep(settle_ms / 1000)
                    cuda = _device(models[name]).type == "cuda"
                    if cuda:
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    models[name](**inputs[name])
                    if cuda:
                        torch.cuda.synchronize()
                    times[name].append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous_threads)
        for name, model in models.items():
            if isinstance(model, nn.Module) and training[name]:
                model.train()
    return times


def measure_latency(
    model: nn.Module | Any,
    batch_size: int = 1,
    seq_len: int = 128,
    threads: int | None = 2,
    warmup: int = 5,
    repeats: int = 30,
) -> dict[str, float]:
    """Median (and spread) of forward-pass wall time in milliseconds.

    ``model`` is a torch module or anything with ``__call__(**inputs)`` and a ``config``
    (the ONNX Runtime wrapper). ``threads`` fixes ``torch.set_num_threads`` for the measurement.

    Example:
        >>> measure_latency(model, batch_size=1)["median_ms"]
    """
    times = timed_passes({"model": model}, batch_size, seq_len, threads, warmup, repeats)["model"]
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "threads": threads or torch.get_num_threads(),
    }


def interleaved_latency(
    models: dict[str, Any],
    batch_size: int = 1,
    seq_len: int = 128,
    threads: int | None = 2,
    warmup: int = 5,
    rounds: int = 30,
    settle_ms: float = 20.0,
) -> dict[str, float]:
    """Median forward time (ms) of several models timed in alternation, one pass each per round.

    Timing models one after another lets machine drift (other tenants, clock changes) land on
    some models and not others; alternating spreads it over all of them, so their ratios hold.
    Each pass starts ``settle_ms`` after the previous one: torch's OpenMP threads keep spinning
    for a while after a forward, and an ONNX Runtime pass started at once shares the cores with
    them (MiniLM-L6 int8 ORT, batch 1, 2 cores: 22.5 ms right after a torch forward, 19.6 ms
    after an ORT one, 20.5 ms 20 ms after a torch one). The pause gives every model the same
    start: idle threads, as a server sees between requests.

    Example:
        >>> interleaved_latency({"fp32": model, "int8": quantized}, batch_size=1)
        {'fp32': 29.8, 'int8': 18.7}
    """
    times = timed_passes(models, batch_size, seq_len, threads, warmup, rounds, settle_ms)
    return {name: statistics.median(values) for name, values in times.items()}


def paired_latency(
    models: dict[str, Any],
    pairs: Iterable[tuple[str, str]],
    batch_size: int = 1,
    seq_len: int = 128,
    threads: int | None = 2,
    warmup: int = 10,
    rounds: int = 300,
    settle_ms: float = 20.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-round time ratios of model pairs, timed in alternation: "is A slower than B?" with its uncertainty.

    Medians of separate models move 5-10% between runs on a shared machine; the ratio of two
    passes of the same round shares that round's drift and cancels it. For each pair ``(a, b)``:
    the median of ``time_a / time_b`` over the rounds, its quartiles, and a 95% bootstrap
    interval of that median (``seed`` fixes the resampling).

    Example:
        >>> paired_latency({"plain": q1, "ours": q2}, [("ours", "plain")])["ratios"]["ours / plain"]["median"]
        0.993
    """
    times = timed_passes(models, batch_size, seq_len, threads, warmup, rounds, settle_ms)
    generator = np.random.default_rng(seed)
    result: dict[str, Any] = {"batch_size": batch_size, "seq_len": seq_len, "rounds": rounds,
                              "median_ms": {name: statistics.median(values) for name, values in times.items()},
                              "ratios": {}}
    for a, b in pairs:
        ratios = np.asarray(times[a]) / np.asarray(times[b])
        medians = np.median(generator.choice(ratios, size=(2000, ratios.size)), axis=1)
        result["ratios"][f"{a} / {b}"] = {
            "median": float(np.median(ratios)),
            "quartiles": [float(q) for q in np.quantile(ratios, [0.25, 0.75])],
            "ci95": [float(q) for q in np.quantile(medians, [0.025, 0.975])],
        }
    return result


def concurrent_throughput(
    model: Any,
    *,
    clients: tuple[int, ...] = (1, 2, 8),
    requests: int = 64,
    seq_len: int = 128,
    threads: int | None = 2,
    check: bool = True,
) -> dict[str, Any]:
    """Requests per second when ``clients`` threads each send batch-1 requests to one loaded model, as a server
    handling several connections would; ``requests`` in all per setting. With ``check``, every answer is compared
    with the same request answered alone (a runner that is not thread-safe shows here as wrong outputs).

    Example:
        >>> concurrent_throughput(OnnxSequenceClassifier.from_pretrained("out/onnx"))["per_second"]
        {1: 81.2, 2: 80.9, 8: 79.5}
    """
    from concurrent.futures import ThreadPoolExecutor

    if threads is not None:
        torch.set_num_threads(threads)
    device = _device(model)
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 1000))
    generator = torch.Generator().manual_seed(1)
    # Each request its own row (of varied content), so a mixed-up answer cannot pass for a right one.
    ids = torch.randint(low=min(1000, vocab - 1), high=vocab, size=(requests, seq_len), generator=generator)
    inputs = [{"input_ids": ids[i:i + 1].to(device), "attention_mask": torch.ones(1, seq_len, dtype=torch.long,
                                                                                  device=device)}
              for i in range(requests)]

    def answer(index: int) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(torch.as_tensor(model(**inputs[index]).logits).float().cpu())

    warn_if_busy()
    alone = [answer(i) for i in range(requests)]
    result: dict[str, Any] = {"requests": requests, "seq_len": seq_len, "per_second": {}, "mismatches": {}}
    for count in clients:
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(answer, range(min(requests, 2 * count))))  # warm every client thread
            start = time.perf_counter()
            answers = list(pool.map(answer, range(requests)))
            elapsed = time.perf_counter() - start
        result["per_second"][count] = requests / elapsed
        if check:
            result["mismatches"][count] = sum(not np.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(answers, alone))
    return result
