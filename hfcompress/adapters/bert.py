"""BERT and the families that share its module layout (RoBERTa, XLM-RoBERTa, ELECTRA, CamemBERT)."""

from .base import ModelAdapter, register_adapter

# BERT's config field names, which most families keep (modernbert.py too).
BERT_CONFIG_NAMES = dict(
    config_num_layers="num_hidden_layers",
    config_num_heads="num_attention_heads",
    config_hidden_size="hidden_size",
    config_intermediate_size="intermediate_size",
)

# Shared by the families that keep BERT's layer layout and config names (deberta.py, mpnet.py rename some paths).
BERT_LAYOUT = dict(
    layers_path="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    attention_module="attention.self",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    **BERT_CONFIG_NAMES,
    attention_heads_attr="num_attention_heads",
    attention_all_head_size_attr="all_head_size",
)

BERT = register_adapter(ModelAdapter(name="bert", model_types=("bert",), token_type_ids=True, **BERT_LAYOUT))
ROBERTA = register_adapter(
    ModelAdapter(name="roberta", model_types=("roberta", "xlm-roberta", "camembert"), reserved_positions=2,
                 **BERT_LAYOUT)
)
ELECTRA = register_adapter(ModelAdapter(name="electra", model_types=("electra",), token_type_ids=True, **BERT_LAYOUT))
