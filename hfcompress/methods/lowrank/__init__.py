"""Low-rank factorization (truncated SVD) of attention, FFN and word-embedding matrices."""

from ...compress import register_post_training_method
from .config import LowRankConfig
from .layers import LowRankEmbedding, LowRankLinear
from .model import allocate_ranks, choose_rank, factorize

register_post_training_method(LowRankConfig, factorize)

__all__ = ["LowRankConfig", "LowRankEmbedding", "LowRankLinear", "allocate_ranks", "choose_rank", "factorize"]
