"""GLUE and CLUE tasks: registry, loading from local files or the Hub, tokenization, metrics."""

from .loading import load_task, load_task_file, sample_data_dir, tokenize_task
from .metrics import compute_metrics_fn, task_metrics
from .tasks import TASKS, TaskSpec, get_task

__all__ = ["TASKS", "TaskSpec", "compute_metrics_fn", "get_task", "load_task", "load_task_file", "sample_data_dir", "task_metrics", "tokenize_task"]
