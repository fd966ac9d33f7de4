"""MPNet: BERT's layer layout under other names, and one relative-position bias shared by all layers.

The bias (batch, heads, query, key) is computed once by the encoder with every head; a layer that lost heads
takes only its own heads' part of it (``shared_head_bias_arg``: the attention module's third argument).
"""

from .base import ModelAdapter, register_adapter
from .bert import BERT_LAYOUT

MPNET = register_adapter(
    ModelAdapter(
        name="mpnet",
        model_types=("mpnet",),
        **{**BERT_LAYOUT, "query": "attention.attn.q", "key": "attention.attn.k", "value": "attention.attn.v",
           "attention_output": "attention.attn.o", "attention_module": "attention.attn"},
        onnx_fusion_type=None,  # ORT's BERT fusions do not know the relative-position bias
        reserved_positions=2,  # positions count from padding_idx + 1, as in RoBERTa
        shared_head_bias_arg=(2, "position_bias"),
    )
)
