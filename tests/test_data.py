import numpy as np
import pytest

from hfcompress.data import get_task, load_task, sample_data_dir, task_metrics, tokenize_task

# Row counts from ../shared/data/README.md (official split sizes).
LOCAL_TASKS = {
    "sst2": ("glue/sst2", 67349, 872, 2),
    "mrpc": ("glue/mrpc", 3668, 408, 2),
    "rte": ("glue/rte", 2490, 277, 2),
    "cola": ("glue/cola", 8551, 1043, 2),
    "tnews": ("clue/tnews", 53360, 10000, 15),
}


@pytest.mark.parametrize("task", sorted(LOCAL_TASKS))
def test_local_tasks_match_official_counts(task, shared_data):
    folder, train_rows, dev_rows, num_labels = LOCAL_TASKS[task]
    dataset = load_task(task, shared_data / folder)
    assert dataset["train"].num_rows == train_rows
    assert dataset["validation"].num_rows == dev_rows
    assert dataset["train"].features["label"].num_classes == num_labels == get_task(task).num_labels
    assert all(isinstance(s, str) and s for s in dataset["validation"]["sentence1"][:50])


def test_label_distributions(shared_data):
    # Class balance from the data README: proves label parsing (MRPC BOM header, CoLA positions).
    mrpc = load_task("mrpc", shared_data / "glue/mrpc")
    assert np.bincount(mrpc["train"]["label"]).tolist() == [1194, 2474]
    cola = load_task("cola", shared_data / "glue/cola")
    assert np.bincount(cola["validation"]["label"]).tolist() == [322, 721]
    sst2 = load_task("sst2", shared_data / "glue/sst2")
    assert np.bincount(sst2["validation"]["label"]).tolist() == [428, 444]
    rte = load_task("rte", shared_data / "glue/rte")
    assert rte["validation"].features["label"].names == ["entailment", "not_entailment"]
    assert "sentence2" in rte["train"].column_names


def test_clue_string_labels_are_contiguous(shared_data):
    tnews = load_task("tnews", shared_data / "clue/tnews")
    labels = set(tnews["validation"]["label"])
    assert labels == set(range(15))
    # "108" (news_edu) is the 8th label id in order: 100..104, 106..110 -> index 7.
    assert tnews["train"].features["label"].int2str(7) == "108"


@pytest.mark.parametrize("task,rows", [("iflytek", 2599), ("afqmc", 4316)])
def test_dev_only_tasks(task, rows, shared_data):
    with pytest.raises(ValueError, match="missing file.*dev_split=0.8"):
        load_task(task, shared_data / "clue" / task)
    dataset = load_task(task, shared_data / "clue" / task, dev_split=0.8)
    assert dataset["train"].num_rows + dataset["validation"].num_rows == rows
    assert abs(dataset["train"].num_rows - 0.8 * rows) <= 1


def test_sample_shipped_with_package():
    dataset = load_task("sst2", sample_data_dir())
    assert dataset["train"].num_rows == 4000 and dataset["validation"].num_rows == 872


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="Unknown task 'sst3'.*sst2"):
        load_task("sst3")
    with pytest.raises(ValueError, match="not a folder"):
        load_task("sst2", tmp_path / "nope")
    with pytest.raises(ValueError, match="missing file"):
        load_task("sst2", tmp_path)
    (tmp_path / "train.tsv").write_text("text\tlabel\nhello\t1\n")
    (tmp_path / "dev.tsv").write_text("text\tlabel\nhello\t1\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['sentence'\]"):
        load_task("sst2", tmp_path)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nhello\t7\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nhello\t1\n")
    with pytest.raises(ValueError, match="label '7'"):
        load_task("sst2", tmp_path)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        load_task("sst2", tmp_path, dev_split=1.5)


def test_unreachable_hub_names_data_dir(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match="Offline, pass data_dir .*--data_dir.* TSV layout"):
        load_task("mrpc")


def test_stsb_regression_and_quotes_are_literal(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    body = '0\tmain\tx\t2012\t1\ta\tb\tA "quoted\tother\t3.8\n'
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / name).write_text(header + body)
    dataset = load_task("stsb", tmp_path)
    assert dataset["train"][0]["sentence1"] == 'A "quoted'
    assert dataset["train"][0]["label"] == pytest.approx(3.8)


def test_metrics():
    logits = np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert task_metrics("sst2", logits, labels) == {"accuracy": 0.75}
    mrpc = task_metrics("mrpc", logits, labels)
    assert mrpc["f1"] == pytest.approx(2 / 3)
    cola = task_metrics("cola", logits, labels)
    assert cola["matthews_correlation"] == pytest.approx(0.5773502691896258)
    stsb = task_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.5, 2.9]))
    assert stsb["spearmanr"] == pytest.approx(1.0) and 0.9 < stsb["pearson"] < 1.0


def test_tokenize_pairs(minilm_path):
    from transformers import AutoTokenizer

    from datasets import ClassLabel, Dataset, Features, Value

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    features = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                         "label": ClassLabel(names=["0", "1"])})
    dataset = Dataset.from_dict({"sentence1": ["a b c"], "sentence2": ["d e"], "label": [1]}, features=features)
    encoded = tokenize_task(dataset, tokenizer, "mrpc", max_length=16)
    assert set(encoded.column_names) == {"input_ids", "token_type_ids", "attention_mask", "label"}
    assert encoded[0]["token_type_ids"].count(1) == 3  # "d e [SEP]"


def test_tokenized_rows_follow_the_tokenizer_not_an_earlier_cache(minilm_path, tmp_path):
    # The map's fingerprint is hashed from the tokenizer's serialization (not pickled by datasets): a changed
    # tokenizer or length must never be served the rows cached for another.
    from transformers import AutoTokenizer

    from datasets import Dataset

    Dataset.from_dict({"sentence1": ["zzqq is a fine film", "bad"], "label": [1, 0]}).save_to_disk(tmp_path / "d")
    rows = Dataset.load_from_disk(tmp_path / "d")  # backed by files, so the map writes and reuses cache files
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    first = tokenize_task(rows, tokenizer, "sst2", max_length=16)["input_ids"][0]
    assert tokenize_task(Dataset.load_from_disk(tmp_path / "d"), tokenizer, "sst2", max_length=16)["input_ids"][0] == first
    assert tokenize_task(rows, tokenizer, "sst2", max_length=4)["input_ids"][0] == first[:3] + [first[-1]]
    tokenizer.add_tokens(["zzqq"])
    changed = tokenize_task(rows, tokenizer, "sst2", max_length=16)["input_ids"][0]
    assert changed[1] == len(tokenizer) - 1 and changed != first
