"""``TheseusCallback``: BERT-of-Theseus inside any ``transformers.Trainer``."""

from __future__ import annotations

import logging

from torch import nn
from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments

from ...adapters import get_adapter
from ...callbacks import CompressionCallback
from ...integration import append_step, make_step
from .config import TheseusConfig
from .model import TheseusLayers, attach_successor, detach_successor
from .scheduler import in_replacement_stage, replacing_rate

logger = logging.getLogger(__name__)


class TheseusCallback(CompressionCallback):
    """Progressive module replacement as a callback.

    On ``on_init_end`` the model's encoder layers become a predecessor/successor stack (so a
    checkpoint resume loads into the right structure); each step sets the replacement rate
    from ``state.global_step`` (so a resumed run continues its schedule) and freezes or
    unfreezes parameters for the stage; ``on_train_end`` exports the successor as a plain model
    of the same class with ``num_hidden_layers = successor_layers``.

    Example:
        >>> trainer = Trainer(model=model, args=args, train_dataset=train,
        ...                   callbacks=[TheseusCallback(TheseusConfig(successor_layers=3, steps_for_replacing=500))])
        >>> trainer.train()
        >>> trainer.model.save_pretrained("successor")  # a 3-layer BertForSequenceClassification
    """

    def __init__(self, config: TheseusConfig) -> None:
        self.config = config
        self.exported = False

    # --- set-up ----------------------------------------------------------------------------
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        self.attach(model, seed=args.seed)

    def attach(self, model: PreTrainedModel, seed: int = 42) -> TheseusLayers:
        """Attach the successor to ``model`` (idempotent)."""
        return attach_successor(model, self.config, seed=seed)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._apply_step(model, state.global_step)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._apply_step(model, state.global_step)

    def _apply_step(self, model: PreTrainedModel, step: int) -> None:
        stack = self._stack(model)
        stack.set_step(step, replacing_rate(self.config, step))
        stack.successor_used = False
        replacing = in_replacement_stage(self.config, step)
        train_rest = not replacing or self.config.train_classifier_in_replacing
        for name, parameter in model.named_parameters():
            if ".predecessor." in f".{name}.":
                parameter.requires_grad_(False)
            elif ".successor." in f".{name}.":
                parameter.requires_grad_(True)
            else:
                parameter.requires_grad_(train_rest)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        stack = self._stack(model)
        if not stack.successor_used:
            # This step's draws never used the successor: its zero gradients must not move it
            # (Adam momentum and weight decay would).
            for parameter in stack.successor.parameters():
                parameter.grad = None

    # --- export ----------------------------------------------------------------------------
    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.export(model, steps=state.global_step)

    def export(self, model: PreTrainedModel, steps: int | None = None) -> PreTrainedModel:
        """Swap the stack for the successor's layers and record provenance; returns the model."""
        if self.exported:
            return model
        predecessor_layers = len(self._stack(model).predecessor)
        detach_successor(model)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        info = {"predecessor_layers": predecessor_layers}
        if steps is not None:
            info["trained_steps"] = steps
        append_step(model, make_step(self.config.name, self.config, None, info))
        self.exported = True
        logger.info("Theseus: exported a %d-layer successor of a %d-layer predecessor.",
                    self.config.successor_layers, predecessor_layers)
        return model

    def hidden_state_depths(self, model: nn.Module) -> list[float] | None:
        """Depths of the layer outputs of the last forward (each draw mixes successor and predecessor blocks)."""
        if self.exported:
            return None
        return getattr(get_adapter(model).layers(_unwrap(model)), "output_depths", None)

    @staticmethod
    def _stack(model: nn.Module) -> TheseusLayers:
        stack = get_adapter(model).layers(_unwrap(model))
        if not isinstance(stack, TheseusLayers):
            raise ValueError("TheseusCallback: the model has no successor attached; was the callback added to the "
                             "Trainer before training (callbacks=[TheseusCallback(...)])?")
        return stack


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / accelerate wrappers
        model = model.module
    return model
