"""BERT-of-Theseus: progressive module replacement (Xu et al. 2020)."""

from ...registry import LayerStage, MethodSpec, register_method
from .callback import TheseusCallback
from .config import TheseusConfig
from .model import TheseusLayers, attach_successor, detach_successor
from .scheduler import replacing_rate

# The exported successor is a standard architecture: the record step is provenance only.
register_method(MethodSpec(
    name=TheseusConfig.name, config_cls=TheseusConfig, title="BERT-of-Theseus progressive module replacement",
    tag="bert-of-theseus", callback=TheseusCallback, rebuild=None, loads_without_hfcompress=True,
    layer_stage=LayerStage("theseus", keys=("theseus",), build=lambda layers, stage: TheseusConfig.from_dict(
        {"successor_layers": layers, **(stage.get("theseus") or {})})),
))

__all__ = ["TheseusCallback", "TheseusConfig", "TheseusLayers", "attach_successor", "detach_successor", "replacing_rate"]
