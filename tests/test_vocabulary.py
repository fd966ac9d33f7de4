"""Vocabulary pruning: WordPiece, byte-level BPE and SentencePiece-style Unigram tokenizers built here, tiny models."""

import json
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

import hfcompress
from hfcompress import DynamicQuantConfig, VocabularyPruningConfig, compress, get_record, prune_heads, prune_vocabulary
from hfcompress.hub import build_model_card

from .conftest import tiny_config

CORPUS = ["the cat sat on the mat", "a dog chased the cat", "the movie was wonderful and moving",
          "a dull and boring film", "cats and dogs are friends", "the actors were brilliant",
          "moving pictures move people", "wonderful wonderful wonderful"] * 3
KEPT_CORPUS = ["the cat sat on the mat", "a dog chased the cat"]
FAMILY = {"wordpiece": "bert", "bpe": "roberta", "unigram": "xlm-roberta"}
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
ROBERTA_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                  "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}


def _tokenizer(kind: str, folder) -> object:
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
            vocab_size=150, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        tok.decoder = decoders.WordPiece()
        config = {"tokenizer_class": "BertTokenizer", "unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]"}
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=ROBERTA_SPECIALS,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        tok.decoder = decoders.ByteLevel()
        config = {"tokenizer_class": "RobertaTokenizer", **ROBERTA_TOKENS}
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=120, special_tokens=ROBERTA_SPECIALS,
                                                                unk_token="<unk>"))
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                           special_tokens=[("<s>", 0), ("</s>", 2)])
        tok.decoder = decoders.Metaspace()
        config = {"tokenizer_class": "XLMRobertaTokenizer", **ROBERTA_TOKENS}
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(folder)


def _model(kind: str, vocab_size: int, cls=AutoModelForSequenceClassification):
    config = tiny_config(FAMILY[kind])
    config.vocab_size = vocab_size
    if kind != "wordpiece":
        config.pad_token_id, config.bos_token_id, config.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    return cls.from_config(config).eval()


