"""The one table of compression methods.

Each method registers once, from its folder's ``__init__.py``: its config class, its record name,
how it applies after training, the callback that runs it inside a ``Trainer``, how a saved model's
shape is rebuilt at load time, and how its record step reads on a model card. ``compress()``,
``CompressionTrainer``, the quantizer behind ``from_pretrained`` and the card all read this
table; nothing else lists methods.

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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_post_training(self) -> bool:
        return self.apply is not None

    @property
    def is_training_time(self) -> bool:
        return self.callback is not None


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the table (re-registering a name replaces it, so a reloaded module is harmless)."""
    if spec.config_cls is not None and getattr(spec.config_cls, "name", None) != spec.name:
        raise ValueError(f"{spec.config_cls.__name__}.name is {getattr(spec.config_cls, 'name', None)!r}, but it "
                         f"registers as {spec.name!r}: a config's name is its record name.")
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
