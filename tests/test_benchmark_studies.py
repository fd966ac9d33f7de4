"""benchmarks/ as declared studies: every results file is declared by a study's run, every study renders, and rows
are found by id (a row's shown name can change without dropping it from RESULTS.md)."""

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def make_results():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import make_results
    finally:
        sys.path.remove(str(BENCHMARKS))
    return make_results


def test_every_results_file_is_declared_by_a_study_run():
    declared = {stem for path in BENCHMARKS.glob("studies/*/study.yaml")
                for run in yaml.safe_load(path.read_text())["runs"] for stem in run["results"]}
    committed = {path.stem for path in (BENCHMARKS / "results").glob("*.json")}
    assert committed - declared == set(), "results files no study declares: add a run to its study.yaml"


def test_every_study_has_what_the_runner_and_renderer_need(make_results):
    studies = make_results.load_studies()
    assert len({study.order for study in studies}) == len(studies)
    for study in studies:
        assert study.spec["runs"] and study.spec.get("question") and study.spec.get("baselines"), study.key
        for run in study.spec["runs"]:
            assert run.get("args") is not None or run.get("command"), (study.key, run)
        assert study.hook("nothing", []) == []


def test_every_committed_row_has_a_unique_id():
    for path in (BENCHMARKS / "results").glob("*.json"):
        rows = json.loads(path.read_text()).get("rows")
        if isinstance(rows, list) and rows and "name" in rows[0]:
            ids = [row["id"] for row in rows]
            assert len(ids) == len(set(ids)), path.name


def test_a_renamed_row_still_renders_and_a_missing_id_stops(make_results, tmp_path, monkeypatch):
    chosen = yaml.safe_load((BENCHMARKS / "summary.yaml").read_text())
    before = make_results.summary_table()
    first = chosen["sst2"][0]
    results = tmp_path / "results"
    results.mkdir()
    for path in (BENCHMARKS / "results").glob("*.json"):
        (results / path.name).write_text(path.read_text())
    payload = json.loads((results / f"{first['file']}.json").read_text())
    row = next(row for row in payload["rows"] if row["id"] == first["id"])
    row["name"] = "a new label for the same row"
    (results / f"{first['file']}.json").write_text(json.dumps(payload))
    assert make_results.summary_table(results) == before
    row["id"] = "gone"
    (results / f"{first['file']}.json").write_text(json.dumps(payload))
    with pytest.raises(SystemExit, match=f"no row with id {first['id']!r}"):
        make_results.summary_table(results)


def test_runner_lists_and_dry_runs(capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import run
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert run.main(["--list"]) == 0
    assert "theseus_sst2" in capsys.readouterr().out
    assert run.main(["theseus", "--run", "theseus_mrpc", "--force", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "benchmarks/theseus.py --tasks mrpc" in out
    assert run.results_stems({"results": ["theseus_sst2_3ep"]}, "mpnet-base") == ["theseus_sst2_mpnet_3ep"]
    with pytest.raises(SystemExit):
        run.main(["no_such_study"])
