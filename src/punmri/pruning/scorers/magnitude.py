"""Magnitude scores |w| (one-shot magnitude pruning; iterated by IMP)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from punmri.pruning.targets import effective_weight


def score(
    model: nn.Module,
    targets: Sequence[str],
    batches: Iterable[Any] | None,
    loss_fn: Any,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """``|w|`` of the effective weight (after any applied mask), same shape as each target.

    ``batches``, ``loss_fn`` and ``generator`` are ignored.
    """
    with torch.no_grad():
        return {t: effective_weight(model, t).detach().abs().clone() for t in targets}
