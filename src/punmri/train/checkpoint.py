"""Checkpoints: everything needed to resume a training run exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io import torch_save_atomic


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
