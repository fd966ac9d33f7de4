"""Layer truncation: which layers stay, the record, the reload."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hfcompress import TruncationConfig, compress, get_record
from hfcompress.methods.truncation import kept_layer_indices

from hfcompress.adapters import get_adapter

from .conftest import FAMILIES, tiny_inputs, tiny_model


def test_kept_layers():
    assert kept_layer_indices(6, TruncationConfig(layers=3, keep="evenly")) == [1, 3, 5]
    assert kept_layer_indices(6, TruncationConfig(layers=2, keep="evenly")) == [2, 5]
    assert kept_layer_indices(12, TruncationConfig(layers=6, keep="first")) == [0, 1, 2, 3, 4, 5]
    assert kept_layer_indices(4, TruncationConfig(layers=4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="keeps more layers than the model has"):
        kept_layer_indices(4, TruncationConfig(layers=5))
    with pytest.raises(ValueError, match="keep must be one of"):
        TruncationConfig(keep="last")


@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_model_reloads_as_the_same_standard_model(family, tmp_path):
    model = tiny_model(family, layers=4)
    adapter = get_adapter(model)
    config, kept = TruncationConfig(layers=2, keep="evenly"), [1, 3]
    if adapter.first_layer_differs:  # ModernBERT's layer 0 has no attention LayerNorm: it must stay, first
        with pytest.raises(ValueError, match='keep="first"'):
            compress(model, config)
        config, kept = TruncationConfig(layers=2, keep="first"), [0, 1]
    original_layer = adapter.layers(model)[kept[1]]
    compress(model, config)
    layers = adapter.layers(model)
    assert len(layers) == 2 and layers[1] is original_layer
    expected = model(**tiny_inputs()).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(**tiny_inputs()).logits, expected, atol=1e-6, rtol=0)
    assert get_record(loaded).steps[0]["info"]["kept_layers"] == kept
