"""ModernBERT: q, k and v in one fused linear (Wqkv), a gated FFN (Wi holds the input and gate halves), rotary
positions, alternating global and sliding-window attention (``config.layer_types``), and a first layer without an
attention LayerNorm."""

from .base import ModelAdapter, register_adapter
from .bert import BERT_CONFIG_NAMES

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
    **BERT_CONFIG_NAMES,
    fused_qkv=True,
    gated_ffn=True,
    layer_type_attr="attention_type",
    config_layer_types="layer_types",
    first_layer_differs=True,
    onnx_fusion_type=None,
))
