"""The cubic sparsity schedule of movement pruning."""

from __future__ import annotations

from .config import MovementPruningConfig


def _steps(value: float, total: int) -> int:
    return int(round(value * total)) if value < 1 else int(value)


def schedule_value(config: MovementPruningConfig, step: int, total_steps: int) -> float:
    """Remaining fraction (topK, magnitude, or ``target_remaining``) or threshold tau at ``step``.

    Example:
        >>> schedule_value(MovementPruningConfig(final_remaining=0.1, initial_warmup=0, final_warmup=0), 50, 100)
        0.2125
    """
    if config.pruning_method in ("topK", "magnitude") or config.target_remaining:
        initial, final = config.initial_remaining, config.final_remaining
    else:
        initial, final = config.initial_threshold, config.final_threshold
    return _cubic(config, step, total_steps, initial, final)


def _cubic(config: MovementPruningConfig, step: int, total_steps: int, initial: float, final: float) -> float:
    start = _steps(config.initial_warmup, total_steps)
    end = total_steps - _steps(config.final_warmup, total_steps)
    if step < start:
        return initial
    if step >= end or end <= start:
        return final
    progress = (step - start) / (end - start)
    return final + (initial - final) * (1 - progress) ** 3


def regularization_weight(config: MovementPruningConfig, step: int, total_steps: int) -> float:
    """lambda_t: the L1 weight grows with the threshold, as in the paper's code."""
    if config.pruning_method != "sigmoied_threshold" or config.regularization_lambda == 0:
        return 0.0
    if config.target_remaining:
        span = config.initial_remaining - config.final_remaining
        if span == 0:
            return config.regularization_lambda
        return config.regularization_lambda * (config.initial_remaining - schedule_value(config, step, total_steps)) / span
    if config.final_threshold == 0:
        return config.regularization_lambda
    return config.regularization_lambda * schedule_value(config, step, total_steps) / config.final_threshold
