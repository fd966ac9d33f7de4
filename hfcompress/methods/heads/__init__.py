"""Structured pruning by importance: attention heads and FFN neurons, physically removed."""

from ...compress import register_post_training_method
from .config import FFNPruningConfig, HeadPruningConfig
from .importance import compute_importance
from .prune import prune_ffn_neurons, prune_heads, select_units_to_prune


def prune_by_importance(model, config, dataloader=None):
    """Compute importance on ``dataloader`` and remove ``config.target`` of the heads or FFN neurons.

    Example:
        >>> prune_by_importance(model, HeadPruningConfig(target=0.5), train_loader)
    """
    if dataloader is None:
        raise ValueError(f"{type(config).__name__} ranks units by importance and needs data: "
                         "compress(model, config, dataloader=...) with batches that include labels.")
    kind = "heads" if isinstance(config, HeadPruningConfig) else "ffn"
    remove = prune_heads if kind == "heads" else prune_ffn_neurons
    total = None
    for round_index in range(config.iterations):
        scores = compute_importance(model, dataloader, kind=kind, max_batches=config.max_batches)
        total = total if total is not None else sum(len(s) for s in scores)
        already_removed = total - sum(len(s) for s in scores)
        goal = round(config.target * total * (round_index + 1) / config.iterations)
        plan = select_units_to_prune(scores, goal - already_removed, config.scope)
        provenance = {"config": config.to_dict(), "round": round_index + 1}
        if kind == "heads":  # small enough to keep for the model card's heat map
            provenance["importance"] = [[round(float(v), 6) for v in s] for s in scores]
        remove(model, plan, provenance)
    return model


register_post_training_method(HeadPruningConfig, prune_by_importance)
register_post_training_method(FFNPruningConfig, prune_by_importance)

__all__ = ["FFNPruningConfig", "HeadPruningConfig", "compute_importance", "prune_by_importance",
           "prune_ffn_neurons", "prune_heads", "select_units_to_prune"]
