import json

import pytest
import torch

from hfcompress import prune_heads
from hfcompress.benchmark import (
    add_ratios,
    benchmark_model,
    count_parameters,
    format_table,
    measure_latency,
    row_id,
    saved_size_bytes,
    with_row_ids,
    write_results,
)

from .conftest import tiny_model


def test_count_parameters_counts_shared_once():
    model = tiny_model("bert")
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    layers = model.bert.encoder.layer
    layers[1].intermediate.dense.weight = layers[0].intermediate.dense.weight
    assert count_parameters(model) == total - layers[0].intermediate.dense.weight.numel()


def test_size_tracks_parameters():
    model = tiny_model("bert")
    before = saved_size_bytes(model)
    assert abs(before - 4 * count_parameters(model)) < 20_000  # fp32 + safetensors header
    prune_heads(model, {0: [0, 1], 1: [0, 1]})
    assert saved_size_bytes(model) < before


def test_latency_and_rows(tmp_path):
    model = tiny_model("bert")
    latency = measure_latency(model, batch_size=2, seq_len=16, threads=1, warmup=1, repeats=3)
    assert latency["repeats"] == 3 and latency["min_ms"] <= latency["median_ms"] <= latency["max_ms"]
    assert torch.get_num_threads() >= 1
    small = prune_heads(tiny_model("bert"), {0: [0, 1, 2]})
    rows = [benchmark_model(n, m, batch_sizes=(1,), seq_len=16, repeats=2) for n, m in (("base", model), ("small", small))]
    add_ratios(rows, "base")
    assert rows[0]["speedup_bs1"] == 1.0 and rows[1]["params_ratio"] < 1.0
    table = format_table(rows)
    assert table.count("\n") == 3 and "| small |" in table
    write_results({"rows": rows}, tmp_path / "r.json", tmp_path / "r.md")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["rows"][1]["name"] == "small" and "cpu" in payload["hardware"]
    assert [row["id"] for row in payload["rows"]] == ["base", "small"]
    assert (tmp_path / "r.md").read_text().startswith("| model |")


def test_row_ids_are_stable_keys_and_unique():
    assert row_id("soft movement 10%, magnitude init") == "soft-movement-10-magnitude-init"
    assert row_id("3 layers + KD -> int8") == "3-layers-kd-int8"
    rows = with_row_ids([{"name": "int8 (torch)"}, {"name": "renamed", "id": "kept"}])
    assert [row["id"] for row in rows] == ["int8-torch", "kept"]
    with pytest.raises(ValueError, match="share the id 'int8-torch'"):
        with_row_ids([{"name": "int8 (torch)"}, {"name": "int8 torch"}])


def test_count_parameters_counts_int8_weights():
    import copy
    import warnings

    from hfcompress import DynamicQuantConfig, compress

    model = tiny_model("bert", hidden=64, ffn=128)
    expected = count_parameters(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    ours = compress(copy.deepcopy(model), DynamicQuantConfig(modules=["attention", "ffn", "pooler", "classifier"],
                                                             embeddings=True))
    assert count_parameters(ao) == count_parameters(ours) == expected


def test_interleaved_rows():
    from hfcompress.benchmark import benchmark_rows, interleaved_latency

    big, small = tiny_model("bert", layers=4), tiny_model("bert", layers=1)
    medians = interleaved_latency({"big": big, "small": small}, batch_size=2, seq_len=16, threads=1, warmup=1, rounds=4)
    assert set(medians) == {"big", "small"} and all(v > 0 for v in medians.values())
    rows = benchmark_rows([{"name": "big", "model": big}, {"name": "small", "model": small, "extra": {"k": 1}}],
                          batch_sizes=(1,), seq_len=16, threads=1, rounds=3)
    assert [r["name"] for r in rows] == ["big", "small"] and rows[1]["k"] == 1
    assert rows[0]["latency_bs1_ms"] > 0 and rows[1]["params"] < rows[0]["params"]


def test_paired_latency_reports_ratio_quartiles_and_interval():
    import time

    from hfcompress.benchmark import paired_latency

    class Sleeper(torch.nn.Module):  # a model whose time is known: the ratio of two is their sleeps' ratio
        def __init__(self, seconds):
            super().__init__()
            self.seconds, self.config = seconds, tiny_model("bert", layers=1).config
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # where the timer puts the inputs

        def forward(self, **inputs):
            time.sleep(self.seconds)

    result = paired_latency({"slow": Sleeper(0.006), "fast": Sleeper(0.002)}, [("slow", "fast")], batch_size=1,
                            seq_len=8, threads=1, warmup=1, rounds=12, settle_ms=0)
    ratio = result["ratios"]["slow / fast"]
    assert 1.5 < ratio["median"] < 3.5
    assert ratio["ci95"][0] <= ratio["median"] <= ratio["ci95"][1]
    assert ratio["quartiles"][0] <= ratio["median"] <= ratio["quartiles"][1]
    assert result["rounds"] == 12 and set(result["median_ms"]) == {"slow", "fast"}


def test_rows_flag_a_pair_the_noise_cannot_rank():
    import itertools
    import time

    from hfcompress.benchmark import add_ratios, benchmark_rows, format_table, unrankable

    class Sleeper(torch.nn.Module):
        def __init__(self, *seconds):
            super().__init__()
            self.seconds = itertools.cycle(seconds)
            self.config = tiny_model("bert", layers=1).config
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, **inputs):
            time.sleep(next(self.seconds))

    # "noisy" takes 2 ms or 10 ms in turn against the baseline's 6 ms: half its rounds are 3x faster, half 1.7x
    # slower, so no honest ranking exists; "slow" (20 ms) is plainly slower.
    entries = [{"name": name, "model": model, "size_bytes": 1} for name, model in
               [("base", Sleeper(0.006)), ("noisy", Sleeper(0.002, 0.010)), ("slow", Sleeper(0.02))]]
    rows = benchmark_rows(entries, batch_sizes=(1,), seq_len=8, threads=1, rounds=40)
    add_ratios(rows, "base")
    noisy, slow = rows[1]["paired"]["bs1"], rows[2]["paired"]["bs1"]
    assert not noisy["rankable"] and noisy["ci95"][0] < 1 < noisy["ci95"][1]
    assert slow["rankable"] and slow["ci95"][1] < 0.5 and rows[2]["speedup_bs1"] == slow["speedup"]
    warnings = unrankable(rows)
    assert len(warnings) == 1 and warnings[0].startswith("noisy vs base at batch 1") and "--repeats" in warnings[0]
    assert " ?" in format_table(rows).splitlines()[3]


def test_timing_on_a_busy_cpu_warns(monkeypatch):
    from hfcompress import timing

    model = tiny_model("bert")
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (40.0, 40.0, 40.0))
    with pytest.warns(RuntimeWarning, match="CPU is busy"):
        timing.measure_latency(model, seq_len=8, warmup=1, repeats=2)
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert timing.warn_if_busy() == 0.1
