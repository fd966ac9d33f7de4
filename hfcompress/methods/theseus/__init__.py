"""BERT-of-Theseus: progressive module replacement (Xu et al. 2020)."""

from ...integration import register_step
from ...trainer import register_training_method
from .callback import TheseusCallback
from .config import TheseusConfig
from .model import TheseusLayers, attach_successor, detach_successor
from .scheduler import replacing_rate

# The exported successor is a standard architecture: the record step is provenance only.
register_step("theseus", None)
register_training_method(TheseusConfig, TheseusCallback)

__all__ = ["TheseusCallback", "TheseusConfig", "TheseusLayers", "attach_successor", "detach_successor", "replacing_rate"]
