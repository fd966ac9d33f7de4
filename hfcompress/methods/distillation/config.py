"""Knowledge distillation settings: soft targets from a teacher's logits (Hinton et al. 2015), optionally
its hidden states too (layer-to-layer, as in Patient KD, Sun et al. 2019, and TinyBERT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig


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

