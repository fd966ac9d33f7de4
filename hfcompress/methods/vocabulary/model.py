"""Vocabulary pruning on a model and its tokenizer: drop the word-embedding rows of tokens a corpus never uses.

The result is a standard architecture with a smaller ``vocab_size`` and an ordinary tokenizer folder, so both
load with the Auto classes without hfcompress; the record step is provenance (sizes, unknown-token rates).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from ...integration import append_step, make_step
from .config import VocabularyPruningConfig
from .tokenizer import corpus_characters, count_token_ids, required_ids, shrink_tokenizer, tokenizer_json, unknown_token_rate

logger = logging.getLogger(__name__)

# config.json fields that hold token ids and must follow the renumbering.
TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "unk_token_id",
                   "mask_token_id", "decoder_start_token_id")


def _config_token_ids(model: PreTrainedModel) -> dict[str, int]:
    return {name: getattr(model.config, name) for name in TOKEN_ID_FIELDS
            if isinstance(getattr(model.config, name, None), int)}


def kept_token_ids(model: PreTrainedModel, tokenizer: Any, texts: Iterable[str],
                   config: VocabularyPruningConfig) -> tuple[list[int], dict[str, Any]]:
    """The ids to keep (sorted) and what was counted: corpus tokens with ``min_count``, special and added tokens,
    ``keep_tokens``, the ids config.json names, and what the tokenizer model needs (alphabet, BPE pieces)."""
    data = tokenizer_json(tokenizer)
    texts = list(texts)
    counts = count_token_ids(tokenizer, texts)
    ids = {i for i, n in counts.items() if n >= config.min_count}
    ids |= set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    ids |= set(_config_token_ids(model).values())
    unknown = [t for t in config.keep_tokens if t not in tokenizer.get_vocab()]
    if unknown:
        raise ValueError(f"keep_tokens names tokens the tokenizer does not have: {unknown[:10]}.")
    ids |= set(tokenizer.convert_tokens_to_ids(config.keep_tokens))
    characters = corpus_characters(tokenizer, texts) if config.keep_alphabet else None
    ids = required_ids(data, ids, config.keep_alphabet, characters)
    info = {"corpus_tokens": int(sum(counts.values())), "corpus_distinct_tokens": len(counts)}
    return sorted(ids), info


def _check_embeddings(model: PreTrainedModel, tokenizer: Any) -> nn.Embedding:
    embeddings = model.get_input_embeddings()
    if type(embeddings) is not nn.Embedding:
        raise ValueError(f"The word embeddings are a {type(embeddings).__name__}, not a float nn.Embedding: prune the "
                         "vocabulary before quantizing the embeddings (int8 embeddings keep working afterwards).")
    if model.get_output_embeddings() is not None:
        raise ValueError("Vocabulary pruning keeps task heads (sequence/token classification, question answering); "
                         "this model has a language-model head over the vocabulary, which it does not shrink.")
    if len(tokenizer) > embeddings.num_embeddings:
        raise ValueError(f"The tokenizer has {len(tokenizer)} tokens but the model only {embeddings.num_embeddings} "
                         "embedding rows: they do not belong together.")
    return embeddings


def shrink_embeddings(model: PreTrainedModel, kept: list[int]) -> None:
    """Keep only the word-embedding rows ``kept`` (sorted old ids), renumbered 0..len-1, and every id in config.json
    (and every module's ``padding_idx``) renumbered with them; in place."""
    embeddings = model.get_input_embeddings()
    mapping = {old: new for new, old in enumerate(kept)}
    token_ids = _config_token_ids(model)
    missing = {name: i for name, i in token_ids.items() if i not in mapping}
    if missing:
        raise ValueError(f"config.json names token ids that would be dropped: {missing}.")
    old_pad = embeddings.padding_idx
    index = torch.tensor(kept, dtype=torch.long, device=embeddings.weight.device)
    smaller = nn.Embedding(len(kept), embeddings.embedding_dim, padding_idx=mapping.get(old_pad),
                           device=embeddings.weight.device, dtype=embeddings.weight.dtype)
    with torch.no_grad():
        smaller.weight.copy_(embeddings.weight.index_select(0, index))
    smaller.weight.requires_grad_(embeddings.weight.requires_grad)
    model.set_input_embeddings(smaller)
    for name, old in token_ids.items():
        setattr(model.config, name, mapping[old])
    if old_pad is not None:
        # Modules that remember the pad id themselves (RoBERTa-style position ids count non-pad tokens).
        for module in model.modules():
            if module is not smaller and getattr(module, "padding_idx", None) == old_pad and \
                    not isinstance(module, nn.Embedding):
                module.padding_idx = mapping[old_pad]
    model.config.vocab_size = len(kept)


def prune_vocabulary(model: PreTrainedModel, tokenizer: Any, texts: Iterable[str],
                     config: VocabularyPruningConfig | None = None,
                     eval_texts: Iterable[str] | None = None) -> tuple[PreTrainedModel, Any]:
    """Keep the tokens ``texts`` use (see :class:`VocabularyPruningConfig`); returns the model (changed in place)
    and a new tokenizer that matches it. ``eval_texts`` (the set you will report on) get their unknown-token
    rate before and after measured into the record and the card.

    Example:
        >>> model, tokenizer = prune_vocabulary(model, tokenizer, train["sentence"], eval_texts=dev["sentence"])
        >>> model.save_pretrained("out"); tokenizer.save_pretrained("out")   # loads without hfcompress
    """
    config = config or VocabularyPruningConfig()
    embeddings = _check_embeddings(model, tokenizer)
    eval_texts = list(eval_texts) if eval_texts is not None else None
    rows_before = embeddings.num_embeddings
    kept, info = kept_token_ids(model, tokenizer, texts, config)
    new_tokenizer = shrink_tokenizer(tokenizer, kept)
    shrink_embeddings(model, kept)
    info.update({"vocab_before": rows_before, "vocab_after": len(kept),
                 "embedding_params_removed": (rows_before - len(kept)) * embeddings.embedding_dim})
    if eval_texts is not None:
        info["eval_unknown_rate_before"] = round(unknown_token_rate(tokenizer, eval_texts), 6)
        info["eval_unknown_rate"] = round(unknown_token_rate(new_tokenizer, eval_texts), 6)
    append_step(model, make_step(config.name, config, None, info))
    logger.info("vocabulary pruning: kept %d of %d tokens", len(kept), rows_before)
    return model, new_tokenizer


def prune_vocabulary_step(model: PreTrainedModel, config: VocabularyPruningConfig, dataloader: Any = None, *,
                          tokenizer: Any, texts: Iterable[str]) -> tuple[PreTrainedModel, Any]:
    """The registry's ``apply`` (a tokenizer-changing step): what a recipe's ``compress`` stage calls with the
    tokenizer and the training texts."""
    return prune_vocabulary(model, tokenizer, texts, config)


def describe_vocabulary(step: dict) -> dict[str, Any]:
    info = step.get("info", {})
    described = {"kept tokens": f"{info.get('vocab_after')} of {info.get('vocab_before')}",
                 "min count": step.get("config", {}).get("min_count")}
    if "eval_unknown_rate" in info:
        described["unknown-token rate on the evaluated texts"] = (
            f"{100 * info['eval_unknown_rate']:.2f}% (before: {100 * info['eval_unknown_rate_before']:.2f}%)")
    return described
