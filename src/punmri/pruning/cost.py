"""Count the forward and backward passes a mask search makes through a model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class PassCount:
    """Forward/backward pass counts and wall time (seconds) of one :func:`count_passes` block."""

    forward: int = 0
    backward: int = 0
    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """``{"seconds", "forward_passes", "backward_passes"}`` for mask metadata."""
        return {
            "seconds": self.seconds,
            "forward_passes": self.forward,
            "backward_passes": self.backward,
        }


def _first_grad_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output if output.requires_grad else None
    if isinstance(output, (tuple, list)):
        for o in output:
            t = _first_grad_tensor(o)
            if t is not None:
                return t
    return None


def _synchronize() -> None:
    """Wait for queued GPU work, so that wall times cover it (a no-op without CUDA in use)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def count_passes(model: nn.Module) -> Iterator[PassCount]:
    """Count calls of ``model`` and gradient flows back through its output inside the block.

    A forward pass is one call of ``model`` (also of a ``copy.deepcopy`` made inside the block,
    which inherits the hook). A backward pass is one traversal of the autograd graph that reaches
    the model's output; a Hessian-gradient product (double backprop, GraSP) counts as one more.
    """
    _synchronize()
    count = PassCount(_start=time.perf_counter())

    def on_backward(_grad: torch.Tensor) -> None:
        count.backward += 1

    def on_forward(_module: nn.Module, _inputs: Any, output: Any) -> None:
        count.forward += 1
        t = _first_grad_tensor(output)
        if t is not None:
            t.register_hook(on_backward)

    handle = model.register_forward_hook(on_forward)
    try:
        yield count
    finally:
        handle.remove()
        _synchronize()
        count.seconds = time.perf_counter() - count._start
