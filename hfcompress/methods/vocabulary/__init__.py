"""Vocabulary pruning: keep the embedding rows of the tokens a corpus uses, and a tokenizer that matches."""

from ...registry import MethodSpec, register_method
from .config import VocabularyPruningConfig
from .model import describe_vocabulary, prune_vocabulary, prune_vocabulary_step, shrink_embeddings
from .tokenizer import count_token_ids, shrink_tokenizer, unknown_token_rate

# A standard architecture with a smaller vocab_size: the record step is provenance only.
register_method(MethodSpec(
    name=VocabularyPruningConfig.name, config_cls=VocabularyPruningConfig, title="vocabulary pruning",
    tag="vocabulary-pruning", apply=prune_vocabulary_step, rebuild=None, describe=describe_vocabulary,
    loads_without_hfcompress=True, needs_tokenizer=True,
    standalone="hfcompress.prune_vocabulary(model, tokenizer, texts, VocabularyPruningConfig(...))",
))

__all__ = ["VocabularyPruningConfig", "count_token_ids", "prune_vocabulary", "shrink_embeddings", "shrink_tokenizer",
           "unknown_token_rate"]
