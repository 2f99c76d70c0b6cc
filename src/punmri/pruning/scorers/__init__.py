"""Pruning scores: one small module per method behind one signature.

Every scorer is ``score(model, targets, batches, loss_fn, generator, **options) -> {name: scores}``
with ``scores`` a real tensor of the target's shape, higher = keep. Scorers never modify the model.
Adding a method is one module plus an entry in :data:`SCORERS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from punmri.pruning.scorers import grasp, magnitude, random, snip, synflow


class Scorer(Protocol):
    """Signature shared by all scorers."""

    def __call__(
        self,
        model: nn.Module,
        targets: Sequence[str],
        batches: Iterable[Any] | None,
        loss_fn: Any,
        generator: torch.Generator | None,
        **options: Any,
    ) -> dict[str, torch.Tensor]: ...


#: name -> scorer. ``snip`` and ``grasp`` need batches and a loss; the others do not.
SCORERS: dict[str, Scorer] = {
    "random": random.score,
    "magnitude": magnitude.score,
    "snip": snip.score,
    "grasp": grasp.score,
    "synflow": synflow.score,
}

__all__ = ["SCORERS", "Scorer"]
