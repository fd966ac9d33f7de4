"""Settings of layer truncation: keep some encoder layers, drop the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig, check_choice, check_range

KEEP = ("first", "evenly")


@dataclass
class TruncationConfig(MethodConfig):
    """Keep ``layers`` encoder layers: the first ones, or evenly spaced ones ending with the last layer.

    The usual baseline for layer reduction, and with distillation its strongest form on small
    models (benchmarks/RESULTS.md: on MiniLM-L6 / SST-2, truncation to 3 layers + distillation beat
    BERT-of-Theseus at equal budget). Fine-tune afterwards; the result is a standard architecture.
    ``keep="evenly"`` for 6 -> 3 keeps layers 1, 3, 5 (0-based); ``"first"`` keeps 0, 1, 2.

    Example:
        >>> compress(model, TruncationConfig(layers=3, keep="evenly"))
    """

    name: ClassVar[str] = "truncation"
    layers: int = field(default=3, metadata={"help": "Encoder layers to keep."})
    keep: str = field(default="evenly", metadata={"help": "first | evenly (evenly spaced, ending with the last)"})

    def __post_init__(self) -> None:
        if not isinstance(self.layers, int) or isinstance(self.layers, bool):
            raise ValueError(f"layers must be an integer; got {self.layers!r}.")
        check_range("layers", self.layers, 1)
        check_choice("keep", self.keep, KEEP)
