import json
import logging
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

import hfcompress
from hfcompress import get_record, prune_heads
from hfcompress.benchmark import count_parameters

from .conftest import FAMILIES, tiny_inputs, tiny_model

UNEVEN = {0: [1, 3], 1: [0, 1, 2], 3: [2]}


def _roundtrip(model, tmp_path):
    model.save_pretrained(tmp_path)
    return AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_uneven_heads_roundtrip(family, tmp_path):
    model = tiny_model(family)
    prune_heads(model, UNEVEN)
    inputs = tiny_inputs()
    with torch.no_grad():
        expected = model(**inputs).logits
    loaded = _roundtrip(model, tmp_path)
    with torch.no_grad():
        got = loaded(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert count_parameters(loaded) == count_parameters(model)
    adapter = hfcompress.get_adapter(loaded)
    assert [adapter.layer_num_heads(l, loaded.config) for l in adapter.layers(loaded)] == [2, 1, 4, 3]
    assert sorted(p.name for p in tmp_path.iterdir() if "model" in p.name) == ["model.safetensors"]


def test_record_in_config_json(tmp_path):
    model = tiny_model("bert")
    prune_heads(model, UNEVEN)
    model.save_pretrained(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert record["quant_method"] == "hfcompress" and record["format_version"] == 2
    assert record["steps"] == [{"method": "heads", "config": {}, "info": {},
                                "shape": {"heads_before": [4, 4, 4, 4],
                                          "kept_heads": [[0, 2], [3], [0, 1, 2, 3], [0, 1, 3]]}}]


def test_pruned_heads_are_the_named_ones():
    # Removing heads whose value rows are zero (so they contribute nothing) keeps logits exact.
    model = tiny_model("bert")
    adapter = hfcompress.get_adapter(model)
    layer = adapter.layers(model)[0]
    with torch.no_grad():
        layer.attention.self.value.weight[8:16].zero_()
        layer.attention.self.value.bias[8:16].zero_()
    inputs = tiny_inputs()
    before = model(**inputs).logits
    prune_heads(model, {0: [1]})
    torch.testing.assert_close(model(**inputs).logits, before, atol=1e-6, rtol=0)


def test_two_pruning_steps_compose(tmp_path):
    model = tiny_model("roberta")
    prune_heads(model, {0: [0]})
    prune_heads(model, {0: [0], 2: [1, 2]})
    inputs = tiny_inputs()
    expected = model(**inputs).logits
    loaded = _roundtrip(model, tmp_path)
    torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-5, rtol=0)
    assert len(get_record(loaded).steps) == 2


def test_invalid_head_requests():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match="at least one head"):
        prune_heads(model, {0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="heads 0..3"):
        prune_heads(model, {0: [7]})
    with pytest.raises(ValueError, match="layers 0..3"):
        prune_heads(model, {9: [0]})


def test_loaded_model_is_plain_and_trainable(tmp_path):
    model = tiny_model("bert")
    prune_heads(model, UNEVEN)
    loaded = _roundtrip(model, tmp_path)
    assert not loaded.is_quantized
    assert get_record(loaded).steps[0]["method"] == "heads"
    loaded.half().float()  # a plain float model: casts are allowed

    rows = [{**{k: v[i] for k, v in tiny_inputs().items()}, "labels": torch.tensor(i % 3)} for i in range(3)]
    args = TrainingArguments(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=3, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-2)
    before = loaded.bert.encoder.layer[0].attention.self.query.weight.clone()
    Trainer(model=loaded, args=args, train_dataset=rows).train()
    assert not torch.equal(before, loaded.bert.encoder.layer[0].attention.self.query.weight)
    loaded.save_pretrained(tmp_path / "again")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again").eval()
    loaded.eval()
    torch.testing.assert_close(again(**tiny_inputs()).logits, loaded(**tiny_inputs()).logits, atol=1e-5, rtol=0)


@pytest.mark.subprocess
def test_loading_without_hfcompress_fails_loudly(tmp_path):
    model = tiny_model("bert")
    prune_heads(model, UNEVEN)
    model.save_pretrained(tmp_path)
    code = ("from transformers import AutoModelForSequenceClassification as A\n"
            f"A.from_pretrained({str(tmp_path)!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0, "a pruned checkpoint must never load silently into the wrong shape"
    assert "hfcompress" in result.stderr


def test_unknown_step_is_a_clear_error(tmp_path):
    model = tiny_model("bert")
    prune_heads(model, {0: [1]})
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"]["steps"].append({"method": "from_the_future"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="from_the_future.*Upgrade hfcompress"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)


@pytest.mark.slow
def test_real_minilm_uneven_heads_roundtrip(minilm_path, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2).eval()
    prune_heads(model, {0: [0, 5, 11], 2: list(range(6)), 5: [3]})
    inputs = tiny_inputs(batch=2, length=16)
    with torch.no_grad():
        expected = model(**inputs).logits
    loaded = _roundtrip(model, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-5, rtol=0)
    assert count_parameters(loaded) == count_parameters(model) < 22_713_218
