"""The summary at the top of benchmarks/RESULTS.md and in the README regenerates from the results JSON."""

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _make_results():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import make_results
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return make_results


def test_summary_rows_come_from_the_named_json_rows(tmp_path):
    make_results = _make_results()
    chosen = yaml.safe_load((ROOT / "benchmarks" / "summary.yaml").read_text())
    lines = make_results.summary_table()
    assert len([line for line in lines if line.startswith("| ")]) == 1 + sum(len(entries) for entries in chosen.values())
    # Change one committed number: the table follows it.
    first = chosen["sst2"][0]
    results = tmp_path / "results"
    results.mkdir()
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        (results / path.name).write_text(path.read_text())
    payload = json.loads((results / f"{first['file']}.json").read_text())
    for row in payload["rows"]:
        if row["id"] == first["id"]:
            row["score"] = 0.12345
    (results / f"{first['file']}.json").write_text(json.dumps(payload))
    changed = make_results.summary_table(results)
    assert "| 12.35 |" in changed[2] and "| 12.35 |" not in lines[2]


def test_readme_shows_the_current_summary():
    make_results = _make_results()
    readme = (ROOT / "README.md").read_text()
    block = "\n".join(make_results.summary_block("benchmarks/RESULTS.md", "benchmarks/"))
    assert block in readme, "README summary is stale: run python benchmarks/make_results.py"
    assert "\n".join(make_results.summary_block("", "")) in (ROOT / "benchmarks" / "RESULTS.md").read_text()


def test_readme_shows_the_current_which_recipe_table():
    make_results = _make_results()
    readme = (ROOT / "README.md").read_text()
    block = "\n".join([make_results.WHICH_START, "", *make_results.which_recipe_table(), "", make_results.WHICH_END])
    assert block in readme, "README's Which recipe? table is stale: run python benchmarks/make_results.py"
    assert readme.index(make_results.WHICH_START) < readme.index("## Two commands")  # at the top


def test_the_pareto_front_keeps_exactly_the_rows_nothing_beats_and_the_plot_draws(tmp_path):
    _make_results()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import reporting
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = [{"name": n, "latency_bs1_ms": ms, "score": s, "kind": k} for n, ms, s, k in
            [("t", 100, 0.92, "teacher"), ("a", 20, 0.91, "hfcompress"), ("b", 25, 0.90, "hfcompress"),
             ("c", 40, 0.91, "hfcompress"), ("d", 50, 0.93, "hfcompress"), ("p", 45, 0.88, "peer")]]
    assert [row["name"] for row in reporting.pareto_front(rows)] == ["a", "d"]
    for row in rows:
        beaten = any(o["latency_bs1_ms"] <= row["latency_bs1_ms"] and o["score"] >= row["score"] and o is not row
                     for o in rows)
        assert (row in reporting.pareto_front(rows)) == (not beaten)
    reporting.pareto_plot(rows, "accuracy", tmp_path / "plot.png", "title")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _pipeline_report():
    import importlib.util

    _make_results()  # puts `reporting` in sys.modules, which the report imports
    spec = importlib.util.spec_from_file_location("pipeline_report", ROOT / "benchmarks/studies/pipeline/report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(row_id, kind, f1, accuracy, bs1, bs32):
    return {"id": row_id, "name": row_id, "kind": kind, "score": f1, "metrics": {"f1": f1, "accuracy": accuracy},
            "latency_bs1_ms": bs1, "latency_bs32_ms": bs32}


def test_openvino_targets_judge_every_metric_and_both_batch_sizes():
    report = _pipeline_report()
    rows = [_row("teacher", "teacher", 0.90, 0.85, 80.0, 800.0),
            _row("int8-ov", "hfcompress", 0.899, 0.848, 20.0, 200.0),      # -0.1 / -0.2 points at 4x: met
            _row("fast-but-acc", "hfcompress", 0.90, 0.80, 8.0, 80.0),     # F1 level, accuracy -5.9%: not within
            _row("slow-bs32", "hfcompress", 0.89, 0.84, 9.0, 200.0),       # within 2%, 8.9x at bs1, 4x at bs32
            _row("peer", "peer", 0.90, 0.85, 5.0, 50.0)]
    lines = "\n".join(report.openvino_targets([{"task": "mrpc", "tag": "_openvino", "rows": rows,
                                                "hardware": {"int8_isa": "avx512-vnni"}}]))
    assert "OpenVINO int8 of the teacher: f1 89.90 (-0.10), accuracy 84.80 (-0.20), 4.00x / 4.00x" in lines
    assert "**met**" in lines.split("\n")[2]
    # The fastest within 2% on F1 *and* accuracy is slow-bs32 (fast-but-acc loses accuracy); it misses on batch 32.
    assert "fastest pipeline within 2% relative (every metric): **slow-bs32**" in lines
    assert "batch 32) **missed**" in lines
    assert report.openvino_targets([{"task": "mrpc", "rows": rows[:1]}]) == []  # no OpenVINO rows: nothing said


def test_seed_spread_lists_trained_rows_and_settles_only_pairs_that_keep_their_order():
    report = _pipeline_report()

    def run(seed, kd, plain, rf):
        tag = "_openvino" if seed == 42 else f"_openvino_seed{seed}"
        return {"task": "sst2", "tag": tag, "seed": seed, "rows": [
            _row("teacher", "teacher", 0.86, 0.86, 20, 500), _row("kd", "hfcompress", kd, kd, 5, 70),
            _row("plain", "peer", plain, plain, 10, 250), _row("rf", "hfcompress", rf, rf, 8, 150),
            _row("int8", "hfcompress", 0.85, 0.85, 8, 150)]}

    lines = report.seed_spread([run(42, 0.83, 0.82, 0.825), run(43, 0.835, 0.81, 0.84), run(44, 0.83, 0.825, 0.82)])
    text = "\n".join(lines)
    assert "| kd | 83.00 | 83.50 | 83.00 | 83.17 |" in text
    assert "| int8 |" not in text  # the same on every seed: not a trained row
    # kd > plain on every seed; kd vs rf and rf vs plain swap between seeds.
    assert "Of 3 pairs of rows within 2 points on seed 42, 1 keep their order" in text
    assert "kd above plain on every seed (by 0.50-2.50)" in text
    assert report.seed_spread([run(42, 0.83, 0.82, 0.825)]) == []  # one seed: nothing to spread
