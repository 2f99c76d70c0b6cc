"""Calling a model on batches for scorers and mask searches, without changing the model.

- batches: a batch is a pair ``(inputs, target)``. ``inputs`` is one tensor (``model(inputs)``) or
  a tuple (``model(*inputs)``, e.g. ``(k-space, operator)`` for MoDL); tensors in it may be
  complex. :func:`take_batches` and :func:`cycle_batches` iterate over what a method sees.
- substitute weights: :func:`batch_loss` runs the model with other tensors in place of its target
  weights (:func:`torch.func.functional_call`); :func:`summed_gradients` differentiates the summed
  batch losses with respect to those tensors.
- model state: inside :func:`frozen` (or :func:`preserved_state`) a scoring pass may run the model
  freely; buffers, train/eval flags, ``requires_grad`` and ``.grad`` are restored on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from punmri.errors import InputError
from punmri.pruning.targets import functional_name, stored_weight

LossFn = Callable[[Any, Any], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# batches


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


# ----------------------------------------------------------------------------------------------
# substitute weights


def leaf_weights(model: nn.Module, targets: Sequence[str]) -> dict[str, torch.Tensor]:
    """Detached copies of the stored target tensors that require grad, keyed by target name."""
    return {t: stored_weight(model, t).detach().clone().requires_grad_(True) for t in targets}


def batch_loss(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    batch: tuple[Any, Any],
    loss_fn: LossFn | None,
) -> torch.Tensor:
    """Loss of ``model`` on one ``(inputs, target)`` batch with ``weights`` ({target: tensor})."""
    if loss_fn is None:
        raise InputError("this scorer needs loss_fn(output, target)")
    device = next(iter(weights.values())).device
    inputs, target = move_to(batch, device)
    swap = {functional_name(model, t): w for t, w in weights.items()}
    return loss_value(loss_fn, call_model(model, inputs, swap), target)


def summed_gradients(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    batches: Sequence[tuple[Any, Any]],
    loss_fn: LossFn,
) -> dict[str, torch.Tensor]:
    """``sum_b dL_b/dw`` for every tensor ``w`` of ``weights`` (leaves that require grad), with
    ``L_b`` the loss on batch ``b``; one backward pass per batch, no graph kept.

    Returns:
        ``{target: gradient}``, each the shape of its weight, in the order of ``weights``.
    """
    names = list(weights)
    totals = {t: torch.zeros_like(w) for t, w in weights.items()}
    for batch in batches:
        loss = batch_loss(model, weights, batch, loss_fn)
        parts = torch.autograd.grad(loss, [weights[t] for t in names])
        for t, g in zip(names, parts, strict=True):
            totals[t] += g
    return totals


# ----------------------------------------------------------------------------------------------
# model state


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """On exit (also after an exception) restore the buffers (e.g. BatchNorm statistics),
    train/eval flags, and ``requires_grad`` and ``.grad`` of every parameter of ``model``."""
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    flags = {n: m.training for n, m in model.named_modules()}
    params = dict(model.named_parameters())
    requires = {n: p.requires_grad for n, p in params.items()}
    grads = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in params.items()}
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers and b.shape == buffers[n].shape:
                    b.copy_(buffers[n])
        for n, m in model.named_modules():
            if n in flags:
                m.training = flags[n]
        for n, p in model.named_parameters():
            if n in requires:
                p.requires_grad_(requires[n])
                p.grad = grads[n]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """:func:`preserved_state` with autograd no longer tracking the model's own parameters inside
    the block (gradients flow only to substitute weights)."""
    with preserved_state(model):
        for p in model.parameters():
            p.requires_grad_(False)
        yield model
