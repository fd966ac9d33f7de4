"""Task metrics computed locally with scikit-learn/scipy (names as on the GLUE/CLUE leaderboards)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .tasks import get_task


def task_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of ``task`` from logits (or regression outputs) and gold labels.

    Example:
        >>> task_metrics("mrpc", np.array([[0.1, 0.9], [2.0, 0.0]]), np.array([1, 0]))
        {'accuracy': 1.0, 'f1': 1.0}
    """
    # Imported here: scikit-learn costs every process that imports hfcompress ~2 s otherwise (scipy.stats
    # another ~0.8 s, only for the regression task).
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    spec = get_task(task)
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if spec.is_regression:
        predicted = predictions.reshape(-1)
    else:
        predicted = predictions.argmax(-1) if predictions.ndim > 1 else predictions
    out: dict[str, float] = {}
    for name in spec.metrics:
        if name == "accuracy":
            out[name] = float(accuracy_score(labels, predicted))
        elif name == "f1":
            out[name] = float(f1_score(labels, predicted))
        elif name == "matthews_correlation":
            out[name] = float(matthews_corrcoef(labels, predicted))
        elif name == "pearson":
            from scipy.stats import pearsonr

            out[name] = float(pearsonr(predicted, labels)[0])
        elif name == "spearmanr":
            from scipy.stats import spearmanr

            out[name] = float(spearmanr(predicted, labels)[0])
        else:  # pragma: no cover - the task table only names the metrics above
            raise ValueError(f"No implementation for metric {name!r}.")
    return out


def compute_metrics_fn(task: str) -> Callable:
    """A ``compute_metrics`` for ``Trainer``.

    Example:
        >>> Trainer(..., compute_metrics=compute_metrics_fn("sst2"))
    """
    get_task(task)

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        return task_metrics(task, predictions, eval_prediction.label_ids)

    return compute_metrics
