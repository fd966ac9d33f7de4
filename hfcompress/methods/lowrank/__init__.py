"""Low-rank factorization (truncated SVD) of attention, FFN and word-embedding matrices."""

from ...registry import MethodSpec, register_method
from .config import LowRankConfig
from .layers import LowRankEmbedding, LowRankLinear
from .model import SHAPE_KEYS, allocate_ranks, choose_rank, describe_lowrank, factorize, rebuild_lowrank

register_method(MethodSpec(
    name=LowRankConfig.name, config_cls=LowRankConfig, title="low-rank factorization", tag="low-rank",
    apply=factorize, rebuild=rebuild_lowrank, describe=describe_lowrank, shape_keys=SHAPE_KEYS,
))

__all__ = ["LowRankConfig", "LowRankEmbedding", "LowRankLinear", "allocate_ranks", "choose_rank", "factorize"]
