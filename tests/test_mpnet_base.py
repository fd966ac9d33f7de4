"""A real base-size encoder (all-mpnet-base-v2: MPNet, 12 layers, hidden 768) through every post-training method,
their pipeline chains and BERT-of-Theseus 12 -> 6: each reloads through the Auto classes with the same logits and
parameter count. Skipped with the reason where `make mpnet-base` has not installed it."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

from hfcompress import (CompressionTrainer, DynamicQuantConfig, LowRankConfig, StructuredPruningConfig, TheseusConfig,
                        TruncationConfig, WeightSharingConfig, compress, get_record, prune_ffn_neurons, prune_heads)
from hfcompress.benchmark import count_parameters

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def base(mpnet_base_path):
    tokenizer = AutoTokenizer.from_pretrained(mpnet_base_path)
    texts = ["a gripping, beautifully acted film", "dull and far too long", "it is what it is",
             "the best thing i saw this year"]
    batch = tokenizer(texts, padding="max_length", max_length=24, truncation=True, return_tensors="pt")
    return mpnet_base_path, {k: v for k, v in batch.items()}


def _model(path):
    torch.manual_seed(0)  # the classifier head is new: the same one every time
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()


def _batches(inputs):
    return [{**inputs, "labels": torch.tensor([1, 0, 1, 1])} for _ in range(2)]


STEPS = {
    "uneven heads + FFN": lambda m, x: prune_ffn_neurons(prune_heads(m, {0: [0, 5, 11], 3: list(range(6)), 11: [2]}),
                                                        {1: list(range(0, 3072, 3)), 7: list(range(1000))}),
    "structured 0.5 FLOPs": lambda m, x: compress(m, StructuredPruningConfig(kept_flops=0.5), dataloader=_batches(x)),
    "low-rank 0.5": lambda m, x: compress(m, LowRankConfig(param_ratio=0.5)),
    "sharing in pairs": lambda m, x: compress(m, WeightSharingConfig(group_size=2)),
    "int8 + int8 embeddings": lambda m, x: compress(m, DynamicQuantConfig(backend="torch", embeddings=True)),
    "truncate 12 -> 4, heads, int8": lambda m, x: compress(compress(
        prune_heads(compress(m, TruncationConfig(layers=4)), {0: [1, 2], 3: [0]}),
        LowRankConfig(param_ratio=0.75)), DynamicQuantConfig(backend="torch")),
}


def _check_reload(model, inputs, folder):
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(folder)
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-5, rtol=0)
    assert count_parameters(loaded) == count_parameters(model)
    assert [s["method"] for s in get_record(loaded).steps] == [s["method"] for s in get_record(model).steps]
    return loaded


@pytest.mark.parametrize("step", list(STEPS))
def test_every_post_training_method_reloads_with_identical_logits(base, step, tmp_path):
    path, inputs = base
    model = _model(path)
    dense = count_parameters(model)
    STEPS[step](model, inputs)
    assert count_parameters(model) <= dense
    _check_reload(model, inputs, tmp_path)


def test_theseus_12_to_6_reloads_as_a_plain_mpnet(base, tmp_path):
    path, inputs = base
    rows = [{k: v[i] for k, v in batch.items()} for batch in _batches(inputs) for i in range(4)]
    args = TrainingArguments(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, report_to=[],
                             use_cpu=not torch.cuda.is_available(), save_strategy="no", learning_rate=1e-5, seed=0)
    trainer = CompressionTrainer(model=_model(path), args=args, train_dataset=rows,
                                 compression=[TheseusConfig(successor_layers=6, steps_for_replacing=1)])
    trainer.train()
    successor = trainer.model.eval()
    assert successor.config.num_hidden_layers == 6
    loaded = _check_reload(successor, inputs, tmp_path / "out")
    assert type(loaded).__name__ == "MPNetForSequenceClassification"
