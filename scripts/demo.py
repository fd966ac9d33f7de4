#!/usr/bin/env python
"""`make demo`: fine-tune a teacher on a task, then three ways to compress it, measured in one table.

    python scripts/demo.py --config configs/demo_sst2.yaml --model_name_or_path M --data_dir D

1. BERT-of-Theseus 6 -> 3 layers (progressive module replacement; the paper's method).
2. Retraining-free pruning to half the head+FFN FLOPs, then int8 (no training).
3. A short pipeline: 3 layers + distillation from the teacher, then int8.

Each compressed model is exported to every int8 runtime installed (ONNX Runtime; OpenVINO with the extra) and the
one faster on this CPU at batch 1 is kept: which runtime wins depends on the CPU's int8 instructions (OpenVINO by
far on avx512-vnni, ONNX Runtime on some avx2-only CPUs), so it is measured, not assumed.

All rows are scored on the full dev split and timed in alternation in one run (batch 1 and 32, sequence 128),
with the 95% interval of each speedup; a Pareto plot (score vs batch-1 latency) is written beside the table.
The last lines say which row to pick for which goal, and the command that does the same to one's own model.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, TrainingArguments, set_seed

from hfcompress import CompressionTrainer, TheseusConfig
from hfcompress.atomic import writing_folder
from hfcompress.benchmark import add_ratios, benchmark_rows, format_table, hardware, speedup_legend, weights_size_bytes, write_results
from hfcompress.cpu import cpu_summary
from hfcompress.data import get_task
from hfcompress.finetune import build_trainer
from hfcompress.pipeline import load_model, reuse_finished_stages, run_pipeline
from hfcompress.scripting import TaskArguments, load_predecessor, load_tokenized, parse_with_recipe, quiet_libraries
from hfcompress.runtimes import runtimes

logger = logging.getLogger("hfcompress.demo")


@dataclass
class DemoArguments:
    """The two compressions besides Theseus."""

    kept_flops: float = field(default=0.5, metadata={"help": "Head+FFN FLOPs kept by retraining-free pruning."})
    pipeline_layers: int = field(default=3, metadata={"help": "Layers the pipeline's student keeps."})
    pipeline_steps: int = field(default=125, metadata={"help": "Distillation steps of the pipeline's layer stage."})


RUNTIMES = {"onnx_int8": "ONNX Runtime", "openvino_int8": "OpenVINO"}


def int8_formats() -> list[str]:
    """The int8 export formats installed: ONNX Runtime always, OpenVINO with the extra."""
    return [fmt for spec in runtimes(installed=True) for fmt in spec.int8_formats()]


@dataclass
class Int8Choice:
    """The int8 export kept for one model: its format, folder, and every candidate's batch-1 median (ms)."""

    format: str
    folder: Path
    timings: dict[str, float]

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.format]

    def describe(self) -> str:
        if len(self.timings) < 2:
            return f"{self.runtime} (the only int8 runtime installed)"
        times = ", ".join(f"{RUNTIMES[f]} {ms:.1f} ms" for f, ms in sorted(self.timings.items(), key=lambda kv: kv[1]))
        return f"{self.runtime} (faster here at batch 1, sequence 128: {times})"


def fastest_int8(base: dict, stages: list[dict], model: str, output: Path, repeats: int) -> Int8Choice:
    """Run ``stages`` then each installed int8 export (``output/<format>``; the stages before the export run once
    and are copied), time the results in alternation at batch 1 and keep the fastest."""
    from hfcompress.timing import interleaved_latency

    folders: dict[str, Path] = {}
    finished: list[tuple[dict, Path]] = []
    for fmt in int8_formats():
        recipe = {**base, "stages": [*stages, {"stage": "export", "format": fmt}]}
        reuse_finished_stages(recipe, output / fmt, finished)  # the float stages run once
        run_pipeline(recipe, model=model, output=output / fmt, measure=False)
        folders[fmt] = output / fmt
        finished.append((recipe, output / fmt))
    if len(folders) == 1:
        (fmt, folder), = folders.items()
        return Int8Choice(fmt, folder, {})
    timings = interleaved_latency({fmt: load_model(folder) for fmt, folder in folders.items()}, batch_size=1,
                                  seq_len=128, rounds=repeats)
    fmt = min(timings, key=timings.get)
    return Int8Choice(fmt, folders[fmt], timings)


