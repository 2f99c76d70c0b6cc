"""Snapshot and restore the parts of a model a scoring pass may touch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


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
