"""Families beyond BERT's layout (MPNet's shared relative-position bias, DeBERTa's disentangled attention, ModernBERT's
fused q/k/v, gated FFN and alternating global/local layers) and task heads beyond sequence classification (token classification, question answering): each method's result reloads through the Auto classes."""

import warnings

import pytest
import torch
from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, TrainingArguments)

from hfcompress import (CompressionTrainer, DynamicQuantConfig, LowRankConfig, MovementPruningConfig,
                        OnnxSequenceClassifier, TheseusConfig, WeightSharingConfig, compress, export_onnx, get_adapter,
                        get_record, prune_ffn_neurons, prune_heads)
from hfcompress.benchmark import count_parameters

from .conftest import tiny_config, tiny_inputs, tiny_model

UNEVEN = {0: [1, 3], 1: [0, 1, 2], 3: [2]}


NEW_FAMILIES = ["mpnet", "deberta-v2", "deberta-v2-unshared", "modernbert"]


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_removing_heads_equals_silencing_them_with_relative_position_terms(family):
    # MPNet: each layer takes its heads' part of the shared bias; DeBERTa: position projections lose the same rows.
    model = tiny_model(family)
    silenced = tiny_model(family)  # same seed: same weights
    adapter = get_adapter(model)
    head = adapter.head_size(model.config)
    with torch.no_grad():  # a head whose output columns are zero contributes nothing: removal must equal that
        for index, heads in UNEVEN.items():
            output = adapter.attention_linears(adapter.layers(silenced)[index])["output"]
            for h in heads:
                output.weight[:, h * head:(h + 1) * head] = 0
    prune_heads(model, UNEVEN)
    prune_heads(model, {0: [0]})  # a second removal composes with the first
    with torch.no_grad():
        output = adapter.attention_linears(adapter.layers(silenced)[0])["output"]
        output.weight[:, 0:head] = 0
        torch.testing.assert_close(model(**tiny_inputs()).logits, silenced(**tiny_inputs()).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["bert", *NEW_FAMILIES])
def test_removing_ffn_neurons_equals_silencing_them(family):
    # ModernBERT's gated FFN: a neuron is a row of the input half and of the gate half of one linear.
    model, silenced = tiny_model(family), tiny_model(family)
    adapter = get_adapter(model)
    neurons = {0: [0, 5, 9], 2: list(range(20))}
    with torch.no_grad():
        for index, removed in neurons.items():
            adapter.ffn_linears(adapter.layers(silenced)[index])["out"].weight[:, removed] = 0
    prune_ffn_neurons(model, neurons)
    assert [adapter.ffn_width(layer) for layer in adapter.layers(model)] == [61, 64, 44, 64]
    with torch.no_grad():
        torch.testing.assert_close(model(**tiny_inputs()).logits, silenced(**tiny_inputs()).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_pruned_model_exports_to_onnx_with_the_same_logits(family, tmp_path):
    model = prune_ffn_neurons(prune_heads(tiny_model(family), UNEVEN), {0: list(range(10)), 2: [1, 2]})
    model.save_pretrained(tmp_path / "torch")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "torch").eval()
    inputs = tiny_inputs()
    expected = model(**inputs).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = export_onnx(loaded, tmp_path / "onnx", int8=False)
        int8 = export_onnx(loaded, tmp_path / "onnx8", int8=True)
    torch.testing.assert_close(OnnxSequenceClassifier.from_pretrained(folder)(**inputs).logits, expected,
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(OnnxSequenceClassifier.from_pretrained(int8)(**inputs).logits, expected,
                               atol=0.05, rtol=0)


def _rows(n=32):
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 120, (10,), generator=generator),
             "attention_mask": torch.ones(10, dtype=torch.long), "labels": torch.tensor(i % 3)} for i in range(n)]


@pytest.mark.parametrize("method", ["movement", "theseus"])
@pytest.mark.parametrize("family", ["mpnet", "deberta-v2", "modernbert"])
def test_training_time_methods_reload(family, method, tmp_path):
    model = tiny_model(family)
    args = TrainingArguments(str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=8, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-3, seed=0)
    config = MovementPruningConfig(pruning_method="topK", final_remaining=0.5, initial_warmup=1, final_warmup=1)
    if method == "theseus":
        config = TheseusConfig(successor_layers=2, steps_for_replacing=2)
        if get_adapter(model).first_layer_differs:  # ModernBERT: the successor must start from layer 0
            with pytest.raises(ValueError, match='successor_init="first"'):
                CompressionTrainer(model=model, args=args, train_dataset=_rows(), compression=[config])
            config = TheseusConfig(successor_layers=2, steps_for_replacing=2, successor_init="first")
    CompressionTrainer(model=model, args=args, train_dataset=_rows(), compression=[config]).train()
    model.eval().save_pretrained(tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-6, rtol=0)


HEADS = {"token": AutoModelForTokenClassification, "qa": AutoModelForQuestionAnswering}
STEPS = {
    "heads+ffn": lambda m: prune_ffn_neurons(prune_heads(m, UNEVEN), {1: [0, 5, 9]}),
    "lowrank": lambda m: compress(m, LowRankConfig(param_ratio=0.5)),
    "sharing": lambda m: compress(m, WeightSharingConfig(group_size=2)),
    "int8": lambda m: compress(m, DynamicQuantConfig(backend="torch", embeddings=True)),
}


def _outputs(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else torch.stack([out.start_logits, out.end_logits])


@pytest.mark.parametrize("family", ["bert", "mpnet", "deberta-v2", "modernbert"])
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("step", list(STEPS))
def test_token_classification_and_qa_models_compress_and_reload(family, head, step, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(family)
    if head == "qa":
        config.num_labels = 2  # start and end logits
    model = HEADS[head].from_config(config).eval()
    STEPS[step](model)
    inputs = tiny_inputs()
    expected = _outputs(model, inputs)
    model.save_pretrained(tmp_path)
    loaded = HEADS[head].from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_outputs(loaded, inputs), expected, atol=1e-6, rtol=0)
    assert count_parameters(loaded) == count_parameters(model)
    assert get_record(loaded).steps[-1]["method"] == get_record(model).steps[-1]["method"]


def test_structured_movement_is_refused_where_heads_and_neurons_are_not_row_blocks(tmp_path):
    model = tiny_model("modernbert")
    args = TrainingArguments(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=8, report_to=[],
                             use_cpu=True, save_strategy="no", seed=0)
    config = MovementPruningConfig(pruning_method="topK", final_remaining=0.5, granularity="head", targets=["attention"])
    with pytest.raises(ValueError, match='granularity="element"'):
        CompressionTrainer(model=model, args=args, train_dataset=_rows(), compression=[config]).train()
    assert not any("scores" in name for name, _ in model.named_parameters())  # refused before any change
