"""Every ordered pair of post-training methods (and the pipelines' triples): each composes, saves and reloads
through the Auto classes with the same logits and parameter count, or refuses before any change with a message
naming the order that works."""

import copy
import itertools

import pytest
import torch
from transformers import AutoModelForSequenceClassification, TrainingArguments

from hfcompress import (CompressionTrainer, DynamicQuantConfig, LowRankConfig, MovementPruningConfig,
                        StructuredPruningConfig, TheseusConfig, TruncationConfig, WeightSharingConfig, compress, get_record,
                        prune_ffn_neurons, prune_heads)
from hfcompress.benchmark import count_parameters

from .conftest import tiny_inputs, tiny_model


def _batches():
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 120, (4, 10), generator=generator),
             "attention_mask": torch.ones(4, 10, dtype=torch.long), "labels": torch.tensor([0, 1, 2, 0])}
            for _ in range(3)]


STEPS = {
    "truncation": lambda m: compress(m, TruncationConfig(layers=2)),
    "heads": lambda m: prune_heads(m, {0: [1], 1: [0, 3]}),
    "ffn": lambda m: prune_ffn_neurons(m, {0: list(range(10)), 1: [3, 4]}),
    "structured": lambda m: compress(m, StructuredPruningConfig(kept_flops=0.7), dataloader=_batches()),
    "lowrank": lambda m: compress(m, LowRankConfig(param_ratio=0.5)),
    "sharing": lambda m: compress(m, WeightSharingConfig(group_size=2)),
    "int8": lambda m: compress(m, DynamicQuantConfig(backend="torch")),
}
UNEVEN = ("heads", "ffn", "structured")
REFUSED = {
    **{(first, "truncation"): "Truncate layers before" for first in STEPS if first != "truncation"},
    **{(first, "sharing"): "Share layers before pruning heads or FFN neurons" for first in UNEVEN},
    **{("int8", second): "first, then quantize" for second in UNEVEN},
}


def _check_reload(model, tmp_path):
    inputs = tiny_inputs()
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-6, rtol=0)
    assert count_parameters(loaded) == count_parameters(model)
    assert [s["method"] for s in get_record(loaded).steps] == [s["method"] for s in get_record(model).steps]


@pytest.mark.parametrize("first, second", list(itertools.permutations(STEPS, 2)))
def test_every_ordered_pair_composes_or_names_the_order(first, second, tmp_path):
    model = tiny_model()
    STEPS[first](model)
    if (first, second) in REFUSED:
        before = copy.deepcopy(model.state_dict())
        with pytest.raises(ValueError, match=REFUSED[(first, second)]):
            STEPS[second](model)
        after = model.state_dict()  # refused before any change
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
        return
    STEPS[second](model)
    _check_reload(model, tmp_path)


@pytest.mark.parametrize("steps", [("truncation", "heads", "int8"), ("truncation", "structured", "int8"),
                                   ("ffn", "lowrank", "int8"), ("heads", "ffn", "lowrank", "int8"),
                                   ("sharing", "lowrank"), ("sharing", "int8")], ids="->".join)
def test_pipeline_chains_compose(steps, tmp_path):
    model = tiny_model()
    for step in steps:
        STEPS[step](model)
    _check_reload(model, tmp_path)


@pytest.mark.parametrize("then", ["int8", "lowrank"])
def test_sparse_movement_then_post_training_steps(then, tmp_path):
    model = tiny_model()
    args = TrainingArguments(str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=4, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-3, seed=0)
    rows = [{k: v[i] for k, v in batch.items()} for batch in _batches() for i in range(4)]
    CompressionTrainer(model=model, args=args, train_dataset=rows, compression=[MovementPruningConfig(
        pruning_method="topK", final_remaining=0.5, initial_warmup=1, final_warmup=1)]).train()
    STEPS[then](model.eval())
    _check_reload(model, tmp_path / "out")


def _theseus(model, tmp_path):
    args = TrainingArguments(str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=4, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-3, seed=0)
    rows = [{k: v[i] for k, v in batch.items()} for batch in _batches() for i in range(4)]
    trainer = CompressionTrainer(model=model, args=args, train_dataset=rows, compression=[
        TheseusConfig(successor_layers=2, replacing_rate=0.5, steps_for_replacing=2)])
    trainer.train()
    return trainer.model.eval()


@pytest.mark.parametrize("second", list(STEPS))
def test_theseus_then_every_post_training_step(second, tmp_path):
    model = _theseus(tiny_model(), tmp_path)
    STEPS[second](model)
    _check_reload(model, tmp_path / "out")


@pytest.mark.parametrize("first", [step for step in STEPS if step != "truncation"])
def test_theseus_after_a_per_layer_step_is_refused_before_any_change(first, tmp_path):
    # Like truncation, Theseus changes the layer count: a record that describes every layer would not reload.
    model = tiny_model()
    STEPS[first](model)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="Run BERT-of-Theseus before"):
        _theseus(model, tmp_path)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
