"""``MethodConfig``: the base of every method's config, and the validators they share.

A config is the single description of a step: the same object drives training, is written to the
record in ``config.json`` and feeds the model card. ``name`` (and ``method``) is always the record
name; a choice of algorithm inside a method has a field of its own.

Example:
    >>> @dataclass
    ... class ToyConfig(MethodConfig):
    ...     name: ClassVar[str] = "toy"
    ...     keep: float = 0.5
    ...     def __post_init__(self):
    ...         check_range("keep", self.keep, 0, 1, low_open=True)
    >>> ToyConfig.from_dict({"keep": 0.25}).to_dict()
    {'keep': 0.25}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable


@dataclass
class MethodConfig:
    """Base of the method configs: record name, dict round trip, and whether it needs calibration data."""

    name: ClassVar[str] = ""

    @property
    def method(self) -> str:
        """The record name (``heads``, ``int8_dynamic``, ...), as in ``config.json`` and recipes."""
        return self.name

    @property
    def requires_dataloader(self) -> bool:
        """Whether ``compress`` needs ``dataloader=`` for this config."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """The config's fields (``method`` excluded: the record step carries it)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "MethodConfig":
        """Build from a dict of fields; a ``method`` key, if present, must be this config's name."""
        settings = dict(settings)
        method = settings.pop("method", cls.name)
        if method != cls.name:
            raise ValueError(f"{cls.__name__} is recorded as {cls.name!r}; the settings say method={method!r}.")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}{did_you_mean(unknown, known)}; its fields are "
                             f"{sorted(known)}.")
        return cls(**settings)


def did_you_mean(unknown: list[str] | str, known: Any) -> str:
    """`` (did you mean 'x'?)`` for the nearest known names of misspelt ones, or ``""``.

    Example:
        >>> did_you_mean(["lerning_rate"], ["learning_rate", "seed"])
        " (did you mean 'learning_rate'?)"
    """
    import difflib

    names = [unknown] if isinstance(unknown, str) else list(unknown)
    close = [match for name in names for match in difflib.get_close_matches(str(name), [str(k) for k in known], n=1)]
    return f" (did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?)" if close else ""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False, what: str = "") -> None:
    """Raise ``ValueError`` naming the field, the allowed range and the bad value.

    Example:
        >>> check_range("target", 1.5, 0, 1, low_open=True, high_open=True)
        Traceback (most recent call last):
        ValueError: target must lie in (0, 1); got 1.5.
    """
    if value is None and allow_none:
        return
    bad = value is None or isinstance(value, bool) or not isinstance(value, (int, float))
    if not bad:
        bad = ((low is not None and (value <= low if low_open else value < low))
               or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        raise ValueError(f"{name}{f' ({what})' if what else ''} must {_range_text(low, high, low_open, high_open)}; "
                         f"got {value!r}.")


def _range_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"be {'>' if low_open else '>='} {low:g}"
    return f"be {'<' if high_open else '<='} {high:g}"


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.")


def check_subset(name: str, values: Any, choices: Iterable[Any], *, non_empty: bool = True) -> None:
    """Raise ``ValueError`` unless ``values`` is a (non-empty) list drawn from ``choices``."""
    choices = tuple(choices)
    if not isinstance(values, (list, tuple)) or (non_empty and not values) or any(v not in choices for v in values):
        raise ValueError(f"{name} must be a {'non-empty ' if non_empty else ''}subset of {list(choices)}; "
                         f"got {values!r}.")


__all__ = ["MethodConfig", "check_choice", "check_range", "check_subset"]
