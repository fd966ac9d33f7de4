"""What the GLUE/CLUE scripts share: data/model arguments, YAML recipes, the teacher step, the table.

Scripts stay thin: they parse arguments and call these functions and the methods' APIs.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import (
    AutoModelForSequenceClassification,
    HfArgumentParser,
    PreTrainedModel,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .atomic import last_complete_checkpoint
from .benchmark import add_ratios, benchmark_rows, format_table, hardware, speedup_legend, unrankable, write_results
from .data import get_task, load_task, tokenize_task
from .finetune import build_trainer

logger = logging.getLogger(__name__)


@dataclass
class TaskArguments:
    """Which model and data to use."""

    model_name_or_path: str = field(
        metadata={"help": "Hub id or folder of the predecessor: already fine-tuned on the task, or a pretrained "
                          "model to fine-tune first (--teacher_epochs > 0)."}
    )
    task_name: str = field(metadata={"help": "GLUE or CLUE task: sst2, mrpc, rte, cola, ..., tnews, iflytek, ..."})
    data_dir: str | None = field(default=None, metadata={"help": "Local task folder (GLUE TSV / CLUE JSON lines); "
                                                                 "default: the Hub dataset."})
    dev_split: float | None = field(default=None, metadata={"help": "Train on this fraction of the dev file and "
                                                                    "evaluate on the rest (tasks without a train file)."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example after truncation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use a random subset of the train split."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N dev examples."})
    teacher_epochs: float = field(default=0.0, metadata={"help": "0: the model is already fine-tuned. >0: fine-tune "
                                                                 "it on the task first for this many epochs."})
    teacher_learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of that fine-tuning."})
    benchmark_repeats: int = field(default=30, metadata={"help": "Timing rounds (one pass of every model each) "
                                                                 "per latency measurement."})


@dataclass
class DistillArguments:
    """Script flags for distillation from the uncompressed model (the predecessor / teacher)."""

    distill: bool = field(default=False, metadata={"help": "Distil from the uncompressed model while training."})
    distill_alpha: float = field(default=0.5, metadata={"help": "Weight of the distillation term."})
    distill_temperature: float = field(default=2.0, metadata={"help": "Distillation temperature."})
    distill_hidden_weight: float = field(default=0.0, metadata={
        "help": "Weight of the layer-to-layer hidden-state MSE (0: logits only)."})

    def trainer_kwargs(self, teacher: PreTrainedModel) -> dict[str, Any]:
        """``teacher`` and ``distillation`` for ``CompressionTrainer``, or nothing when ``--distill`` is off."""
        if not self.distill:
            return {}
        from .distillation import DistillationConfig

        return {"teacher": teacher, "distillation": DistillationConfig(
            temperature=self.distill_temperature, alpha=self.distill_alpha, hidden_weight=self.distill_hidden_weight)}


def read_recipe(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The ``--config`` YAML recipe named in ``argv`` (``{}`` when none) and ``argv`` without that flag."""
    argv = list(argv)
    if "--config" not in argv:
        return {}, argv
    at = argv.index("--config")
    if at + 1 >= len(argv):
        raise SystemExit("--config needs a YAML file path.")
    path = Path(argv[at + 1])
    if not path.is_file():
        raise SystemExit(f"--config {path}: no such file.")
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(recipe, dict):
        raise SystemExit(f"--config {path}: expected a mapping of flag names to values.")
    return recipe, argv[:at] + argv[at + 2:]


def parse_with_recipe(dataclass_types: tuple, argv: list[str] | None = None, skip: tuple[str, ...] = ()) -> tuple:
    """Parse flags with ``HfArgumentParser``; ``--config recipe.yaml`` supplies defaults that flags override.

    Recipe keys in ``skip`` were read by the script itself (``method``: which config class).

    Example:
        >>> task_args, theseus, training = parse_with_recipe((TaskArguments, TheseusConfig, TrainingArguments))
    """
    recipe, argv = read_recipe(list(sys.argv[1:] if argv is None else argv))
    recipe_flags: list[str] = []
    if recipe:
        for key, value in recipe.items():
            if key in skip:
                continue
            values = value if isinstance(value, list) else [value]
            recipe_flags += [f"--{key}", *[str(v) for v in values]]
    parser = HfArgumentParser(dataclass_types)
    return parser.parse_args_into_dataclasses(args=recipe_flags + argv)


