"""``CompressionTrainer``: a ``Trainer`` that applies compression configs and distils from a teacher."""

from __future__ import annotations

from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, Trainer
from transformers.utils import logging

from .atomic import last_complete_checkpoint
from .callbacks import CompressionCallback
from .compress import CompressCallback
from .integration import replay_checkpoint_structure
from .distillation import DistillationConfig, distillation_loss, hidden_state_loss
from .registry import method_for_config, methods

logger = logging.get_logger(__name__)


class CompressionTrainer(Trainer):
    """``Trainer`` plus compression callbacks built from configs and an optional teacher.

    Example:
        >>> trainer = CompressionTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
        ...                              compression=[TheseusConfig(successor_layers=3, steps_for_replacing=500)],
        ...                              teacher=teacher, distillation=DistillationConfig(alpha=0.5))
        >>> trainer.train()
    """

    def __init__(
        self,
        *args: Any,
        compression: list[Any] | None = None,
        teacher: PreTrainedModel | None = None,
        distillation: DistillationConfig | None = None,
        **kwargs: Any,
    ) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        post_training, position = [], None
        for config in compression or []:
            spec = method_for_config(config)
            if spec is not None and spec.is_training_time:
                callbacks.append(spec.callback(config))
            elif spec is not None and spec.is_post_training:
                position = len(callbacks) if position is None else position
                post_training.append(config)
            else:
                known = ", ".join(s.config_cls.__name__ for s in methods() if s.config_cls is not None)
                raise TypeError(f"CompressionTrainer cannot train with {type(config).__name__}; method configs: "
                                f"{known}.")
        if post_training:
            # Compress (in the order given, where the first one stands), then the run fine-tunes the
            # result; configs that need data calibrate on the train set.
            callbacks.insert(position, CompressCallback(post_training, dataloader=self._calibration_dataloader))
        if distillation is not None and teacher is None:
            raise ValueError("distillation=... needs teacher=<the uncompressed fine-tuned model>.")
        self.teacher = teacher
        self.distillation = distillation or (DistillationConfig() if teacher is not None else None)
        super().__init__(*args, callbacks=callbacks, **kwargs)
        if not getattr(self.accelerator.unwrap_model(self.model), "accepts_loss_kwargs", False):
            # transformers takes a forward with **kwargs for one whose loss is divided by the global item count, and
            # multiplies the loss by the process count (and skips the gradient-accumulation division) to undo the
            # per-process averaging. Task heads return a per-batch mean: under DDP on 2 processes that doubled every
            # gradient (measured on CPU: loss and grad norm 2x the single-process run). Treat the loss as the mean.
            self.model_accepts_loss_kwargs = False
        if self.teacher is not None:
            # Its forward runs under no_grad; its requires_grad flags stay the caller's, so a student
            # later deep-copied from the same teacher is not frozen.
            self.teacher.to(self.args.device).eval()

    def _calibration_dataloader(self) -> DataLoader:
        """The train set in order, unsharded: every process (and a resumed run) sees the same batches,
        so data-driven compression (pruned heads, ranks) builds the same structure everywhere."""
        if self.train_dataset is None:
            raise ValueError("This compression config needs data (requires_dataloader) and CompressionTrainer "
                             "calibrates on train_dataset: pass train_dataset=..., or compress the model first "
                             "with compress(model, config, dataloader=...).")
        dataset = self.train_dataset
        if isinstance(dataset, datasets.Dataset) and self.args.remove_unused_columns:
            dataset = self._remove_unused_columns(dataset, description="calibration")
        return DataLoader(dataset, batch_size=self.args.per_device_eval_batch_size, shuffle=False,
                          collate_fn=self.data_collator)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; ``resume_from_checkpoint=True`` takes the newest checkpoint that was written whole
        (a run killed while saving leaves a newer, half-written one, which ``Trainer`` would pick and fail on)."""
        if resume_from_checkpoint is True:
            checkpoint, skipped = last_complete_checkpoint(self.args.output_dir)
            if checkpoint is None:
                raise ValueError(f"No complete checkpoint found in output_dir {self.args.output_dir!r} (checked: "
                                 f"{[p.name for p in skipped] or 'none there'}); start without resume_from_checkpoint.")
            for path in skipped:
                logger.warning("Skipping %s: it was not written whole (the run was stopped while saving it); "
                               "resuming from %s.", path, checkpoint)
            resume_from_checkpoint = str(checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        # A checkpoint written after a structural change made during training (an iterative pruning round) holds
        # smaller tensors than the model built for this run: give the model the checkpoint's structure first.
        replay_checkpoint_structure(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def create_optimizer(self, model=None):
        # Methods that need their own parameter groups (movement scores) add them here, before
        # the scheduler is built and before a resumed run loads the optimizer state.
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        for callback in self._compression_callbacks():
            callback.extend_optimizer(self.optimizer, None, self.model)
        return optimizer

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Write hfcompress's card (steps from the record, the Trainer's measured dev metrics) to ``output_dir``.

        ``Trainer.push_to_hub`` calls this before uploading ``output_dir``. Set
        ``trainer.compression_results`` to a benchmark payload (``hfcompress.benchmark``) to add
        the full cost table.
        """
        from .hub import build_model_card

        if not self.is_world_process_zero():
            return
        results = getattr(self, "compression_results", None)
        if results is None:
            evaluations = [log for log in self.state.log_history if any(k.startswith("eval_") for k in log)]
            if evaluations:
                metrics = {k[len("eval_"):]: v for k, v in evaluations[-1].items()
                           if k.startswith("eval_") and isinstance(v, float) and not k.endswith(("loss", "runtime",
                                                                                                 "per_second"))}
                results = {"rows": [{"name": "this model (Trainer evaluation)", "metrics": metrics}]}
        card = build_model_card(self.args.output_dir, results=results, model_name=kwargs.get("model_name"),
                                base_model=kwargs.get("finetuned_from"))
        card.save(f"{self.args.output_dir}/README.md")

    def _compression_callbacks(self) -> list[CompressionCallback]:
        return [c for c in self.callback_handler.callbacks if isinstance(c, CompressionCallback)]

    def _student_output_depths(self) -> list[float] | None:
        """Depth fractions of the last forward's layer outputs, if a callback changes the stack per forward."""
        for callback in self._compression_callbacks():
            depths = callback.hidden_state_depths(self.model)
            if depths is not None:
                return depths
        return None

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        if self.teacher is None:
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        else:
            hidden = self.distillation.hidden_weight > 0
            outputs = model(**inputs, output_hidden_states=True) if hidden else model(**inputs)
            with torch.no_grad():
                teacher_outputs = self.teacher(**{k: v for k, v in inputs.items() if k != "labels"},
                                               output_hidden_states=hidden)
            loss = distillation_loss(outputs.logits, teacher_outputs.logits, outputs.get("loss"), self.distillation)
            if hidden:
                loss = loss + self.distillation.hidden_weight * hidden_state_loss(
                    outputs.hidden_states, teacher_outputs.hidden_states, self._student_output_depths())
        return (loss, outputs) if return_outputs else loss
