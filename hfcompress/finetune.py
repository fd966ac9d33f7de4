"""Plain fine-tuning on a GLUE/CLUE task: the teacher / uncompressed baseline every method starts from."""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorWithPadding, PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from .data.metrics import compute_metrics_fn


def build_trainer(
    model: PreTrainedModel,
    tokenizer: Any,
    task: str,
    args: TrainingArguments,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    *,
    trainer_cls: type[Trainer] = Trainer,
    **trainer_kwargs: Any,
) -> Trainer:
    """A ``Trainer`` (or subclass) wired for a task: padding collator and the task's metrics.

    Example:
        >>> trainer = build_trainer(model, tokenizer, "sst2", TrainingArguments("out"), train, dev)
        >>> trainer.train()
    """
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics_fn(task),
        **trainer_kwargs,
    )
    if args.logging_strategy == "no" and not args.disable_tqdm:
        # Nothing was asked to be logged: keep the bar, drop the metrics dict it prints when training ends.
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_BarOnly)
    return trainer


class _BarOnly(ProgressCallback):
    """Trainer's progress bar (steps, time left) without its printed log dicts."""

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None
