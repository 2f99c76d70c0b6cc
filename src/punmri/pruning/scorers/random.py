"""Random scores: the baseline every pruning-at-initialization method must beat."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from punmri.pruning.targets import stored_weight


def score(
    model: nn.Module,
    targets: Sequence[str],
    batches: Iterable[Any] | None,
    loss_fn: Any,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Independent U(0, 1) scores (float64, target shapes), drawn in sorted-name order.

    The draws are made on the generator's device (the CPU for :func:`~punmri.pruning.find_mask`)
    and then moved to each weight's device, so a model on a GPU gets the same scores, and the same
    mask, as on the CPU. ``batches`` and ``loss_fn`` are ignored. Top-k of these is a uniformly
    random mask.
    """
    out = {}
    for name in sorted(targets):
        weight = stored_weight(model, name)
        draw = torch.rand(
            weight.shape, generator=generator, dtype=torch.float64, device=generator.device
        )
        out[name] = draw.to(weight.device)
    return out
