"""Checkpoints: everything needed to resume a training run exactly."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..io import torch_save_atomic
from ..pruning import MaskParametrization, masked_state_dict
from .distributed import unwrap


def rng_state() -> dict[str, Any]:
    """Snapshot of the global RNGs (torch CPU/CUDA, numpy, random)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **payload: Any) -> None:
    """Atomically save a checkpoint dict (model/optimizer/scheduler state, step, history...)."""
    torch_save_atomic(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint, with a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise InputError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def model_state(model: nn.Module) -> dict[str, Any]:
    """A model's checkpoint entries: ``model``, its weights under plain names (pruned entries
    exactly zero: the state loads into an unpruned copy of the network with ``load_state_dict``)
    and ``masks``, ``{weight name: bool tensor}`` of a masked model (else None). A
    DistributedDataParallel wrapper is looked through: names carry no ``module.`` prefix."""
    model = unwrap(model)
    if not any(isinstance(m, MaskParametrization) for m in model.modules()):
        return {"model": model.state_dict(), "masks": None}
    state, masks = masked_state_dict(model)
    return {"model": state, "masks": dict(masks)}


def load_model_state(model: nn.Module, checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Load the weights of ``checkpoint`` (from :func:`model_state`, read from ``path``) into
    ``model`` in place, whether ``model`` is plain or masked; its parameters stay the same objects
    (an optimizer over them stays valid). Checkpoints written with the raw keys of a masked model
    (``<m>.parametrizations.weight.original``) load too, and so do states of a
    DistributedDataParallel wrapper (``module.`` prefixes)."""
    model = unwrap(model)
    own = model.state_dict()
    state = dict(checkpoint["model"])
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if set(state) != set(own):
        state = _to_own_layout(own, state, checkpoint.get("masks"), path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(
            f"checkpoint {path} does not fit the model (saved with another model config?): "
            f"{str(exc).splitlines()[0]}"
        ) from None


def _to_own_layout(
    own: Mapping[str, torch.Tensor],
    plain: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor] | None,
    path: str | Path,
) -> dict[str, torch.Tensor]:
    """Plain-named ``plain`` weights rearranged into the keys of a masked model's ``own`` state;
    the model keeps its own mask buffers, which must equal the checkpoint's ``masks``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in own.items():
        head, sep, tail = key.rpartition("parametrizations.")
        if key in plain or not sep:
            out[key] = plain.get(key)
            continue
        attr, _, part = tail.partition(".")
        name = f"{head}{attr}"
        if part == "original":
            out[key] = plain.get(name)
        elif part.endswith("mask"):
            saved = None if masks is None else masks.get(name)
            if saved is not None and not torch.equal(saved.to(value.device), value.bool()):
                raise InputError(
                    f"checkpoint {path} was saved with another mask for {name}; load it into a "
                    "model masked with the checkpoint's masks (or into a plain model)"
                )
            out[key] = value
        else:
            out[key] = plain.get(key)
    missing = sorted(k for k, v in out.items() if v is None)
    if missing:
        raise InputError(
            f"checkpoint {path} lacks {missing[0]} (and {len(missing) - 1} more); it was saved "
            "with another model config"
        )
    return out