def _logits(model, tokenizer, texts):
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_pruned_model_and_tokenizer_agree_with_the_original_on_kept_text_and_reload_without_hfcompress(kind, tmp_path):
    tokenizer = _tokenizer(kind, tmp_path / "tok")
    model = _model(kind, len(tokenizer))
    before = _logits(model, tokenizer, KEPT_CORPUS)
    old_tokens = [tokenizer.convert_ids_to_tokens(tokenizer(t)["input_ids"]) for t in KEPT_CORPUS]
    model, small = prune_vocabulary(model, tokenizer, KEPT_CORPUS, VocabularyPruningConfig(keep_alphabet=False),
                                    eval_texts=CORPUS)
    assert len(small) == model.config.vocab_size < len(tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(small)
    assert type(small) is type(tokenizer)
    # Same tokens (renumbered), so the same logits.
    assert [small.convert_ids_to_tokens(small(t)["input_ids"]) for t in KEPT_CORPUS] == old_tokens
    torch.testing.assert_close(_logits(model, small, KEPT_CORPUS), before, atol=1e-6, rtol=0)
    info = get_record(model).steps[-1]["info"]
    assert info["vocab_after"] == len(small) and info["eval_unknown_rate"] >= info["eval_unknown_rate_before"]
    if kind != "bpe":  # a dropped word is unknown (byte-level BPE has no unknown token: it spells it)
        assert small.unk_token_id in small("wonderful")["input_ids"]
        assert info["eval_unknown_rate"] > 0
    else:
        assert small.decode(small("wonderful brilliant")["input_ids"], skip_special_tokens=True) == "wonderful brilliant"
    model.save_pretrained(tmp_path / "out")
    small.save_pretrained(tmp_path / "out")
    code = ("import json, torch\nfrom transformers import AutoModelForSequenceClassification as A, AutoTokenizer\n"
            f"m = A.from_pretrained({str(tmp_path / 'out')!r}).eval(); t = AutoTokenizer.from_pretrained("
            f"{str(tmp_path / 'out')!r})\n"
            f"e = t({KEPT_CORPUS!r}, padding=True, return_tensors='pt')\n"
            "print(json.dumps(m(**e).logits.tolist()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(reloaded, before, atol=1e-6, rtol=0)


def test_keep_alphabet_spells_unseen_words_and_min_count_drops_rare_tokens(tmp_path):
    tokenizer = _tokenizer("wordpiece", tmp_path / "tok")
    _, spelt = prune_vocabulary(_model("wordpiece", len(tokenizer)), tokenizer, KEPT_CORPUS, VocabularyPruningConfig())
    assert spelt.unk_token_id not in spelt("dots")["input_ids"]  # unseen word, seen characters: spelt
    assert spelt.unk_token_id in spelt("wolf")["input_ids"]  # w, l, f never occur in the corpus: not kept
    _, frequent = prune_vocabulary(_model("wordpiece", len(tokenizer)), tokenizer, KEPT_CORPUS,
                                   VocabularyPruningConfig(min_count=2, keep_alphabet=False, keep_tokens=["dog"]))
    assert frequent.tokenize("the cat dog mat") == ["the", "cat", "dog", "[UNK]"]  # mat occurs once, dog is asked for


def test_bpe_keeps_the_pieces_its_tokens_are_merged_from(tmp_path):
    tokenizer = _tokenizer("bpe", tmp_path / "tok")
    _, small = prune_vocabulary(_model("bpe", len(tokenizer)), tokenizer, ["wonderful"])
    vocabulary = small.get_vocab()
    merges = json.loads(small.backend_tokenizer.to_str())["model"]["merges"]
    assert all(a in vocabulary and b in vocabulary for a, b in merges) and "wonderful" in vocabulary
    assert small.tokenize("wonderful") == tokenizer.tokenize("wonderful")


def test_token_classification_heads_and_composition_with_heads_and_int8_embeddings(tmp_path):
    tokenizer = _tokenizer("wordpiece", tmp_path / "tok")
    model = _model("wordpiece", len(tokenizer), AutoModelForTokenClassification)
    model, small = prune_vocabulary(model, tokenizer, CORPUS[:4])
    prune_heads(model, {0: [1, 2], 3: [0]})
    compress(model, DynamicQuantConfig(backend="torch", embeddings=True))
    expected = _logits(model, small, KEPT_CORPUS)
    model.save_pretrained(tmp_path / "out")
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(_logits(loaded, small, KEPT_CORPUS), expected, atol=1e-6, rtol=0)
    assert [s["method"] for s in get_record(loaded).steps] == ["vocabulary", "heads", "int8_dynamic"]


def test_card_states_the_kept_vocabulary_and_unknown_rate(tmp_path):
    tokenizer = _tokenizer("wordpiece", tmp_path / "tok")
    model, small = prune_vocabulary(_model("wordpiece", len(tokenizer)), tokenizer, KEPT_CORPUS,
                                    VocabularyPruningConfig(keep_alphabet=False), eval_texts=CORPUS)
    model.save_pretrained(tmp_path / "out")
    text = str(build_model_card(tmp_path / "out"))
    assert f"{len(small)} of {len(tokenizer)}" in text and "unknown-token rate on the evaluated texts" in text


def test_bad_input_is_named(tmp_path):
    tokenizer = _tokenizer("wordpiece", tmp_path / "tok")
    with pytest.raises(ValueError, match="corpus for vocabulary pruning is empty"):
        prune_vocabulary(_model("wordpiece", len(tokenizer)), tokenizer, [])
    with pytest.raises(ValueError, match="one text column at a time"):
        prune_vocabulary(_model("wordpiece", len(tokenizer)), tokenizer, [("a pair", "of texts")])
    with pytest.raises(ValueError, match="does not have"):
        prune_vocabulary(_model("wordpiece", len(tokenizer)), tokenizer, CORPUS,
                         VocabularyPruningConfig(keep_tokens=["zzzz-not-a-token"]))
    with pytest.raises(ValueError, match="min_count"):
        VocabularyPruningConfig(min_count=0)
    quantized = compress(_model("wordpiece", len(tokenizer)), DynamicQuantConfig(backend="torch", embeddings=True))
    with pytest.raises(ValueError, match="prune the vocabulary before quantizing the embeddings"):
        prune_vocabulary(quantized, tokenizer, CORPUS)
    with pytest.raises(ValueError, match="hfcompress.prune_vocabulary"):
        compress(_model("wordpiece", len(tokenizer)), VocabularyPruningConfig())
    with pytest.raises(ValueError, match="do not belong together"):
        prune_vocabulary(_model("wordpiece", 20), tokenizer, CORPUS)
    assert hfcompress.VocabularyPruningConfig.from_dict({"min_count": 3}).min_count == 3
