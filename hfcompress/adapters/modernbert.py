"""ModernBERT: q, k and v in one fused linear (Wqkv), a gated FFN (Wi holds the input and gate halves), rotary
positions, alternating global and sliding-window attention (``config.layer_types``), and a first layer without an
attention LayerNorm."""

from .base import ModelAdapter, register_adapter

MODERNBERT = register_adapter(ModelAdapter(
    name="modernbert",
    model_types=("modernbert",),
    layers_path="layers",
    query="attn.Wqkv",
    key="attn.Wqkv",
    value="attn.Wqkv",
    attention_output="attn.Wo",
    attention_module="attn",
    ffn_in="mlp.Wi",
    ffn_out="mlp.Wo",
    config_num_layers="num_hidden_layers",
    config_num_heads="num_attention_heads",
    config_hidden_size="hidden_size",
    config_intermediate_size="intermediate_size",
    fused_qkv=True,
    gated_ffn=True,
    layer_type_attr="attention_type",
    config_layer_types="layer_types",
    first_layer_differs=True,
    onnx_fusion_type=None,
))
