"""The tokenizer side of vocabulary pruning: which ids a corpus uses, and a ``tokenizer.json`` with only those.

Works on the serialized ``tokenizers`` model (WordPiece, WordLevel, BPE, Unigram), so every tokenizer backed
by the ``tokenizers`` library is covered and the result is an ordinary tokenizer folder. Ids are renumbered
in their old order: kept id ``kept[i]`` becomes ``i``, so special tokens at the start keep their ids.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

# Files a tokenizer folder may carry beside tokenizer.json that would describe the old vocabulary.
VOCABULARY_FILES = ("vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spm.model",
                    "tokenizer.model", "spiece.model")
MODEL_TYPES = ("WordPiece", "WordLevel", "BPE", "Unigram")


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    """The ``tokenizers`` serialization of ``tokenizer`` (a transformers tokenizer backed by ``tokenizers``)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"Vocabulary pruning rewrites tokenizer.json: {type(tokenizer).__name__} is not backed by the "
                         "`tokenizers` library. Load the tokenizer with AutoTokenizer (the default fast tokenizer).")
    data = json.loads(backend.to_str())
    kind = data["model"].get("type")
    if kind not in MODEL_TYPES:
        raise ValueError(f"Vocabulary pruning supports {', '.join(MODEL_TYPES)} tokenizer models; this one is {kind}.")
    return data


def model_vocabulary(data: dict[str, Any]) -> dict[str, int]:
    """Token -> id of the tokenizer model (added tokens outside the model excluded)."""
    model = data["model"]
    if model["type"] == "Unigram":
        return {piece: index for index, (piece, _score) in enumerate(model["vocab"])}
    return dict(model["vocab"])


def count_token_ids(tokenizer: Any, texts: Iterable[str], batch_size: int = 1000) -> Counter:
    """How often each id occurs when ``texts`` are tokenized (no special tokens added, no truncation).

    Example:
        >>> count_token_ids(tokenizer, ["a film", "a play"])[tokenizer.convert_tokens_to_ids("a")]
        2
    """
    counts: Counter = Counter()
    batch: list[str] = []
    rows = 0

    def flush() -> None:
        for ids in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
            counts.update(ids)

    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"Vocabulary pruning counts tokens in strings; got a {type(text).__name__} "
                             "(give one text column at a time, e.g. dataset['sentence']).")
        batch.append(text)
        rows += 1
        if len(batch) == batch_size:
            flush()
            batch = []
    if batch:
        flush()
    if rows == 0:
        raise ValueError("The corpus for vocabulary pruning is empty: give the texts the model will see "
                         "(for example the training split's text column).")
    return counts


def _merge_pairs(model: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]


def _merged(model: dict[str, Any], left: str, right: str) -> str:
    prefix = model.get("continuing_subword_prefix") or ""
    return left + (right[len(prefix):] if prefix and right.startswith(prefix) else right)


def corpus_characters(tokenizer: Any, texts: Iterable[str]) -> set[str]:
    """The characters the tokenizer model sees for ``texts`` (after its normalizer and pre-tokenizer, so
    lower-casing, accent stripping, ``▁`` and byte-level symbols are accounted for)."""
    backend = tokenizer.backend_tokenizer
    characters: set[str] = set()
    for text in texts:
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        pieces = [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text)] \
            if backend.pre_tokenizer is not None else [text]
        for piece in pieces:
            characters.update(piece)
    return characters


def required_ids(data: dict[str, Any], ids: set[int], keep_alphabet: bool,
                 characters: set[str] | None = None) -> set[int]:
    """``ids`` plus what the tokenizer model needs to produce them: for BPE its whole alphabet and, recursively,
    the two pieces every kept token is merged from; with ``keep_alphabet`` the single-character tokens (of
    ``characters`` only, when given: a character the corpus never uses needs no spelling).
    """
    model = data["model"]
    vocabulary = model_vocabulary(data)
    kept = set(ids)
    bpe = model["type"] == "BPE"
    if keep_alphabet or bpe:
        prefix = model.get("continuing_subword_prefix") or ""
        for token, index in vocabulary.items():
            body = token[len(prefix):] if prefix and token.startswith(prefix) else token
            # BPE keeps every symbol: text with an unseen byte must still encode, and byte-level BPE has no unknown.
            if len(body) == 1 and (bpe or characters is None or body in characters):
                kept.add(index)
    if model["type"] == "BPE":
        sources = {_merged(model, a, b): (a, b) for a, b in _merge_pairs(model)}
        tokens = {index: token for token, index in vocabulary.items()}
        stack = [tokens[i] for i in kept if i in tokens]
        while stack:
            for piece in sources.get(stack.pop(), ()):
                index = vocabulary.get(piece)
                if index is not None and index not in kept:
                    kept.add(index)
                    stack.append(piece)
    return kept


def _remap_processor(processor: dict[str, Any] | None, mapping: dict[int, int]) -> None:
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_processor(inner, mapping)
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [mapping[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, index = processor[key]
            processor[key] = [token, mapping[index]]


def shrink_tokenizer_json(data: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """A copy of the serialized tokenizer that knows only the ``kept`` ids (sorted), renumbered 0..len-1."""
    data = json.loads(json.dumps(data))
    mapping = {old: new for new, old in enumerate(kept)}
    model = data["model"]
    if model["type"] == "Unigram":
        pieces = model["vocab"]
        model["vocab"] = [pieces[i] for i in kept if i < len(pieces)]
        if model.get("unk_id") is not None:
            model["unk_id"] = mapping[model["unk_id"]]
    else:
        model["vocab"] = {token: mapping[index] for token, index in model["vocab"].items() if index in mapping}
        if model["type"] == "BPE":
            vocabulary = model["vocab"]
            model["merges"] = [[a, b] for a, b in _merge_pairs(model)
                               if a in vocabulary and b in vocabulary and _merged(model, a, b) in vocabulary]
    data["added_tokens"] = [{**token, "id": mapping[token["id"]]} for token in data.get("added_tokens", [])]
    _remap_processor(data.get("post_processor"), mapping)
    if data.get("padding") and data["padding"].get("pad_id") is not None:
        data["padding"]["pad_id"] = mapping[data["padding"]["pad_id"]]
    return data


def shrink_tokenizer(tokenizer: Any, kept: list[int]) -> Any:
    """A tokenizer of the same class that produces only the ``kept`` ids, renumbered in their old order.

    Example:
        >>> small = shrink_tokenizer(tokenizer, [0, 100, 101, 102, 103, 2023, 2143])
    """
    from transformers import AutoTokenizer

    data = shrink_tokenizer_json(tokenizer_json(tokenizer), kept)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        for name in VOCABULARY_FILES:  # tokenizer.json alone describes the new vocabulary
            (Path(folder) / name).unlink(missing_ok=True)
        (Path(folder) / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        shrunk = AutoTokenizer.from_pretrained(folder)
    shrunk.name_or_path = tokenizer.name_or_path
    if len(shrunk) != len(kept):
        raise RuntimeError(f"The rewritten tokenizer knows {len(shrunk)} tokens, expected {len(kept)}: "
                           "this tokenizer's layout is not one vocabulary pruning understands.")
    return shrunk


def unknown_token_rate(tokenizer: Any, texts: Iterable[str]) -> float:
    """Share of the tokens of ``texts`` that are the unknown token (0.0 for a tokenizer without one)."""
    unk = tokenizer.unk_token_id
    counts = count_token_ids(tokenizer, texts)
    total = sum(counts.values())
    return 0.0 if unk is None or total == 0 else counts.get(unk, 0) / total
