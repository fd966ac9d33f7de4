import pytest
import torch

from hfcompress.adapters import expand_roles, get_adapter, supported_model_types

from .conftest import FAMILIES, tiny_config, tiny_inputs, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_finds_every_piece(family):
    model = tiny_model(family, layers=3, heads=4, hidden=32, ffn=64)
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    assert len(layers) == 3 == adapter.num_layers(model.config)
    assert adapter.num_heads(model.config) == 4 and adapter.head_size(model.config) == 8
    assert adapter.hidden_size(model.config) == 32 and adapter.intermediate_size(model.config) == 64
    for layer in layers:
        attention = adapter.attention_linears(layer)
        qkv = 96 if adapter.fused_qkv else 32  # ModernBERT: q, k and v are blocks of one linear
        assert {n: (m.in_features, m.out_features) for n, m in attention.items()} == {
            "query": (32, qkv), "key": (32, qkv), "value": (32, qkv), "output": (32, 32)}
        ffn = adapter.ffn_linears(layer)
        assert (ffn["in"].in_features, ffn["in"].out_features) == (32, 128 if adapter.gated_ffn else 64)
        assert adapter.ffn_width(layer) == 64
        assert (ffn["out"].in_features, ffn["out"].out_features) == (64, 32)
        assert adapter.layer_num_heads(layer, model.config) == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_linears_are_on_the_forward_path(family):
    # Zeroing the value projection through the adapter must change the output: the adapter
    # points at the modules the model really uses, not at look-alikes.
    model = tiny_model(family)
    inputs = tiny_inputs()
    before = model(**inputs).logits
    with torch.no_grad():
        for layer in get_adapter(model).layers(model):
            get_adapter(model).attention_linears(layer)["value"].weight.zero_()
    assert not torch.allclose(before, model(**inputs).logits)


def test_set_layers_updates_config():
    model = tiny_model("bert", layers=4)
    adapter = get_adapter(model)
    adapter.set_layers(model, torch.nn.ModuleList(list(adapter.layers(model))[:2]))
    assert model.config.num_hidden_layers == 2
    assert model(**tiny_inputs()).logits.shape == (3, 3)


def test_unsupported_model_type_lists_supported():
    with pytest.raises(ValueError) as error:
        get_adapter("gpt2")
    message = str(error.value)
    assert "gpt2" in message
    for model_type in ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "mpnet", "deberta-v2"):
        assert model_type in message
    assert set(supported_model_types()) >= {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "mpnet",
                                            "deberta-v2"}
    assert "modernbert" in supported_model_types()


def test_adapter_accepts_config():
    assert get_adapter(tiny_config("distilbert")).ffn_in == "ffn.lin1"


def test_expand_roles_keeps_encoder_order_and_ignores_other_names():
    assert expand_roles(["ffn", "attention"]) == ["query", "key", "value", "output", "ffn_in", "ffn_out"]
    assert expand_roles(["ffn_out", "classifier"]) == ["ffn_out"]
    assert expand_roles(["attention", "value"]) == ["query", "key", "value", "output"]
