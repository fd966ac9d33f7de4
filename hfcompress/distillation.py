"""Knowledge distillation, the trainer's concern (not a method): soft targets from a teacher's logits (Hinton et al.
2015), optionally its hidden states too (layer-to-layer, as in Patient KD, Sun et al. 2019, and TinyBERT).
``CompressionTrainer(teacher=..., distillation=DistillationConfig(...))`` adds this loss to any method's training.

Example:
    >>> trainer = CompressionTrainer(model=student, teacher=teacher, distillation=DistillationConfig(alpha=0.5),
    ...                              args=args, train_dataset=train)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from .method_config import MethodConfig


@dataclass
class DistillationConfig(MethodConfig):
    """loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * task loss
    [+ hidden_weight * mean over student layers of MSE(student layer output, teacher layer output)].

    The hidden-state term needs equal hidden sizes. Student layer i (1-based) of L_s is matched to
    teacher layer i * L_t / L_s: the same layer when depths are equal (weight sharing, low-rank,
    pruning), the last layer of each block when the student is shallower (Theseus successor).
    During Theseus replacement training, where each forward mixes successor and predecessor
    layers, each layer output is matched to the teacher layer at the same depth.
    It asks both models for ``output_hidden_states``: more memory per step.

    Example:
        >>> DistillationConfig(temperature=2.0, alpha=0.5)
        >>> DistillationConfig(hidden_weight=1.0)  # also match every layer's output
    """

    name: ClassVar[str] = "distillation"

    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature T (> 0) of both models."})
    alpha: float = field(default=0.5, metadata={"help": "Weight in [0, 1] of the distillation term."})
    hidden_weight: float = field(default=0.0, metadata={
        "help": "Weight (>= 0) of the layer-to-layer hidden-state MSE; 0 turns it off."})

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}.")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1]; got {self.alpha}.")
        if self.hidden_weight < 0:
            raise ValueError(f"hidden_weight must be >= 0 (0 turns the hidden-state term off); got {self.hidden_weight}.")

def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    task_loss: torch.Tensor | None,
    config: DistillationConfig,
) -> torch.Tensor:
    """Blend of soft-target KL (or MSE for one-output regression heads) and the task loss.

    Example:
        >>> loss = distillation_loss(student(**x).logits, teacher(**x).logits, outputs.loss, DistillationConfig())
    """
    teacher_logits = teacher_logits.detach()
    if student_logits.shape[-1] == 1:
        soft = F.mse_loss(student_logits, teacher_logits)
    else:
        t = config.temperature
        soft = F.kl_div(
            F.log_softmax(student_logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1), reduction="batchmean"
        ) * (t * t)
    if task_loss is None:
        return soft
    return config.alpha * soft + (1.0 - config.alpha) * task_loss


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    depths: Sequence[float] | None = None,
) -> torch.Tensor:
    """Mean MSE between each student layer's output and its matched teacher layer's output.

    Both tuples are ``output_hidden_states`` (embeddings first, then one entry per layer). Student
    layer i of L_s is matched to teacher layer floor(depths[i-1] * L_t), where ``depths`` gives the
    fraction of the full depth each student layer output stands for (default i / L_s: the same
    layer for equal depths, the end of each block for a shallower student). A student whose depth
    changes per forward (a Theseus stack in replacement training) passes its own.

    Example:
        >>> hidden_state_loss(student(**x, output_hidden_states=True).hidden_states,
        ...                   teacher(**x, output_hidden_states=True).hidden_states)
    """
    student_layers, teacher_layers = len(student_hidden) - 1, len(teacher_hidden) - 1
    if student_layers < 1 or teacher_layers < student_layers:
        raise ValueError(f"Hidden-state distillation maps {student_layers} student layers onto {teacher_layers} "
                         "teacher layers: the student must have at least one layer and no more than the teacher.")
    if student_hidden[-1].shape[-1] != teacher_hidden[-1].shape[-1]:
        raise ValueError(f"Hidden-state distillation needs equal hidden sizes; student {student_hidden[-1].shape[-1]}, "
                         f"teacher {teacher_hidden[-1].shape[-1]}. Set hidden_weight=0.")
    if depths is None:
        depths = [i / student_layers for i in range(1, student_layers + 1)]
    elif len(depths) != student_layers:
        raise ValueError(f"depths has {len(depths)} entries for {student_layers} student layer outputs.")
    # The small epsilon keeps 2/6 * 6 = 1.9999... on teacher layer 2.
    targets = [math.floor(d * teacher_layers + 1e-6) for d in depths]
    if not all(1 <= t <= teacher_layers for t in targets):
        raise ValueError(f"depths must lie in (0, 1] and reach at least one teacher layer each; got {list(depths)}.")
    losses = [F.mse_loss(student_hidden[i], teacher_hidden[t].detach()) for i, t in enumerate(targets, start=1)]
    return torch.stack(losses).mean()
