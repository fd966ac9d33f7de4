"""DeBERTa-v2 (and the DeBERTa-v3 checkpoints, which use it): BERT's layer layout under DeBERTa's names.

Disentangled attention projects the shared relative-position embeddings with the layer's own key/query
projections (``share_att_key``, the v3 default), so removing a head from query/key removes it from the position
terms too; without sharing, the separate ``pos_key_proj`` / ``pos_query_proj`` lose the same rows.
"""

from .base import ModelAdapter, register_adapter

DEBERTA_V2 = register_adapter(
    ModelAdapter(
        name="deberta-v2",
        model_types=("deberta-v2",),
        layers_path="encoder.layer",
        query="attention.self.query_proj",
        key="attention.self.key_proj",
        value="attention.self.value_proj",
        attention_output="attention.output.dense",
        attention_module="attention.self",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        config_num_layers="num_hidden_layers",
        config_num_heads="num_attention_heads",
        config_hidden_size="hidden_size",
        config_intermediate_size="intermediate_size",
        attention_heads_attr="num_attention_heads",
        attention_all_head_size_attr="all_head_size",
        token_type_ids=True,
        onnx_fusion_type=None,  # ORT's BERT fusions do not match disentangled attention
        extra_head_projections=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
    )
)
