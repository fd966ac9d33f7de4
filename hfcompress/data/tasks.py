"""What hfcompress knows about each GLUE and CLUE task: columns, labels, metric, file layout."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LocalLayout:
    """How a task's files look on disk (GLUE TSV or CLUE JSON lines).

    ``columns`` maps our column names (``sentence1``, ``sentence2``, ``label``) to the file's
    field: a header name for TSV files with a header, an integer position for header-less TSV
    files, or a JSON key.
    """

    format: str  # "tsv" or "jsonl"
    train_file: str
    validation_files: dict[str, str]
    columns: dict[str, str | int]
    has_header: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE or CLUE task.

    ``label_names`` fixes the id of every label (the Hub's ClassLabel order), so local files and
    Hub datasets give the same ids. ``None`` means regression (STS-B).
    """

    name: str
    benchmark: str  # "glue" or "clue"
    hub_path: str
    hub_name: str
    sentence1: str
    sentence2: str | None
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    local: LocalLayout
    hub_validation_splits: dict[str, str] = field(default_factory=lambda: {"validation": "validation"})
    ignored_labels: tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return self.label_names is None


def _tsv(train: str, dev: str | dict[str, str], columns: dict, has_header: bool = True) -> LocalLayout:
    dev_files = {"validation": dev} if isinstance(dev, str) else dev
    return LocalLayout("tsv", train, dev_files, columns, has_header)


def _jsonl(columns: dict) -> LocalLayout:
    return LocalLayout("jsonl", "train.json", {"validation": "dev.json"}, columns)


_BINARY = ("0", "1")
_NLI3 = ("entailment", "neutral", "contradiction")
_ENTAIL2 = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        # --- GLUE (Hub: nyu-mll/glue) ------------------------------------------------------
        TaskSpec("sst2", "glue", "nyu-mll/glue", "sst2", "sentence", None, _BINARY, ("accuracy",), "accuracy",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "sentence", "label": "label"})),
        TaskSpec("mrpc", "glue", "nyu-mll/glue", "mrpc", "sentence1", "sentence2", _BINARY, ("accuracy", "f1"), "f1",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"})),
        TaskSpec("rte", "glue", "nyu-mll/glue", "rte", "sentence1", "sentence2", _ENTAIL2, ("accuracy",), "accuracy",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"})),
        TaskSpec("cola", "glue", "nyu-mll/glue", "cola", "sentence", None, _BINARY, ("matthews_correlation", "accuracy"),
                 "matthews_correlation",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": 3, "label": 1}, has_header=False)),
        TaskSpec("qnli", "glue", "nyu-mll/glue", "qnli", "question", "sentence", _ENTAIL2, ("accuracy",), "accuracy",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "question", "sentence2": "sentence", "label": "label"})),
        TaskSpec("qqp", "glue", "nyu-mll/glue", "qqp", "question1", "question2", _BINARY, ("accuracy", "f1"), "f1",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "question1", "sentence2": "question2", "label": "is_duplicate"})),
        TaskSpec("mnli", "glue", "nyu-mll/glue", "mnli", "premise", "hypothesis", _NLI3, ("accuracy",), "accuracy",
                 _tsv("train.tsv", {"validation": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"},
                      {"sentence1": "sentence1", "sentence2": "sentence2", "label": "gold_label"}),
                 hub_validation_splits={"validation": "validation_matched",
                                        "validation_mismatched": "validation_mismatched"}),
        TaskSpec("stsb", "glue", "nyu-mll/glue", "stsb", "sentence1", "sentence2", None,
                 ("pearson", "spearmanr"), "pearson",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"})),
        TaskSpec("wnli", "glue", "nyu-mll/glue", "wnli", "sentence1", "sentence2", _BINARY, ("accuracy",), "accuracy",
                 _tsv("train.tsv", "dev.tsv", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"})),
        # --- CLUE (Hub: clue/clue) -----------------------------------------------------------
        TaskSpec("tnews", "clue", "clue/clue", "tnews", "sentence", None,
                 ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113", "114", "115",
                  "116"), ("accuracy",), "accuracy",
                 _jsonl({"sentence1": "sentence", "label": "label"})),
        TaskSpec("iflytek", "clue", "clue/clue", "iflytek", "sentence", None, tuple(str(i) for i in range(119)),
                 ("accuracy",), "accuracy", _jsonl({"sentence1": "sentence", "label": "label"})),
        TaskSpec("afqmc", "clue", "clue/clue", "afqmc", "sentence1", "sentence2", _BINARY, ("accuracy",), "accuracy",
                 _jsonl({"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"})),
        TaskSpec("ocnli", "clue", "clue/clue", "ocnli", "sentence1", "sentence2", ("neutral", "entailment", "contradiction"),
                 ("accuracy",), "accuracy", _jsonl({"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
                 ignored_labels=("-",)),
        TaskSpec("cmnli", "clue", "clue/clue", "cmnli", "sentence1", "sentence2", ("neutral", "entailment", "contradiction"),
                 ("accuracy",), "accuracy", _jsonl({"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
                 ignored_labels=("-",)),
        TaskSpec("csl", "clue", "clue/clue", "csl", "abst", "keyword", _BINARY, ("accuracy",), "accuracy",
                 _jsonl({"sentence1": "abst", "sentence2": "keyword", "label": "label"})),
    ]
}


def get_task(name: str) -> TaskSpec:
    """The spec of a task by name (case-insensitive, ``sst-2`` and ``SST2`` both work).

    Example:
        >>> get_task("sst2").num_labels
        2
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise ValueError(
            f"Unknown task {name!r}. Known GLUE tasks: {', '.join(t for t in TASKS if TASKS[t].benchmark == 'glue')}; "
            f"CLUE tasks: {', '.join(t for t in TASKS if TASKS[t].benchmark == 'clue')}."
        )
    return TASKS[key]
