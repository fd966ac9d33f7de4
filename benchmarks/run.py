#!/usr/bin/env python
"""Run a study's declared runs: the one entry point for every benchmark.

    python benchmarks/run.py --list                      # every study and its runs, done or missing
    python benchmarks/run.py theseus                     # the runs of studies/theseus whose results are missing
    python benchmarks/run.py theseus --run theseus_sst2 --force
    python benchmarks/run.py runtimes --model mpnet-base --dry_run

A run is ``experiment`` (the study's, or the run's own) with ``args``, or a ``command`` from the repository root
(``{python}``, ``{model}``, ``{data}`` filled in), then optionally ``then``. Runs go one at a time (latency is timed
inside them: never two at once), each logged to ``cache/logs/<results>.log``. ``--model`` sets
HFCOMPRESS_BENCH_MODEL, whose results files carry the model's suffix (``_mpnet``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDIES = HERE / "studies"
RESULTS = HERE / "results"
SUFFIX = {"minilm": "", "mpnet-base": "_mpnet"}  # common.BASE_MODELS' results suffixes


def studies() -> dict[str, dict]:
    return {path.parent.name: yaml.safe_load(path.read_text(encoding="utf-8"))
            for path in sorted(STUDIES.glob("*/study.yaml"))}


def results_stems(run: dict, model: str) -> list[str]:
    """The results files a run writes for ``model``. The model suffix follows the task (common.save_run)."""
    stems = []
    for stem in run["results"]:
        if SUFFIX[model] and not stem.startswith("paired_") and SUFFIX[model] not in stem:
            for task in ("sst2", "mrpc", "rte", "tnews", "iflytek"):
                marker = f"_{task}"
                if marker in stem:
                    before, after = stem.split(marker, 1)
                    stem = f"{before}{marker}{SUFFIX[model]}{after}"
                    break
        stems.append(stem)
    return stems


def command(study: dict, run: dict, model: str) -> list[list[str]]:
    """The commands of one run, from the repository root."""
    python = sys.executable
    fill = {"python": python, "model": _model_path(model), "data": os.environ.get("HFCOMPRESS_DATA_DIR", "../shared/data")}
    if run.get("command"):
        commands = [[python, *shlex.split(run["command"].format(**fill))]]
    else:
        experiment = run.get("experiment", study["experiment"])
        commands = [[python, str(Path("benchmarks") / experiment), *shlex.split(run.get("args", ""))]]
    if run.get("then"):
        commands.append([python, *shlex.split(run["then"].format(**fill))])
    return commands


def _model_path(model: str) -> str:
    sys.path.insert(0, str(HERE))
    try:
        os.environ.setdefault("HFCOMPRESS_BENCH_MODEL", model)
        from common import base_model_path
        return base_model_path()
    except Exception as error:  # only a run whose command names {model} needs it
        return f"<{model}: {error}>"


def status(stems: list[str]) -> str:
    done = [(RESULTS / f"{stem}.json").is_file() for stem in stems]
    return "done" if all(done) else "partly done" if any(done) else "missing"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", help="a folder of benchmarks/studies/")
    parser.add_argument("--run", nargs="+", default=None, metavar="RESULTS", help="only the runs writing these results")
    parser.add_argument("--model", default=os.environ.get("HFCOMPRESS_BENCH_MODEL", "minilm"), choices=list(SUFFIX))
    parser.add_argument("--force", action="store_true", help="run even where the results file exists")
    parser.add_argument("--dry_run", "--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--list", action="store_true", help="every study's runs and whether their results exist")
    options = parser.parse_args(argv)
    known = studies()
    if options.list or not options.study:
        for key, study in known.items():
            print(f"{key}: {study['title']}")
            for run in study["runs"]:
                stems = results_stems(run, run.get("model", options.model))
                note = f" (not run: {run['not_run']})" if run.get("not_run") else ""
                print(f"  {status(stems):12s} {', '.join(stems)}{note}")
        return 0
    if options.study not in known:
        parser.error(f"no study {options.study!r}; studies: {', '.join(known)}")
    study = known[options.study]
    runs = study["runs"]
    if options.run:
        runs = [run for run in runs if set(run["results"]) & set(options.run)]
        if not runs:
            parser.error(f"no run of {options.study} writes {options.run}; runs write: "
                         + ", ".join(stem for run in study["runs"] for stem in run["results"]))
    (HERE / "cache" / "logs").mkdir(parents=True, exist_ok=True)
    for run in runs:
        model = run.get("model", options.model)  # a run made for one model says so
        env = {**os.environ, "HFCOMPRESS_BENCH_MODEL": model}
        stems = results_stems(run, model)
        if status(stems) == "done" and not options.force:
            print(f"skip (done): {', '.join(stems)}")
            continue
        if run.get("not_run") and not options.run:
            print(f"skip (not run: {run['not_run']}): {', '.join(stems)}; name it with --run to run it")
            continue
        log = HERE / "cache" / "logs" / f"{stems[0]}.log"
        for argv_ in command(study, run, model):
            print(shlex.join(argv_) + f"  > {log.relative_to(ROOT)}", flush=True)
            if options.dry_run:
                continue
            with log.open("a", encoding="utf-8") as out:
                code = subprocess.call(argv_, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            if code:
                print(f"failed ({code}): see {log}", file=sys.stderr)
                return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
