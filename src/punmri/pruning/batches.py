"""Calling a model on a batch, and iterating over the batches a data-driven method sees.

A batch is a pair ``(inputs, target)``. ``inputs`` is one tensor (``model(inputs)``) or a tuple
(``model(*inputs)``, e.g. ``(k-space, operator)`` for MoDL); tensors in it may be complex.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from punmri.errors import InputError


def call_model(
    model: nn.Module, inputs: Any, weights: dict[str, torch.Tensor] | None = None
) -> Any:
    """``model(*inputs)`` for a tuple, else ``model(inputs)``.

    With ``weights`` (``{functional name: tensor}``) the model runs through
    :func:`torch.func.functional_call` with those tensors in place of its own (tied ones stay tied);
    the model itself is not modified.
    """
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if weights is None:
        return model(*args)
    return functional_call(model, weights, args)


def move_to(obj: Any, device: torch.device) -> Any:
    """Move ``obj`` to ``device``: tensors, nested tuples/lists of them, and objects with a
    ``.to(device)`` method such as an MRI operator (modules excepted); anything else unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(move_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [move_to(o, device) for o in obj]
    if not isinstance(obj, nn.Module) and callable(getattr(obj, "to", None)):
        return obj.to(device)
    return obj


def as_pair(batch: Any) -> tuple[Any, Any]:
    """Unpack one batch into ``(inputs, target)``, with a clear error for anything else."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise InputError(
            f"each batch must be a pair (inputs, target), got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    return batch[0], batch[1]


def take_batches(data: Iterable[Any], num_batches: int | None = None) -> list[tuple[Any, Any]]:
    """The first ``num_batches`` batches of ``data`` (all when None) as a list of pairs."""
    if num_batches is not None and (isinstance(num_batches, bool) or num_batches < 1):
        raise InputError(f"num_batches must be a positive int or None, got {num_batches!r}")
    out = []
    for batch in data:
        out.append(as_pair(batch))
        if num_batches is not None and len(out) >= num_batches:
            break
    if not out:
        raise InputError("data yielded no batches")
    return out


def cycle_batches(data: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """Endless stream of pairs from ``data``, re-iterating it when exhausted.

    Raises:
        InputError: when ``data`` yields nothing, or nothing on a second pass (a one-shot iterator:
            pass a list or a DataLoader instead).
    """
    passes = 0
    while True:
        produced = False
        for batch in data:
            produced = True
            yield as_pair(batch)
        if not produced:
            if passes == 0:
                raise InputError("data yielded no batches")
            raise InputError(
                "data was exhausted after one pass; pass a re-iterable (list, DataLoader) "
                "when more steps than batches are needed"
            )
        passes += 1


def reduce_output(output: Any) -> torch.Tensor:
    """Sum of a model output: real tensors summed, complex ones as ``sum(|z|)``; tuples summed."""
    if isinstance(output, torch.Tensor):
        return output.abs().sum() if output.is_complex() else output.sum()
    if isinstance(output, (tuple, list)) and output:
        return sum((reduce_output(o) for o in output), torch.zeros(()))
    raise InputError(f"model output must be a tensor or tuple of tensors, got {type(output)}")


def loss_value(loss_fn: Any, output: Any, target: Any) -> torch.Tensor:
    """``loss_fn(output, target)`` checked to be a real scalar."""
    loss = loss_fn(output, target)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or loss.is_complex():
        raise InputError("loss_fn(output, target) must return a real scalar tensor")
    return loss.reshape(())
