#!/usr/bin/env python
"""Turn a finished `hfcompress search` folder into results/search_<task>.json for RESULTS.md: every trial (held-out
score, latency at trial time and re-timed), the study's trial counts, and the chosen model's dev comparison
(OUT/results.json). Local paths are dropped.

    python benchmarks/search_results.py benchmarks/cache/search/sst2 --task sst2 --note "how it was run"
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in ("folder", "data_dir")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("search_dir")
    parser.add_argument("--task", required=True)
    parser.add_argument("--note", required=True, help="how the search was run (flags, data, budget)")
    parser.add_argument("--tag", default="")
    options = parser.parse_args()
    folder = Path(options.search_dir)
    payload = json.loads((folder / "front.json").read_text(encoding="utf-8"))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="hfcompress-search", storage=f"sqlite:///{(folder / 'study.db').resolve()}")
    payload["trial_states"] = dict(collections.Counter(t.state.name for t in study.trials))
    payload["pruned_early"] = [{"trial": t.number, "params": t.params, "short_score": t.user_attrs.get("short_score")}
                               for t in study.trials if t.state.name == "PRUNED"]
    dev = folder / "results.json"
    if dev.is_file():
        payload["dev"] = json.loads(dev.read_text(encoding="utf-8"))
    payload.update({"benchmark": "search", "task": options.task, "note": options.note})
    out = RESULTS / f"search_{options.task}{options.tag}.json"
    out.write_text(json.dumps(_clean(payload), indent=1, default=str), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
