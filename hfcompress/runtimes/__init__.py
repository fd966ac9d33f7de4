"""The runtimes a compressed model can be exported to, one table like the methods': each runtime's export config,
its export function, the runner that loads what it wrote, the file that marks such a folder, and the recipe
formats that select it. The pipeline's export stage, ``hfcompress export``, ``evaluate`` / ``benchmark`` and
``load_model`` read this table; a runtime registers from the module that implements it (ONNX Runtime from
``methods/quantization``, whose int8 internals it uses; OpenVINO from ``runtimes/openvino.py``).

Example:
    >>> runtime, config = export_config("onnx_int8", {"weight_bits": 8})
    >>> runtime.name, config.int8
    ('onnxruntime', True)
    >>> runtime_for_folder("out/onnx").runner.from_pretrained("out/onnx")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..method_config import did_you_mean


@dataclass(frozen=True)
class RuntimeSpec:
    """One export target.

    - ``config_cls``: its export config (a ``MethodConfig``: ``from_dict`` with did-you-mean, ``to_dict``).
    - ``export(model, folder, config, *, tokenizer, dataloader) -> Path``.
    - ``runner``: a class with ``from_pretrained(folder, **kwargs)`` whose instances are called like the model.
    - ``marker``: the file that makes a folder this runtime's (``model.onnx``, ``openvino_model.xml``).
    - ``record_key``: the config.json key where the export records what it did (int8, precision, host).
    - ``formats``: recipe format names and the config fields each one sets (``onnx_int8`` -> ``{"int8": True}``).
    - ``packages``: the optional packages it imports (lazily); ``installed()`` says whether they are here.
    """

    name: str
    config_cls: type
    export: Callable[..., Path]
    runner: Any
    marker: str
    record_key: str = ""
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    install_hint: str | None = None
    packages: tuple[str, ...] = ()

    def installed(self) -> bool:
        """Whether this machine can export to and run this runtime (its optional packages are importable)."""
        import importlib.util

        return all(importlib.util.find_spec(package) is not None for package in self.packages)

    def int8_formats(self) -> list[str]:
        """Its recipe formats that quantize to int8 (``onnx_int8``, ``openvino_int8``)."""
        return [fmt for fmt, fields in self.formats.items() if fields.get("int8")]

    def record(self, folder: str | os.PathLike) -> dict[str, Any]:
        """What the export in ``folder`` recorded (empty when it recorded nothing)."""
        import json

        try:
            return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(self.record_key) or {}
        except (OSError, ValueError):
            return {}


_RUNTIMES: dict[str, RuntimeSpec] = {}


def register_runtime(spec: RuntimeSpec) -> RuntimeSpec:
    """Add a runtime; a format name already taken by another runtime raises."""
    for fmt in spec.formats:
        owner = next((r.name for r in _RUNTIMES.values() if fmt in r.formats and r.name != spec.name), None)
        if owner:
            raise ValueError(f"export format {fmt!r} is already {owner!r}'s; give yours another name.")
    _RUNTIMES[spec.name] = spec
    return spec


def runtimes(installed: bool = False) -> list[RuntimeSpec]:
    """Every registered runtime by name (``installed=True``: only those whose packages this machine has).

    Example:
        >>> [spec.name for spec in runtimes(installed=True)]   # without the openvino extra
        ['onnxruntime']
    """
    return [_RUNTIMES[name] for name in sorted(_RUNTIMES) if not installed or _RUNTIMES[name].installed()]


def export_formats() -> dict[str, RuntimeSpec]:
    """Every recipe format name and the runtime behind it."""
    return {fmt: spec for spec in runtimes() for fmt in spec.formats}


def get_runtime(name: str) -> RuntimeSpec:
    if name not in _RUNTIMES:
        raise ValueError(f"Unknown runtime {name!r}{did_you_mean(name, _RUNTIMES)}; runtimes: {', '.join(sorted(_RUNTIMES))}.")
    return _RUNTIMES[name]


def export_config(fmt: str, settings: dict[str, Any] | None = None) -> tuple[RuntimeSpec, Any]:
    """The runtime of a recipe format and its export config built from ``settings`` over the format's own fields.

    Example:
        >>> export_config("onnx", {"opset": 18})[1].int8
        False
    """
    formats = export_formats()
    if fmt not in formats:
        raise ValueError(f"format must be one of {tuple(formats)}; got {fmt!r}{did_you_mean(str(fmt), formats)}")
    spec = formats[fmt]
    return spec, spec.config_cls.from_dict({**spec.formats[fmt], **(settings or {})})


def runner_feed(input_names: list[str], inputs: dict[str, Any]) -> dict[str, Any]:
    """A runner's int64 numpy inputs from the torch model's keyword inputs: a missing token_type_ids is zeros and a
    missing attention_mask ones, as the torch model assumes."""
    import numpy as np
    import torch

    ids = torch.as_tensor(inputs["input_ids"])
    feed = {}
    for name in input_names:
        value = inputs.get(name)
        if value is None and name == "token_type_ids":
            value = torch.zeros_like(ids)
        elif value is None and name == "attention_mask":
            value = torch.ones_like(ids)
        feed[name] = value.cpu().numpy().astype(np.int64) if isinstance(value, torch.Tensor) else \
            np.asarray(value, np.int64)
    return feed


def runtime_for_folder(folder: str | os.PathLike) -> RuntimeSpec | None:
    """The runtime whose export ``folder`` holds, or ``None`` for a PyTorch model folder."""
    folder = Path(folder)
    return next((spec for spec in runtimes() if (folder / spec.marker).is_file()), None)


__all__ = ["RuntimeSpec", "export_config", "export_formats", "get_runtime", "register_runtime", "runner_feed",
           "runtime_for_folder", "runtimes"]
