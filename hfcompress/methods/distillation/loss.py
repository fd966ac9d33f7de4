"""The distillation loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import DistillationConfig


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
