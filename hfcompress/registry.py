"""The one table of compression methods.

Each method registers once, from its folder's ``__init__.py``: its config class, its record name,
how it applies after training, the callback that runs it inside a ``Trainer``, how a saved model's
shape is rebuilt at load time, how its record step reads on a model card, and what it can do
(its declared capabilities). ``compress()``, ``CompressionTrainer``, the pipeline, the quantizer
behind ``from_pretrained`` and the card all read this table and ask it about capabilities, never
about a method's name; nothing else lists methods. Every folder in ``hfcompress/methods/`` is
imported (and so registered) by ``import hfcompress``; a method outside the package registers by
calling :func:`register_method` itself.

Example:
    >>> register_method(MethodSpec(name="toy", config_cls=ToyConfig, title="toy pruning", apply=apply_toy,
    ...                            rebuild=rebuild_toy, shape_keys=("kept",)))
    >>> get_method("toy").title
    'toy pruning'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class MethodSpec:
    """How one method plugs into hfcompress.

    - ``apply(model, config, dataloader=None) -> model``: the post-training step (``compress()``).
    - ``callback(config) -> TrainerCallback``: the training-time method (``CompressionTrainer``).
    - ``rebuild(model, step)``: gives a freshly built model the shape the step left; ``None`` when
      the step leaves the standard architecture (provenance only).
    - ``describe(step) -> dict``: card settings for a record step; default: the config's fields.
    - ``shape_keys``: fields of a step that the rebuild reads (the record's ``"shape"`` part);
      also how steps written before ``format_version`` existed are read.
    - ``runtime_quantized``: the loaded model keeps int8 modules (inference only).
    - ``loads_without_hfcompress``: the saved model is a standard architecture whose card need not
      ask for ``import hfcompress``.

    Declared capabilities (what the pipeline, ``compress()`` and the trainer check):

    - ``needs_tokenizer``: ``apply(model, config, tokenizer=..., texts=...)`` returns ``(model, tokenizer)``
      (the tokenizer changes with the model); ``compress()`` refuses it and names ``standalone`` instead, a
      recipe ``compress`` stage passes the tokenizer and the training texts.
    - ``layer_stage``: the method changes the layer count and is what a recipe ``layers`` stage runs for its
      ``strategy`` (see :class:`LayerStage`).
    - ``prunes_units``: it removes heads or FFN neurons ranked by importance, so
      ``IterativePruningCallback`` (a recipe's ``iterative:``) can run it in rounds.
    - ``leaves_int8(config)``: whether a step with these settings leaves int8 modules that no longer train
      (default: ``runtime_quantized``).
    - ``standalone``: the call to use where ``compress()`` cannot (shown in its error).
    """

    name: str
    config_cls: type | None
    title: str
    tag: str | None = None
    apply: Callable[..., Any] | None = None
    callback: Callable[[Any], Any] | None = None
    rebuild: Callable[[Any, dict], None] | None = None
    describe: Callable[[dict], dict] | None = None
    shape_keys: tuple[str, ...] = ()
    runtime_quantized: bool = False
    loads_without_hfcompress: bool = False
    needs_tokenizer: bool = False
    layer_stage: LayerStage | None = None
    prunes_units: bool = False
    leaves_int8: Callable[[Any], bool] | None = None
    standalone: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_post_training(self) -> bool:
        return self.apply is not None

    @property
    def is_training_time(self) -> bool:
        return self.callback is not None

    @property
    def changes_layer_count(self) -> bool:
        return self.layer_stage is not None

    def int8_after(self, config: Any) -> bool:
        """Whether a step of this method with ``config`` leaves int8 modules (which no later step can train)."""
        return self.leaves_int8(config) if self.leaves_int8 is not None else self.runtime_quantized

    def capabilities(self) -> dict[str, bool]:
        """The declared capabilities, by name (``hfcompress`` lists them; tests read them)."""
        return {"post_training": self.is_post_training, "training_time": self.is_training_time,
                "needs_tokenizer": self.needs_tokenizer, "runtime_int8": self.runtime_quantized,
                "changes_layer_count": self.changes_layer_count, "prunes_units": self.prunes_units,
                "rebuilds_shape": self.rebuild is not None}


@dataclass(frozen=True)
class LayerStage:
    """How a recipe's ``layers`` stage runs a layer-reducing method.

    ``strategy`` is the name recipes use (``strategy: truncate``); ``build(layers, settings)`` makes the method's
    config from the stage's layer count and its own ``keys`` (the other stage keys it accepts);
    ``distillation`` is the stage's default when the recipe gives none (``None``: no teacher).

    Example:
        >>> LayerStage("truncate", keys=("keep",), build=lambda n, s: TruncationConfig(layers=n, keep=s.get("keep")))
    """

    strategy: str
    build: Callable[[int, dict], Any]
    keys: tuple[str, ...] = ()
    distillation: dict[str, Any] | None = None


_METHODS: dict[str, MethodSpec] = {}


def _origin(spec: MethodSpec) -> tuple[str, ...]:
    """Where a spec's parts are defined: the same origin means the same method (a reloaded module)."""
    parts = [spec.config_cls, spec.apply, spec.callback, spec.rebuild, spec.describe]
    return tuple(f"{getattr(p, '__module__', '')}.{getattr(p, '__qualname__', '')}" for p in parts if p is not None)


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the table. Registering a different method under a name already taken raises; the same
    method registered again (a reloaded module) replaces its entry.

    Example:
        >>> register_method(MethodSpec(name="toy", config_cls=ToyConfig, title="toy pruning", apply=apply_toy))
    """
    if spec.config_cls is not None and getattr(spec.config_cls, "name", None) != spec.name:
        raise ValueError(f"{spec.config_cls.__name__}.name is {getattr(spec.config_cls, 'name', None)!r}, but it "
                         f"registers as {spec.name!r}: a config's name is its record name.")
    taken = _METHODS.get(spec.name)
    if taken is not None and _origin(taken) != _origin(spec):
        raise ValueError(f"A compression method named {spec.name!r} is already registered (from "
                         f"{_origin(taken)[0].rsplit('.', 1)[0]}): record names are unique; give yours another name.")
    if spec.layer_stage is not None:
        clash = [s.name for s in _METHODS.values() if s.name != spec.name and s.layer_stage is not None
                 and s.layer_stage.strategy == spec.layer_stage.strategy]
        if clash:
            raise ValueError(f"The layers-stage strategy {spec.layer_stage.strategy!r} is already {clash[0]!r}'s; "
                             "give yours another strategy name.")
    _METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The method recorded as ``name``.

    Example:
        >>> get_method("heads").config_cls.__name__
        'HeadPruningConfig'
    """
    if name not in _METHODS:
        raise ValueError(f"Unknown compression method {name!r}; known: {', '.join(method_names())}.")
    return _METHODS[name]


def find_method(name: str) -> MethodSpec | None:
    return _METHODS.get(name)


def method_for_config(config: Any) -> MethodSpec | None:
    """The spec whose config class ``config`` is an instance of (``None`` if it is not a method config)."""
    for spec in _METHODS.values():
        if spec.config_cls is not None and type(config) is spec.config_cls:
            return spec
    return None


def method_names() -> list[str]:
    return sorted(_METHODS)


def methods() -> list[MethodSpec]:
    return [_METHODS[name] for name in method_names()]


def layer_strategies() -> dict[str, MethodSpec]:
    """The ``layers`` stage's strategies (``truncate``, ``theseus``, ...) and the method behind each."""
    return {spec.layer_stage.strategy: spec for spec in methods() if spec.layer_stage is not None}


def leaves_int8(config: Any) -> bool:
    """Whether applying ``config`` leaves int8 modules that no later step can train."""
    spec = method_for_config(config)
    return spec is not None and spec.int8_after(config)


def config_from_dict(method: str, settings: dict[str, Any]) -> Any:
    """A method's config from its record name and fields, as recipes and records write them.

    Example:
        >>> config_from_dict("sharing", {"group_size": 2})
        WeightSharingConfig(groups=None, group_size=2, pattern='consecutive', ...)
    """
    spec = get_method(method)
    if spec.config_cls is None:
        raise ValueError(f"{method!r} is written by hfcompress itself and has no config to build.")
    return spec.config_cls.from_dict(settings)
