"""Render benchmarks/RESULTS.md from the studies in benchmarks/studies/ and their results (no number is typed by hand).

    python benchmarks/make_results.py

Each study folder holds a ``study.yaml`` (title, order, the extra columns of its tables, the runs behind its
results), its prose as markdown, and optionally a ``report.py`` with ``summary(payloads)`` / ``appendix(payloads)``.
Everything else is generic: a section per study with its results files' tables (``results/<study>_*.json``
whose ``benchmark`` is the study), paired tests (``results/paired_<study>_*.json``), and the summary table of
``summary.yaml``, which names rows by id.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
STUDIES = HERE / "studies"
sys.path.insert(0, str(HERE.parent))
sys.path.append(str(HERE))  # reporting, for the studies' report.py

from hfcompress.benchmark import format_table  # noqa: E402
from reporting import RESULTS, by_id, hardware_line, study_report  # noqa: E402


@dataclass
class Study:
    """One folder of benchmarks/studies/: its declaration and its report hooks."""

    key: str
    title: str
    order: int
    short_title: str | None = None
    tables: bool = True
    columns: list[dict[str, Any]] = field(default_factory=list)
    report: ModuleType | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    def extra_columns(self) -> list[tuple[str, str, Any]]:
        """study.yaml's ``columns`` (key, header, format, optional scale) as format_table's extra columns."""
        def formatter(pattern: str, scale: float):
            return lambda value: pattern.format(value * scale)
        return [(c["key"], c["header"], formatter(c["format"], c.get("scale", 1))) for c in self.columns]

    def hook(self, name: str, payloads: list[dict]) -> list[str]:
        function = getattr(self.report, name, None)
        return function(payloads) if function else []


def load_studies(root: Path = STUDIES) -> list[Study]:
    """Every study folder, in its declared order."""
    studies = []
    for path in sorted(root.glob("*/study.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        studies.append(Study(key=path.parent.name, title=spec["title"], order=spec["order"],
                             short_title=spec.get("short_title"), tables=spec.get("tables", True),
                             columns=spec.get("columns", []), report=study_report(path.parent.name), spec=spec))
    return sorted(studies, key=lambda study: study.order)


def study_payloads(study: Study) -> list[dict]:
    """The study's results files with rows; a run saved without its --tag carries it in its file name only."""
    payloads = []
    for path in sorted(RESULTS.glob(f"{study.key}_*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("benchmark") == study.key and payload.get("rows"):
            payloads.append(payload)
    return payloads


def describe(payload: dict) -> str:
    data = payload.get("data", {})
    teacher = payload.get("teacher", {})
    parts = [f"task **{payload['task']}** ({payload['metric']} on {data.get('dev_rows', '?')} dev rows)"
             + (f", run `{payload['tag']}`" if payload.get("tag") else "")]
    if data.get("train_rows"):
        subset = " (random subset of the train file)" if data.get("train_subset_of") else ""
        split = " (80/20 split of the dev file: no train file here)" if data.get("dev_split") else ""
        parts.append(f"train {data['train_rows']} rows{subset}{split}, max length {data.get('max_length')}")
    if payload.get("from_base"):
        parts.append(f"no teacher: every row fine-tuned from pretrained MiniLM for {payload['finetune_steps']} steps "
                     f"at lr {payload['finetune_lr']}, batch 32, last step kept (QAT rows with int8 simulated "
                     "throughout)")
    elif teacher.get("note"):
        parts.append(teacher["note"])
    elif teacher:
        parts.append(f"teacher: {teacher.get('epochs')} epochs, best dev {100 * teacher.get('best_dev', 0):.2f} "
                     f"(per epoch: {', '.join(f'{100 * v:.1f}' for _, v in teacher.get('dev_history', []))})")
    if payload.get("steps"):
        # Theseus runs keep their learning rates in the grid (below the table), not in the payload.
        rates = (f", lr {payload['learning_rate']}" if payload.get("learning_rate") else "") + \
            (f" (scores {payload['scores_learning_rate']})" if payload.get("scores_learning_rate") else "")
        parts.append(f"every trained variant: {payload['steps']} steps, batch {payload.get('batch_size', 32)}{rates}"
                     + (", with distillation from the teacher" if payload.get("distillation") else ""))
    if payload.get("finetune_steps") and not payload.get("from_base"):
        parts.append(f"fine-tune after compression: {payload['finetune_steps']} steps at lr {payload['finetune_lr']}"
                     + (" with distillation from the teacher" if payload.get("finetune_distillation") else "")
                     + (f" (logits and every layer's hidden states, hidden-state weight {payload['finetune_hidden_weight']})"
                        if payload.get("finetune_hidden_weight") else ""))
    if payload.get("iterations", 1) > 1:
        rounds, every = payload["iterations"], payload["finetune_steps"] // (payload["iterations"] + 1)
        # Runs before the payload stored prune_steps: structured.py's formula.
        steps = payload.get("prune_steps") or [every * r for r in range(rounds)]
        parts.append(f"pruned in {rounds} rounds inside that fine-tune (at steps "
                     f"{', '.join(map(str, steps))}), importance recomputed each round")
    return "; ".join(parts) + "."


def grid_table(payload: dict) -> str:
    grid = payload.get("grid") or {}
    if not grid:
        return ""
    lrs = sorted({g["lr"] for g in grid.values()})
    names = list(dict.fromkeys(g["name"] for g in grid.values()))
    lines = ["| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for name in names:
        cells = []
        for lr in lrs:
            hit = next((g for g in grid.values() if g["name"] == name and g["lr"] == lr), None)
            cells.append("" if hit is None else f"{100 * hit['score']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_comparisons(prefix: str) -> list[str]:
    """Paired tests of two models on the same dev rows (benchmarks/paired.py), for one section."""
    files = sorted(RESULTS.glob(f"paired_{prefix}_*.json"))
    if not files:
        return []
    lines = ["Paired on the same dev rows (benchmarks/paired.py: exact McNemar test on the rows exactly one model "
             "gets right; 95% paired-bootstrap interval of the score difference, 10,000 resamples):", "",
             "| task | A | B | A - B | rows only A right | rows only B right | McNemar p | 95% interval of A - B |",
             "|---" * 8 + "|"]
    for path in files:
        r = json.loads(path.read_text())
        low, high = r["difference_ci95"]
        lines.append(f"| {r['task']} ({r['metric']}) | {r['a']['name']} ({r['a']['results']}) | {r['b']['name']} "
                     f"({r['b']['results']}) | {100 * r['difference']:+.2f} | {r['rows_only_a_right']} | "
                     f"{r['rows_only_b_right']} | {r['mcnemar_exact_p']:.3f} | [{100 * low:+.2f}, {100 * high:+.2f}] |")
    return lines + [""]


SUMMARY_START, SUMMARY_END = "<!-- summary:start (benchmarks/make_results.py) -->", "<!-- summary:end -->"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def summary_table(results_dir: Path = RESULTS, link_prefix: str = "") -> list[str]:
    """One table: per method and per pipeline, its best committed setting (benchmarks/summary.yaml names the
    file and row id), score against the teacher of the same run, speedups, file size and a link to its section.
    Every number is read from the results JSON; a missing file or row id stops the rendering."""
    studies = {study.key: study for study in load_studies()}
    chosen = yaml.safe_load((HERE / "summary.yaml").read_text(encoding="utf-8"))
    lines = ["| model | task | method (best committed setting) | score | % of teacher | speedup bs1 | speedup bs32 | "
             "file | details |", "|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for task, entries in chosen.items():
        for entry in entries:
            payload = json.loads((results_dir / f"{entry['file']}.json").read_text(encoding="utf-8"))
            row, teacher = by_id(payload["rows"], entry["id"]), payload["rows"][0]
            if entry.get("note"):  # a caveat of that run, said under the table and marked on the row
                if entry["note"] not in notes:
                    notes.append(entry["note"])
                entry = {**entry, "method": entry["method"] + " " + "*" * (notes.index(entry["note"]) + 1)}
            if row is None:
                raise SystemExit(f"summary.yaml: no row with id {entry['id']!r} in {entry['file']}.json "
                                 f"(ids: {[r['id'] for r in payload['rows']]})")
            study = studies[entry["section"]]
            link = f"[{study.short_title or study.title}]({link_prefix}#{_anchor(study.title)})"
            lines.append(
                f"| {model_name(payload)} | {task.upper()} ({payload['metric']}) | {entry['method']} | "
                f"{100 * row['score']:.2f} | "
                f"{100 * row['score'] / teacher['score']:.1f}% of {100 * teacher['score']:.2f} | "
                f"{teacher['latency_bs1_ms'] / row['latency_bs1_ms']:.2f}x | "
                f"{teacher['latency_bs32_ms'] / row['latency_bs32_ms']:.2f}x | "
                f"{row['size_bytes'] / 2**20:.1f} MB | {link} |")
    return lines + ([""] + [f"{'*' * (i + 1)} {note}" for i, note in enumerate(notes)] if notes else [])



def model_name(payload: dict) -> str:
    """The base model a results file's teacher was fine-tuned from (runs before the base-size model name none)."""
    return "MPNet-base (12 layers)" if "mpnet" in str(payload.get("model", "")) else "MiniLM-L6"


WHICH_START, WHICH_END = "<!-- which-recipe:start (benchmarks/make_results.py) -->", "<!-- which-recipe:end -->"


def which_recipe_table(results_dir: Path = RESULTS) -> list[str]:
    """The README's "Which recipe?" table: per goal (benchmarks/which_recipe.yaml), the command and the committed
    result it gave on each task, read from the results JSON by row id (score against the teacher of the same run,
    batch-1 speedup over it in torch fp32)."""
    goals = yaml.safe_load((HERE / "which_recipe.yaml").read_text(encoding="utf-8"))
    tasks = list(dict.fromkeys(task for goal in goals for task in goal["results"]))
    hosts: set[str] = set()
    lines = ["| goal | run | " + " | ".join(f"{task.upper()}: score (teacher), speedup bs1" for task in tasks) + " |",
             "|---" * (2 + len(tasks)) + "|"]
    for goal in goals:
        cells = []
        for task in tasks:
            where = goal["results"].get(task)
            if where is None:
                cells.append("not measured")
                continue
            payload = json.loads((results_dir / f"{where['file']}.json").read_text(encoding="utf-8"))
            row, teacher = by_id(payload["rows"], where["id"]), payload["rows"][0]
            if row is None:
                raise SystemExit(f"which_recipe.yaml: no row with id {where['id']!r} in {where['file']}.json")
            if payload.get("hardware", {}).get("int8_isa"):
                hosts.add(payload["hardware"]["int8_isa"])
            cells.append(f"{100 * row['score']:.2f} ({100 * teacher['score']:.2f}), "
                         f"{teacher['latency_bs1_ms'] / row['latency_bs1_ms']:.1f}x")
        lines.append(f"| {goal['goal']} | `{goal['command']}` | " + " | ".join(cells) + " |")
    return lines + ["", f"MiniLM-L6 teachers fine-tuned per task; speedups at batch 1, sequence 128, 2 threads, on "
                        f"{' / '.join(sorted(hosts))} hosts (int8 speedups depend on the CPU's int8 instructions). "
                        "M: your fine-tuned model; T: its task (add `--data_dir` for local files); the configs are SST-2's, and the "
                        "MRPC rows of the training recipes ran with MRPC's settings (configs/pipeline_mrpc.yaml: 128 "
                        "tokens, 345 steps a stage). Generated from "
                        "`benchmarks/which_recipe.yaml` and the results files by `benchmarks/make_results.py`."]


def summary_block(link_prefix: str, image_prefix: str) -> list[str]:
    """The summary table with its caption and a score/latency plot per model, as RESULTS.md and the README show it."""
    return [SUMMARY_START, "",
            "Each row: one committed run, its teacher measured in the same run (speedups are that run's batch-1 and "
            "batch-32 latency ratios on this 2-core CPU; SST-2 dev has a standard error of about 1.3 points). "
            "Generated from `benchmarks/results/*.json` with the rows named in `benchmarks/summary.yaml`.", "",
            *summary_table(link_prefix=link_prefix), "",
            *[line for stem, caption in PLOTS if (HERE / "results" / f"{stem}.png").is_file()
              for line in (f"![{caption}]({image_prefix}results/{stem}.png)", "")], SUMMARY_END]


# The score/latency plots the summary shows, one per model (each only once its run is committed).
PLOTS = [("pipeline_sst2", "MiniLM-L6, SST-2: score vs batch-1 latency, every pipeline"),
         ("pipeline_sst2_mpnet_openvino", "all-mpnet-base-v2, SST-2: score vs batch-1 latency, pipelines in every "
                                          "runtime (one run)"),
         ("runtimes_sst2_mpnet", "all-mpnet-base-v2, SST-2: score vs batch-1 latency, every runtime"),
         ("runtimes_mrpc_mpnet", "all-mpnet-base-v2, MRPC: score vs batch-1 latency, every runtime")]


def update_readme(path: Path = HERE.parent / "README.md") -> None:
    """Replace the README's summary block (between the markers) with the current one."""
    text = path.read_text(encoding="utf-8")
    if SUMMARY_START not in text or SUMMARY_END not in text:
        raise SystemExit(f"{path} has no summary markers ({SUMMARY_START} ... {SUMMARY_END})")
    head, rest = text.split(SUMMARY_START, 1)
    tail = rest.split(SUMMARY_END, 1)[1]
    block = "\n".join(summary_block("benchmarks/RESULTS.md", "benchmarks/"))
    text = head + block + tail
    if WHICH_START not in text or WHICH_END not in text:
        raise SystemExit(f"{path} has no which-recipe markers ({WHICH_START} ... {WHICH_END})")
    head, rest = text.split(WHICH_START, 1)
    tail = rest.split(WHICH_END, 1)[1]
    path.write_text(head + "\n".join([WHICH_START, "", *which_recipe_table(), "", WHICH_END]) + tail,
                    encoding="utf-8")


def study_section(study: Study) -> list[str]:
    """One study's section: its report's summary, paired tests, a table per results file, its appendix."""
    payloads = study_payloads(study)
    out = [f"## {study.title}", ""]
    if not payloads:
        return out + ["Not measured yet.", ""]
    out += study.hook("summary", payloads)
    if not study.tables:
        return out
    out += paired_comparisons(study.key)
    for payload in payloads:
        rows, extra = payload["rows"], study.extra_columns()
        if payload["metric"] != "accuracy" and any("accuracy" in row.get("metrics", {}) for row in rows):
            # MRPC F1 of "always paraphrase" is 81.2: accuracy shows which rows collapsed to it.
            rows = [{**row, "dev_accuracy": row.get("metrics", {}).get("accuracy")} for row in rows]
            extra.insert(0, ("dev_accuracy", "accuracy", lambda v: f"{100 * v:.2f}"))
        out += [describe(payload), "", format_table(rows, payload["metric"], extra), ""]
        if payload.get("note"):
            out += [payload["note"], ""]
        grid = grid_table(payload)
        if grid:
            out += ["Learning-rate grid (dev score of every run; the table above shows each variant's best):", "",
                    grid, ""]
        out += [hardware_line(payload.get("hardware", {})), ""]
    return out + study.hook("appendix", payloads)


def main() -> None:
    out = ["# Results", "",
           "Generated by `benchmarks/make_results.py` from `benchmarks/results/*.json`. Real all-MiniLM-L6-v2 weights,",
           "real GLUE/CLUE data, each table one run with its baselines; hardware in each JSON. Latency: the models of a",
           "table are timed in alternation (one forward each per round, 30 rounds, after warm-up), median per model,",
           "sequence length 128, 2 threads; on this shared 2-core machine batch-1 medians still move by about 10% between",
           "runs, so read speedups to one digit. SST-2 dev has one standard error of about 1.3 points: differences",
           "under 2 points are not wins. Empty params for ONNX rows: the ONNX graph is not counted. Since 2026-11-26",
           "each timed pass starts 20 ms after the previous one ended: torch's OpenMP threads spin for a while after a",
           "forward and slowed an ONNX Runtime pass started at once by ~15%. The int8 tables were rerun with the pause;",
           "tables of torch models only were timed back to back, where a model never waits on another runtime's threads.", "",
           "## Summary", "", *summary_block("", ""), ""]
    for study in load_studies():
        out += study_section(study)
    (HERE / "RESULTS.md").write_text("\n".join(out), encoding="utf-8")
    update_readme()
    print(f"wrote {HERE / 'RESULTS.md'} and the README's summary")


if __name__ == "__main__":
    main()
