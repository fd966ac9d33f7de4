"""Settings of BERT-of-Theseus progressive module replacement (Xu et al. 2020, arXiv 2002.02925)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig

SCHEDULERS = ("constant", "linear")
SUCCESSOR_INITS = ("first", "block_last")


@dataclass
class TheseusConfig(MethodConfig):
    """Compress L predecessor layers into ``successor_layers`` by progressive module replacement.

    Each successor layer i replaces the block of k = L / successor_layers consecutive predecessor
    layers i*k .. i*k+k-1. In replacement training (stage 1) every block independently runs its
    successor layer with probability p, else its original k layers, and only successor layers
    train. Then (stage 2) p = 1 and the successor is fine-tuned with its embeddings and classifier.

    ``scheduler="constant"``: p = ``replacing_rate`` for ``steps_for_replacing`` steps, then stage 2.
    ``scheduler="linear"``: p_t = min(1, ``scheduler_linear_k`` * t + ``replacing_rate``); stage 2
    starts when p_t reaches 1.

    Example:
        >>> TheseusConfig(successor_layers=3, replacing_rate=0.5, steps_for_replacing=500)
    """

    name: ClassVar[str] = "theseus"

    successor_layers: int = field(default=3, metadata={"help": "Layers of the compressed (successor) model."})
    replacing_rate: float = field(
        default=0.5,
        metadata={"help": "Constant schedule: replacement probability p in (0, 1]. Linear: its start value b."},
    )
    scheduler: str = field(
        default="constant",
        metadata={"help": "Replacement schedule: constant (alias none) | linear.", "aliases": ["--scheduler_type"]},
    )
    scheduler_linear_k: float = field(
        default=0.0006, metadata={"help": "Linear schedule: slope k of p_t = min(1, k*t + b), per optimizer step."}
    )
    steps_for_replacing: int = field(
        default=0,
        metadata={"help": "Constant schedule: optimizer steps of replacement training before stage 2 (p = 1)."},
    )
    successor_init: str = field(
        default="block_last",
        metadata={"help": "Copy each successor layer from the first predecessor layers (first) or from the last "
                          "layer of its block (block_last)."},
    )
    train_classifier_in_replacing: bool = field(
        default=False, metadata={"help": "Also train embeddings, pooler and classifier during stage 1."}
    )
    replacement_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the replacement draws, identical on every process (default: the Trainer's seed)."},
    )

    def __post_init__(self) -> None:
        if not isinstance(self.successor_layers, int) or self.successor_layers < 1:
            raise ValueError(f"successor_layers must be a positive integer; got {self.successor_layers!r}.")
        if not 0 < self.replacing_rate <= 1:
            raise ValueError(
                f"replacing_rate must lie in (0, 1] (the probability that a block runs its successor); "
                f"got {self.replacing_rate}."
            )
        if self.scheduler == "none":  # the reference implementation's name for the constant schedule
            self.scheduler = "constant"
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}; got {self.scheduler!r}.")
        if self.scheduler == "linear" and self.scheduler_linear_k <= 0:
            raise ValueError(f"scheduler_linear_k must be > 0 for the linear schedule; got {self.scheduler_linear_k}.")
        if self.steps_for_replacing < 0:
            raise ValueError(f"steps_for_replacing must be >= 0; got {self.steps_for_replacing}.")
        if self.successor_init not in SUCCESSOR_INITS:
            raise ValueError(f"successor_init must be one of {SUCCESSOR_INITS}; got {self.successor_init!r}.")
