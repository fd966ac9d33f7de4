#!/usr/bin/env python
"""Vocabulary pruning on the real MiniLM-L6: what the vocabulary of a task's training split keeps, and what it costs.

Per task, in one run: the fine-tuned teacher; the teacher with its vocabulary cut to the tokens of the task's
training split (full train file, not only the teacher's training subset; the dev split is never looked at when
choosing), with and without the single-character alphabet of the characters it uses, and only the tokens seen
at least 3 or 10 times (rarer words are then spelt in characters); and int8 (torch, encoder linears + word embeddings)
of the teacher and of the vocabulary-pruned model, the combination the size target is about. Each row: dev score
re-tokenized with the row's own tokenizer, unknown-token rate on dev, share of dev texts whose tokens change (the
only rows whose prediction can move), parameters, weight-file bytes. No latency:
removing embedding rows changes no matrix product (a lookup reads the same row either way).

A task without a cached fine-tuned teacher (``--no-teacher``, TNEWS by default) reports the vocabulary side only:
kept tokens, unknown-token rates, embedding share and file size of the pretrained model with a task head.

    python benchmarks/vocabulary.py --tasks sst2 mrpc
    python benchmarks/vocabulary.py --tasks tnews

Writes results/vocabulary_<task>.json/.md.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

from common import TASK_SETUPS, SHARED_DATA, get_teacher, minilm_path, save_run, teacher_dir
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfcompress import DynamicQuantConfig, VocabularyPruningConfig, compress, prune_vocabulary
from hfcompress.benchmark import count_parameters, evaluate_model, hardware, weights_size_bytes
from hfcompress.data import get_task, load_task, tokenize_task
from hfcompress.methods.vocabulary import unknown_token_rate

INT8 = DynamicQuantConfig(backend="torch", embeddings=True)


def _texts(split, spec) -> list[str]:
    columns = ["sentence1"] + (["sentence2"] if spec.sentence2 else [])
    return [text for column in columns for text in split[column]]


def _retokenized(original, tokenizer, texts: list[str]) -> float:
    """Share of texts whose tokens (as strings) differ under the pruned tokenizer: the rows a score can move on."""
    if tokenizer is original:
        return 0.0
    before = original(texts, add_special_tokens=False)["input_ids"]
    after = tokenizer(texts, add_special_tokens=False)["input_ids"]
    changed = sum(original.convert_ids_to_tokens(a) != tokenizer.convert_ids_to_tokens(b) for a, b in zip(before, after))
    return changed / len(texts)


def _row(name: str, model, tokenizer, raw, task: str, max_length: int, dev_texts: list[str], evaluate: bool,
         original=None, **extra) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        size = weights_size_bytes(folder)
    embedding = model.get_input_embeddings()
    rows = getattr(embedding, "num_embeddings", None) or model.config.vocab_size
    row = {"name": name, "params": count_parameters(model), "size_bytes": size, "vocab_size": int(rows),
           "dev_unknown_rate": round(unknown_token_rate(tokenizer, dev_texts), 5),
           "embedding_params": int(rows) * model.config.hidden_size,
           "dev_texts_retokenized": round(_retokenized(original or tokenizer, tokenizer, dev_texts), 5), **extra}
    if evaluate:
        dev = tokenize_task(raw["validation"], tokenizer, task, max_length=max_length)
        metrics = evaluate_model(model, dev, task)
        row.update({"metrics": metrics, "score": metrics[get_task(task).main_metric]})
    print(name, {k: v for k, v in row.items() if k != "metrics"}, flush=True)
    return row


def run_task(task: str, teacherless: bool) -> None:
    setup = TASK_SETUPS[task]
    spec = get_task(task)
    raw = load_task(task, SHARED_DATA / setup.data_subdir)
    train_texts, dev_texts = _texts(raw["train"], spec), _texts(raw["validation"], spec)
    if teacherless:
        teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=spec.num_labels)
        tokenizer, info = AutoTokenizer.from_pretrained(minilm_path()), {"note": "pretrained MiniLM-L6 with a new "
                                                                                 "head: no fine-tuned teacher"}
    else:
        teacher, tokenizer, info = get_teacher(setup)
        info = {**info, "path": str(teacher_dir(task))}
    teacher.eval()
    common = dict(raw=raw, task=task, max_length=setup.max_length, dev_texts=dev_texts, evaluate=not teacherless,
                  original=tokenizer)
    rows = [_row("teacher (fine-tuned MiniLM-L6)" if not teacherless else "pretrained MiniLM-L6 + head", teacher,
                 tokenizer, **common)]
    variants = {"vocabulary of train split": VocabularyPruningConfig(),
                "vocabulary of train split, no alphabet": VocabularyPruningConfig(keep_alphabet=False),
                "train tokens seen >= 3 times": VocabularyPruningConfig(min_count=3),
                "train tokens seen >= 10 times": VocabularyPruningConfig(min_count=10)}
    pruned_models = {}
    for name, config in variants.items():
        model, small = prune_vocabulary(copy.deepcopy(teacher), tokenizer, train_texts, config, eval_texts=dev_texts)
        pruned_models[name] = (model, small)
        rows.append(_row(name, model, small, **common))
    rows.append(_row("int8 encoder + int8 embeddings", compress(copy.deepcopy(teacher), INT8), tokenizer, **common))
    for name in ("vocabulary of train split", "train tokens seen >= 10 times"):
        model, small = pruned_models[name]
        rows.append(_row(f"{name} + int8 encoder + int8 embeddings", compress(copy.deepcopy(model), INT8), small,
                         **common))
    base = rows[0]
    for row in rows:
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"]
        row["params_ratio"] = row["params"] / base["params"]
        if row.get("score") is not None and base.get("score"):
            row["score_retained"] = row["score"] / base["score"]
    payload = {
        "benchmark": "vocabulary", "task": task, "metric": spec.main_metric,
        "model": "all-MiniLM-L6-v2" + ("" if teacherless else " fine-tuned (benchmarks/common.py teacher)"),
        "teacher": info, "data": {"vocabulary_from": f"train split, {raw['train'].num_rows} rows, every text column",
                                  "dev_rows": raw["validation"].num_rows, "max_length": setup.max_length},
        "rows": rows, "hardware": hardware(), "latency": "not timed: removing embedding rows changes no matrix product",
    }
    save_run(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "tnews"])
    parser.add_argument("--no-teacher", dest="no_teacher", nargs="*", default=["tnews"],
                        help="tasks measured on the vocabulary side only (no fine-tuned teacher cached)")
    options = parser.parse_args()
    for task in options.tasks:
        run_task(task, teacherless=task in options.no_teacher)


if __name__ == "__main__":
    main()
