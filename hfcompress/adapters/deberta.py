"""DeBERTa-v2 (and the DeBERTa-v3 checkpoints, which use it): BERT's layer layout under DeBERTa's names.

Disentangled attention projects the shared relative-position embeddings with the layer's own key/query
projections (``share_att_key``, the v3 default), so removing a head from query/key removes it from the position
terms too; without sharing, the separate ``pos_key_proj`` / ``pos_query_proj`` lose the same rows.
"""

from .base import ModelAdapter, register_adapter
from .bert import BERT_LAYOUT

DEBERTA_V2 = register_adapter(
    ModelAdapter(
        name="deberta-v2",
        model_types=("deberta-v2",),
        **{**BERT_LAYOUT, "query": "attention.self.query_proj", "key": "attention.self.key_proj",
           "value": "attention.self.value_proj"},
        token_type_ids=True,
        onnx_fusion_type=None,  # ORT's BERT fusions do not match disentangled attention
        extra_head_projections=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
    )
)
