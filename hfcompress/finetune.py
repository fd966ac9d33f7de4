"""Plain fine-tuning on a GLUE/CLUE task: the teacher / uncompressed baseline every method starts from."""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorWithPadding, PreTrainedModel, Trainer, TrainingArguments

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
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics_fn(task),
        **trainer_kwargs,
    )