def recipe(task_args: TaskArguments, training: TrainingArguments) -> dict:
    """The recipe settings both pipelines share (their stages are added by :func:`fastest_int8`)."""
    base = {"task": task_args.task_name, "max_seq_length": task_args.max_seq_length, "seed": training.seed,
            "training": {"per_device_train_batch_size": training.per_device_train_batch_size,
                         "learning_rate": training.learning_rate}}
    if task_args.data_dir:
        base["data_dir"] = task_args.data_dir
    if task_args.max_train_samples:
        base["max_train_samples"] = task_args.max_train_samples
    return base


def theseus_successor(teacher, tokenizer, data, task: str, theseus: TheseusConfig, training: TrainingArguments,
                      folder: Path) -> None:
    trainer = build_trainer(copy.deepcopy(teacher), tokenizer, task, training, data["train"],
                            trainer_cls=CompressionTrainer, compression=[theseus])
    trainer.train()
    with writing_folder(folder) as partial:
        trainer.save_model(str(partial))
        tokenizer.save_pretrained(partial)


def plot(rows: list[dict], metric: str, path: Path) -> bool:
    """Score against batch-1 latency, one point per row; False where matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        axis.scatter(row["latency_bs1_ms"], 100 * row["score"], s=60)
        axis.annotate(row["name"], (row["latency_bs1_ms"], 100 * row["score"]), textcoords="offset points",
                      xytext=(6, 4), fontsize=8)
    axis.set_xlabel("batch-1 latency, ms (sequence 128, this machine)")
    axis.set_ylabel(f"dev {metric}")
    axis.set_title("hfcompress demo: score vs latency (up and left is better)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def advice(rows: list[dict], task_args: TaskArguments, teacher_dir: Path, choices: list[Int8Choice]) -> list[str]:
    """Which row for which goal, from this run's numbers, and the commands that do the same to one's own model."""
    teacher, theseus, pruned, pipeline = rows
    data = f" --data_dir {task_args.data_dir}" if task_args.data_dir else ""
    shipped = {"onnx_int8": "pipeline_retraining_free_sst2.yaml", "openvino_int8": "pipeline_retraining_free_openvino_sst2.yaml"}
    config = Path(__file__).resolve().parent.parent / "configs" / shipped[choices[0].format]
    shown = os.path.relpath(config)
    config_path = shown if not shown.startswith("..") else str(config)  # as printed, it runs from here

    def drop(row: dict) -> str:
        points = 100 * (teacher["score"] - row["score"])
        return f"{points:.2f} points lost" if points >= 0 else f"{-points:.2f} points gained"

    lines = ["", "Which to pick:",
             f"- No training, nearly the teacher's score: {pruned['name']} ({pruned['speedup_bs1']:.1f}x at batch 1, "
             f"{drop(pruned)}).",
             f"- Fastest, with a few minutes of training: {pipeline['name']} ({pipeline['speedup_bs1']:.1f}x, "
             f"{drop(pipeline)}); more distillation steps win points back.",
             f"- A plain PyTorch model with half the layers: {theseus['name']} ({theseus['speedup_bs1']:.1f}x, "
             f"{drop(theseus)}).",
             "", "The same on your own fine-tuned model (replace the teacher's folder with yours; recipes in configs/, "
                 "or let `hfcompress search --max-drop 1.0` choose, see the README):",
             f"  hfcompress compress --config {config_path} --model {teacher_dir} "
             f"--task {task_args.task_name}{data} --output {teacher_dir.parent / 'my_model_pruned'}"]
    lines += ["", "int8 runtime, chosen by timing on this CPU:",
              f"- retraining-free: {choices[0].describe()}", f"- layers + KD: {choices[1].describe()}"]
    if "openvino_int8" not in choices[0].timings:
        lines.append("(OpenVINO is not installed: pip install 'hfcompress[openvino]' adds it to the choice; on CPUs "
                     "with avx512-vnni it is usually the faster one)")
    return lines


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("hfcompress").setLevel(logging.INFO)
    quiet_libraries()
    task_args, theseus, demo, training = parse_with_recipe((TaskArguments, TheseusConfig, DemoArguments,
                                                           TrainingArguments))
    training.disable_tqdm = False  # a progress bar with time left, though library logging is quiet
    set_seed(training.seed)
    out = Path(training.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(task_args.model_name_or_path)
    data = load_tokenized(task_args, tokenizer, training.seed)
    logger.info("1/4 fine-tuning the teacher on %s (%d rows)", task_args.task_name, data["train"].num_rows)
    teacher = load_predecessor(task_args, training, tokenizer, data).eval()
    teacher_dir = out / "teacher" if task_args.teacher_epochs > 0 else Path(task_args.model_name_or_path)
    layers = teacher.config.num_hidden_layers

    logger.info("2/4 BERT-of-Theseus %d -> %d layers", layers, theseus.successor_layers)
    theseus_dir = out / "theseus"
    theseus_successor(teacher, tokenizer, data, task_args.task_name, theseus, training, theseus_dir)

    base = recipe(task_args, training)
    logger.info("3/4 retraining-free pruning to %.0f%% of the head+FFN FLOPs, then int8 (no training)",
                100 * demo.kept_flops)
    pruned = fastest_int8(base, [{"stage": "compress", "method": "structured", "kept_flops": demo.kept_flops}],
                          str(teacher_dir), out / "retraining_free_int8", task_args.benchmark_repeats)
    logger.info("4/4 pipeline: %d layers + distillation (%d steps), then int8", demo.pipeline_layers,
                demo.pipeline_steps)
    kd = fastest_int8(base, [{"stage": "layers", "strategy": "truncate", "layers": demo.pipeline_layers, "keep": "evenly",
                              "training": {"max_steps": demo.pipeline_steps}}],
                      str(teacher_dir), out / "pipeline_kd_int8", task_args.benchmark_repeats)

    logger.info("measuring every model on the dev split and timing them in alternation ...")
    teacher_name = f"teacher ({layers} layers)"
    entries = [{"name": teacher_name, "model": teacher, "extra": {"folder": str(teacher_dir)}},
               {"name": f"Theseus {layers} -> {theseus.successor_layers} layers", "model": load_model(theseus_dir),
                "extra": {"folder": str(theseus_dir)}},
               {"name": f"retraining-free {demo.kept_flops:g} FLOPs + {pruned.runtime} int8",
                "model": load_model(pruned.folder), "size_bytes": weights_size_bytes(pruned.folder),
                "extra": {"folder": str(pruned.folder), "int8_timings_ms": pruned.timings}},
               {"name": f"{demo.pipeline_layers} layers + KD + {kd.runtime} int8", "model": load_model(kd.folder),
                "size_bytes": weights_size_bytes(kd.folder),
                "extra": {"folder": str(kd.folder), "int8_timings_ms": kd.timings}}]
    rows = benchmark_rows(entries, eval_dataset=data["validation"], task=task_args.task_name,
                          rounds={1: task_args.benchmark_repeats, 32: max(3, task_args.benchmark_repeats // 3)})
    add_ratios(rows, teacher_name)
    metric = get_task(task_args.task_name).main_metric
    payload = {"task": task_args.task_name, "metric": metric, "train_rows": data["train"].num_rows,
               "dev_rows": data["validation"].num_rows, "rows": rows, "hardware": hardware()}
    write_results(payload, out / "results.json", out / "results.md")
    cpu = cpu_summary()
    print(f"\n{task_args.task_name} ({metric}, dev {data['validation'].num_rows} rows, train "
          f"{data['train'].num_rows} rows; CPU int8 instructions: {cpu['int8_isa']}{', bf16' if cpu['bf16'] else ''})\n")
    print(format_table(rows, metric_name=metric, extra_columns=[("folder", "saved in", str)]))
    print(speedup_legend(teacher_name))
    if plot(rows, metric, out / "pareto.png"):
        print(f"Pareto plot: {out / 'pareto.png'}")
    print("\n".join(advice(rows, task_args, teacher_dir, [pruned, kd])))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
