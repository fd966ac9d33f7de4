"""DistilBERT: its own names for the same pieces."""

from .base import ModelAdapter, register_adapter

DISTILBERT = register_adapter(
    ModelAdapter(
        name="distilbert",
        model_types=("distilbert",),
        layers_path="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attention_output="attention.out_lin",
        attention_module="attention",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        config_num_layers="n_layers",
        config_num_heads="n_heads",
        config_hidden_size="dim",
        config_intermediate_size="hidden_dim",
        attention_heads_attr="n_heads",
    )
)
