"""Settings of vocabulary pruning: keep the tokens a corpus uses, drop the other embedding rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...method_config import MethodConfig, check_range


@dataclass
class VocabularyPruningConfig(MethodConfig):
    """Keep the tokens that occur at least ``min_count`` times when the corpus is tokenized, plus the special
    and added tokens and ``keep_tokens``; every other row of the word-embedding matrix goes, and the tokenizer
    is rewritten to match (WordPiece, BPE and SentencePiece/Unigram tokenizers), so model and tokenizer load
    anywhere with the Auto classes, without hfcompress.

    ``keep_alphabet`` also keeps the single-character tokens (and WordPiece's ``##c`` forms) of every character
    the corpus uses: a word built from a dropped piece is then spelt in characters instead of becoming the unknown
    token. A BPE tokenizer always keeps its whole alphabet and the pieces its kept tokens are merged from.

    Example:
        >>> model, tokenizer = prune_vocabulary(model, tokenizer, train["sentence"], VocabularyPruningConfig())
        >>> model.save_pretrained("out"); tokenizer.save_pretrained("out")
    """

    name: ClassVar[str] = "vocabulary"

    min_count: int = field(default=1, metadata={"help": "Occurrences in the corpus a token needs to stay."})
    keep_alphabet: bool = field(default=True, metadata={
        "help": "Also keep the corpus characters' single-character tokens, so unseen words are spelt, not unknown."})
    keep_tokens: list[str] = field(default_factory=list, metadata={"help": "Tokens kept whatever the corpus says."})

    def __post_init__(self) -> None:
        if not isinstance(self.min_count, int) or isinstance(self.min_count, bool):
            raise ValueError(f"min_count must be an integer; got {self.min_count!r}.")
        check_range("min_count", self.min_count, 1)
        if isinstance(self.keep_tokens, str) or not all(isinstance(t, str) for t in self.keep_tokens):
            raise ValueError(f"keep_tokens must be a list of token strings; got {self.keep_tokens!r}.")
        self.keep_tokens = list(self.keep_tokens)
