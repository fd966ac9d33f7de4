"""Where hfcompress runs: one device for training (and for timing float models), checked before any work.

``"auto"`` is the first CUDA GPU when torch sees one, else the CPU. On CUDA, training stages run there in bf16
where the GPU has it (unless the recipe's ``training`` chose a precision), and latency is timed with
``torch.cuda.synchronize()`` around each pass. The int8 steps and exports hfcompress ships run on the CPU only
(torch dynamic int8 kernels, ONNX Runtime and OpenVINO CPU builds): the pipeline moves the model to the CPU for
them, says so once, and times the result there against the original on the CPU too.

Example:
    >>> resolve_device("auto")          # cuda on a GPU machine, cpu elsewhere
    device(type='cpu')
"""

from __future__ import annotations

from typing import Any

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device a run asked for, refused at once when this machine cannot give it.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device: give one of {', '.join(DEVICES)}") from None
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"hfcompress trains on the CPU or on CUDA; got device {device!r}: give one of "
                         f"{', '.join(DEVICES)}")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device (torch "
                             f"{torch.__version__}: a CPU-only wheel, or no driver): give --device cpu")
        if chosen.index is not None:
            # The Trainer takes cuda:0 in a single process (LOCAL_RANK's GPU under torchrun): choose the GPU the
            # way it reads it, instead of a device it would not use.
            raise ValueError(f"device {device!r}: pick the GPU with CUDA_VISIBLE_DEVICES={chosen.index} and give "
                             "--device cuda (the Trainer uses the first visible GPU, or each process's own under "
                             "torchrun)")
    return chosen


def training_arguments(device: torch.device, training: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments fields that put a training stage on ``device``: ``use_cpu`` on the CPU; on CUDA, bf16
    where the GPU supports it unless ``training`` already sets bf16 or fp16.

    Example:
        >>> training_arguments(torch.device("cpu"), {})
        {'use_cpu': True}
    """
    if device.type == "cpu":
        return {"use_cpu": True}
    if "bf16" in training or "fp16" in training or not torch.cuda.is_bf16_supported():
        return {}
    return {"bf16": True}


def describe(device: torch.device) -> str:
    """A device as results rows name it: ``cpu`` or ``cuda (GPU name)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def model_device(model: Any) -> torch.device:
    """Where a model runs: its parameters' device for a torch module; the CPU for a runtime's runner."""
    if isinstance(model, torch.nn.Module):
        tensor = next(model.parameters(), None)
        if tensor is None:
            tensor = next(model.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")
    return torch.device("cpu")


def holds_int8(model: Any) -> bool:
    """Whether a torch model has hfcompress int8 modules (their fast kernels are the CPU's)."""
    from .methods.quantization.layers import Int8DynamicLinear

    return isinstance(model, torch.nn.Module) and any(isinstance(m, Int8DynamicLinear) for m in model.modules())


__all__ = ["DEVICES", "describe", "holds_int8", "model_device", "resolve_device", "training_arguments"]
