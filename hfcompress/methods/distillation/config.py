"""Knowledge distillation settings (Hinton et al. 2015): soft targets from a teacher's logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DistillationConfig:
    """loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * task loss.

    Example:
        >>> DistillationConfig(temperature=2.0, alpha=0.5)
    """

    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature T (> 0) of both models."})
    alpha: float = field(default=0.5, metadata={"help": "Weight in [0, 1] of the distillation term."})
    method: str = field(default="distillation", init=False)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}.")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1]; got {self.alpha}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