def load_tokenized(args: TaskArguments, tokenizer: Any, seed: int):
    """The task's train/validation splits, subset as asked and tokenized."""
    from transformers import AutoConfig

    from .adapters import check_sequence_length

    check_sequence_length(AutoConfig.from_pretrained(args.model_name_or_path), args.max_seq_length)
    dataset = load_task(args.task_name, args.data_dir, dev_split=args.dev_split, seed=seed)
    if args.max_train_samples and dataset["train"].num_rows > args.max_train_samples:
        dataset["train"] = dataset["train"].shuffle(seed=seed).select(range(args.max_train_samples))
    if args.max_eval_samples and dataset["validation"].num_rows > args.max_eval_samples:
        dataset["validation"] = dataset["validation"].select(range(args.max_eval_samples))
    return tokenize_task(dataset, tokenizer, args.task_name, max_length=args.max_seq_length)


def load_predecessor(args: TaskArguments, training: TrainingArguments, tokenizer: Any, data) -> PreTrainedModel:
    """The fine-tuned predecessor: loaded as given, or fine-tuned first when ``teacher_epochs > 0``."""
    spec = get_task(args.task_name)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path, num_labels=spec.num_labels)
    if args.teacher_epochs <= 0:
        return model
    # The last epoch is kept, not the best one on the dev set: that set is where the results are reported.
    teacher_args = TrainingArguments(**{
        **training.to_dict(),
        "output_dir": os.path.join(training.output_dir, "teacher"),
        "num_train_epochs": args.teacher_epochs,
        "max_steps": -1,
        "learning_rate": args.teacher_learning_rate,
        "eval_strategy": "no",
        "load_best_model_at_end": False,
        "push_to_hub": False,
    })
    trainer = build_trainer(model, tokenizer, args.task_name, teacher_args, data["train"], data["validation"])
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(teacher_args.output_dir)[0])
    trainer.save_model(teacher_args.output_dir)
    # Checkpoints only serve resuming the teacher's fine-tune; once it is saved they are optimizer state nobody needs.
    for checkpoint in Path(teacher_args.output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        shutil.rmtree(checkpoint)
    return trainer.model


def report(
    rows_models: list[tuple[str, Any]],
    data,
    args: TaskArguments,
    output_dir: str,
    baseline: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Benchmark each (name, model), print the table and write ``results.json`` / ``results.md``."""
    rows = benchmark_rows([{"name": name, "model": model} for name, model in rows_models],
                          eval_dataset=data["validation"], task=args.task_name, rounds=args.benchmark_repeats,
                          baseline=baseline)
    add_ratios(rows, baseline)
    spec = get_task(args.task_name)
    payload = {
        "task": args.task_name,
        "metric": spec.main_metric,
        "train_rows": data["train"].num_rows,
        "dev_rows": data["validation"].num_rows,
        "task_args": asdict(args),
        "rows": rows,
        "hardware": hardware(),
        **(extra or {}),
    }
    write_results(payload, Path(output_dir) / "results.json", Path(output_dir) / "results.md")
    print(f"\n{args.task_name} ({spec.main_metric}, dev {data['validation'].num_rows} rows, "
          f"train {data['train'].num_rows} rows)\n")
    print(format_table(rows, metric_name=spec.main_metric))
    print(speedup_legend(baseline))
    for line in unrankable(rows):
        print(f"warning: {line}")
    return payload


def quiet_libraries() -> None:
    """For scripts and the CLI, not the library: keep the Trainer's bar and our own lines, drop the libraries'
    loading and saving bars, load reports and warnings (users of the library choose their own logging)."""
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # "Writing model shards" on every save
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for ours in (r"hfcompress", r"__main__"):  # our own deprecations still reach the user
        warnings.filterwarnings("default", category=FutureWarning, module=ours)


def print_produced(model_dir: str | os.PathLike, output_dir: str | os.PathLike, args: TaskArguments) -> None:
    """The run's last line: what it produced, where, and the command to try next."""
    baseline = (os.path.join(output_dir, "teacher") if args.teacher_epochs > 0 else args.model_name_or_path)
    data = f" --data_dir {args.data_dir}" if args.data_dir else ""
    print(f"\nProduced {model_dir} (a model that loads with AutoModelForSequenceClassification after "
          f"`import hfcompress`, its card in README.md) and {Path(output_dir) / 'results.md'}. Try next: "
          f"hfcompress benchmark {baseline} {model_dir} --task {args.task_name}{data}")


__all__ = ["TaskArguments", "load_predecessor", "load_tokenized", "parse_with_recipe", "print_produced",
           "quiet_libraries", "report"]
