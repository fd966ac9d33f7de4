"""Replacement-rate schedules: p as a function of the optimizer step."""

from __future__ import annotations

from .config import TheseusConfig


def replacing_rate(config: TheseusConfig, step: int) -> float:
    """Probability that a block runs its successor module at optimizer step ``step`` (0-based).

    Example:
        >>> replacing_rate(TheseusConfig(scheduler="linear", replacing_rate=0.3, scheduler_linear_k=0.01), 20)
        0.5
    """
    if config.scheduler == "constant":
        return config.replacing_rate if step < config.steps_for_replacing else 1.0
    return min(1.0, config.scheduler_linear_k * step + config.replacing_rate)


def in_replacement_stage(config: TheseusConfig, step: int) -> bool:
    """True during stage 1 (some blocks may still run the predecessor)."""
    return replacing_rate(config, step) < 1.0
