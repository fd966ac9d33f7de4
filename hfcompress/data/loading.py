"""Load a GLUE/CLUE task as a ``DatasetDict`` from local files or the Hugging Face Hub."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from .tasks import TaskSpec, get_task

SAMPLE_DIR = Path(__file__).parent / "sample"


def sample_data_dir(task: str = "sst2") -> str:
    """Folder of the small real sample shipped with hfcompress (SST-2: 4,000 train rows, full dev).

    Example:
        >>> load_task("sst2", data_dir=sample_data_dir())["train"].num_rows
        4000
    """
    path = SAMPLE_DIR / task
    if not path.is_dir():
        raise ValueError(f"hfcompress ships a sample only for: {sorted(p.name for p in SAMPLE_DIR.iterdir())}; not {task!r}.")
    return str(path)


def load_task(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    dev_split: float | None = None,
    seed: int = 42,
) -> DatasetDict:
    """Load a task with ``train`` and ``validation`` splits, columns ``sentence1``[, ``sentence2``], ``label``.

    With ``data_dir`` (the task's folder in the GLUE TSV or CLUE JSON-lines layout), reads local
    files; without it, the Hub dataset. ``dev_split=0.8`` builds train/validation from an 80/20
    split of the dev file, for tasks whose training file is not available (say so in results).

    Example:
        >>> ds = load_task("mrpc", data_dir="data/glue/mrpc")
        >>> ds["validation"].features["label"].names
        ['0', '1']
    """
    spec = get_task(name)
    if dev_split is not None and not 0 < dev_split < 1:
        raise ValueError(f"dev_split is the train fraction of the dev file and must lie in (0, 1); got {dev_split}.")
    if data_dir is None:
        dataset = _load_hub(spec)
    else:
        dataset = _load_local(spec, Path(data_dir), dev_split is not None)
    if dev_split is not None:
        parts = dataset["validation"].train_test_split(train_size=dev_split, seed=seed)
        dataset = DatasetDict({**dataset, "train": parts["train"], "validation": parts["test"]})
    return dataset


def load_task_file(name: str, path: str | os.PathLike) -> Dataset:
    """One labelled file of a task, in the task's own layout (GLUE TSV or CLUE JSON lines), as a Dataset with the
    columns :func:`load_task` gives: rows held out for scoring, say, that no model saw in training.

    Example:
        >>> load_task_file("sst2", "extra_rows.tsv").num_rows
        500
    """
    spec = get_task(name)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file; give a {spec.name} file in its "
                         f"{'TSV' if spec.local.format == 'tsv' else 'JSON-lines'} layout (like its dev file).")
    rows = _read_tsv(path, spec.local) if spec.local.format == "tsv" else _read_jsonl(path, spec.local)
    if not rows:
        raise ValueError(f"{str(path)!r} has no rows.")
    return _to_dataset(spec, rows, path)


def _features(spec: TaskSpec) -> Features:
    features = {"sentence1": Value("string")}
    if spec.sentence2:
        features["sentence2"] = Value("string")
    features["label"] = Value("float32") if spec.is_regression else ClassLabel(names=list(spec.label_names))
    return Features(features)


def _load_local(spec: TaskSpec, data_dir: Path, train_optional: bool) -> DatasetDict:
    if not data_dir.is_dir():
        raise ValueError(f"data_dir {str(data_dir)!r} is not a folder. Pass the task's folder, e.g. data/glue/{spec.name}.")
    layout = spec.local
    splits: dict[str, Dataset] = {}
    files = {"train": layout.train_file, **layout.validation_files}
    for split, filename in files.items():
        path = data_dir / filename
        if not path.is_file():
            if split == "train" and train_optional:
                continue
            if split not in ("train", "validation"):
                continue  # extra splits (MNLI mismatched) are optional
            hint = " Pass dev_split=0.8 to train on 80% of the dev file." if split == "train" else ""
            raise ValueError(f"Task {spec.name!r}: missing file {str(path)!r} for the {split} split.{hint}")
        rows = _read_tsv(path, layout) if layout.format == "tsv" else _read_jsonl(path, layout)
        splits[split] = _to_dataset(spec, rows, path)
    return DatasetDict(splits)


def _read_tsv(path: Path, layout) -> list[dict[str, Any]]:
    # utf-8-sig drops MRPC's byte-order mark; GLUE files are unquoted, so quotes are literal text.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader) if layout.has_header else None
        if header is not None:
            missing = [c for c in layout.columns.values() if c not in header]
            if missing:
                raise ValueError(f"{str(path)!r} has no column(s) {missing}; its header is {header}.")
            position = {ours: header.index(theirs) for ours, theirs in layout.columns.items()}
        else:
            position = dict(layout.columns)
        rows = []
        for line_number, fields in enumerate(reader, start=2 if header else 1):
            if not fields or fields == [""]:
                continue
            if max(position.values()) >= len(fields):
                raise ValueError(f"{str(path)!r} line {line_number} has {len(fields)} fields; expected at least "
                                 f"{max(position.values()) + 1}.")
            rows.append({ours: fields[i] for ours, i in position.items()})
    return rows


def _read_jsonl(path: Path, layout) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = [c for c in layout.columns.values() if c not in record]
            if missing:
                raise ValueError(f"{str(path)!r} line {line_number} has no key(s) {missing}; keys: {sorted(record)}.")
            rows.append({ours: record[theirs] for ours, theirs in layout.columns.items()})
    return rows


def _text(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def _to_dataset(spec: TaskSpec, rows: list[dict[str, Any]], path: Path) -> Dataset:
    columns: dict[str, list] = {"sentence1": [], "label": []}
    if spec.sentence2:
        columns["sentence2"] = []
    label_ids = None if spec.is_regression else {name: i for i, name in enumerate(spec.label_names)}
    for row in rows:
        raw = str(row["label"]).strip()
        if raw in spec.ignored_labels:
            continue
        if label_ids is None:
            label = float(raw)
        elif raw in label_ids:
            label = label_ids[raw]
        else:
            raise ValueError(f"{str(path)!r}: label {raw!r} is not one of task {spec.name!r}'s labels {list(label_ids)}.")
        columns["sentence1"].append(_text(row["sentence1"]))
        if spec.sentence2:
            columns["sentence2"].append(_text(row["sentence2"]))
        columns["label"].append(label)
    return Dataset.from_dict(columns, features=_features(spec))


def _load_hub(spec: TaskSpec) -> DatasetDict:
    from datasets import load_dataset

    try:
        raw = load_dataset(spec.hub_path, spec.hub_name)
    except ConnectionError as error:
        # Offline machines get the Hub's own error several frames deep; name the way around it.
        raise ConnectionError(f"Could not load task {spec.name!r} from the Hub ({spec.hub_path}/{spec.hub_name}): "
                              f"{error}. Offline, pass data_dir (scripts: --data_dir) with the task's folder in the "
                              f"{spec.local.format.upper()} layout, e.g. data/{spec.name}.") from error
    wanted = {"train": "train", **spec.hub_validation_splits}
    out = {}
    for ours, theirs in wanted.items():
        if theirs not in raw:
            raise ValueError(f"The Hub dataset {spec.hub_path}/{spec.hub_name} has no split {theirs!r}: {list(raw)}.")
        split = raw[theirs]
        rename = {spec.sentence1: "sentence1"}
        if spec.sentence2:
            rename[spec.sentence2] = "sentence2"
        split = split.rename_columns(rename)
        if spec.sentence2 and not isinstance(split.features["sentence2"], Value):
            split = split.map(lambda row: {"sentence2": _text(row["sentence2"])})
        split = split.filter(lambda row: row["label"] >= 0) if not spec.is_regression else split
        split = split.select_columns(list(_features(spec))).cast(_features(spec))
        out[ours] = split
    return DatasetDict(out)


def tokenize_task(
    dataset: DatasetDict | Dataset,
    tokenizer: Any,
    task: str,
    max_length: int = 128,
    padding: bool | str = False,
) -> DatasetDict | Dataset:
    """Tokenize ``sentence1``[/``sentence2``] into model inputs, keeping ``label``.

    Example:
        >>> encoded = tokenize_task(load_task("sst2", sample_data_dir()), tokenizer, "sst2", max_length=64)
    """
    spec = get_task(task)

    def encode(batch):
        texts = (batch["sentence1"],) + ((batch["sentence2"],) if spec.sentence2 else ())
        return tokenizer(*texts, truncation=True, max_length=max_length, padding=padding)

    first = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    text_columns = [c for c in first.column_names if c in ("sentence1", "sentence2")]
    encoder = _encoder_fingerprint(tokenizer, spec.name, max_length, padding)

    def run(split: Dataset) -> Dataset:
        fingerprint = (hashlib.sha256(f"{split._fingerprint}/{encoder}".encode()).hexdigest()[:32]
                       if encoder else None)
        return split.map(encode, batched=True, remove_columns=text_columns, desc=f"Tokenizing {spec.name}",
                         new_fingerprint=fingerprint)

    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: run(split) for name, split in dataset.items()})
    return run(dataset)


def _encoder_fingerprint(tokenizer: Any, task: str, max_length: int, padding: bool | str) -> str | None:
    """What the tokenized rows depend on, hashed from the fast tokenizer's own serialization: without it
    ``datasets`` fingerprints the map by pickling the tokenizer, about a second per call for a 30k vocabulary
    (most of a short search trial's time). None for a slow tokenizer (``datasets`` hashes it as before)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(repr((repr(tokenizer), task, max_length, padding)).encode())
    return digest.hexdigest()
