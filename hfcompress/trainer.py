"""``CompressionTrainer``: a ``Trainer`` that applies compression configs and distils from a teacher."""

from __future__ import annotations

from typing import Any, Callable

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, Trainer, TrainerCallback

from .adapters import get_adapter
from .compress import CompressCallback, is_post_training_config
from .methods.distillation import DistillationConfig, distillation_loss, hidden_state_loss

_CALLBACK_FACTORIES: dict[type, Callable[[Any], TrainerCallback]] = {}


def register_training_method(config_cls: type, factory: Callable[[Any], TrainerCallback]) -> None:
    """Let ``CompressionTrainer(compression=[config_cls(...)])`` build the method's callback."""
    _CALLBACK_FACTORIES[config_cls] = factory


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
        for config in compression or []:
            factory = _CALLBACK_FACTORIES.get(type(config))
            if factory is None and is_post_training_config(config):
                # Compress first, then the run fine-tunes the result; configs that need data
                # calibrate on the train set.
                callbacks.append(CompressCallback(config, dataloader=self._calibration_dataloader))
                continue
            if factory is None:
                known = ", ".join(c.__name__ for c in _CALLBACK_FACTORIES)
                raise TypeError(f"CompressionTrainer cannot train with {type(config).__name__}; training-time "
                                f"configs: {known}; or any config that hfcompress.compress() takes.")
            callbacks.append(factory(config))
        if distillation is not None and teacher is None:
            raise ValueError("distillation=... needs teacher=<the uncompressed fine-tuned model>.")
        self.teacher = teacher
        self.distillation = distillation or (DistillationConfig() if teacher is not None else None)
        super().__init__(*args, callbacks=callbacks, **kwargs)
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

    def create_optimizer(self, model=None):
        # Methods that need their own parameter groups (movement scores) add them here, before
        # the scheduler is built and before a resumed run loads the optimizer state.
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        for callback in self.callback_handler.callbacks:
            if hasattr(callback, "extend_optimizer"):
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

    def _student_output_depths(self) -> list[float] | None:
        """Depth fractions of the last forward's layer outputs, if the layer stack changes per forward."""
        try:
            layers = get_adapter(self.model).layers(self.model)
        except (ValueError, AttributeError):
            return None
        return getattr(layers, "output_depths", None)

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
        if model.training:
            for callback in self.callback_handler.callbacks:
                extra = callback.extra_loss(self.model, self.state.global_step) if hasattr(callback, "extra_loss") else None
                if extra is not None:
                    loss = loss + extra
        return (loss, outputs) if return_outputs else loss
