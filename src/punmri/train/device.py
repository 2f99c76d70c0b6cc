"""The one device a run computes on: resolved from ``train.device`` and checked to exist."""

from __future__ import annotations

import torch

from ..errors import InputError
from . import distributed


def resolve_device(name: str) -> torch.device:
    """The device of ``train.device``, checked to exist: ``'auto'`` is CUDA when available, else
    the CPU; in a distributed run ``cuda`` names this process's GPU (``cuda:LOCAL_RANK``).

    Every stage of a run (mask searches, scorers, IMP, the mask check, training, validation and
    evaluation) computes on this one device; there is no silent fallback to the CPU.

    Raises:
        InputError: naming ``train.device`` when it is not a device name, asks for CUDA on a
            machine without a usable CUDA device, or for a CUDA index the machine does not have.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = distributed.device_of_rank(torch.device(name))
    except (RuntimeError, TypeError) as exc:
        raise InputError(
            f"train.device={name!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"train.device={name!r} asks for CUDA, but this machine has no usable CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); set "
                "train.device=cpu, or auto to use CUDA only where it exists"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(
                f"train.device={name!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}; choose one of them"
            )
    elif device.type != "cpu":
        raise InputError(
            f"train.device={name!r}: punmri runs on 'cpu' or 'cuda' devices; use 'auto', 'cpu', "
            "'cuda' or 'cuda:N'"
        )
    return device


def device_label(device: torch.device | str) -> str:
    """What a run computes on, for the report and ``metrics.json``: ``"cpu (4 threads)"`` or
    ``"cuda:0 (NVIDIA H200)"``; a string is resolved first (:func:`resolve_device`)."""
    if isinstance(device, str):
        device = resolve_device(device)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


__all__ = ["device_label", "resolve_device"]
