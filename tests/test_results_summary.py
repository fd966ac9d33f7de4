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
