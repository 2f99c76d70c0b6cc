"""SNIP connection sensitivity (Lee et al. 2019, "SNIP: single-shot network pruning")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from punmri.pruning.model_calls import LossFn, frozen, leaf_weights, summed_gradients, take_batches


def score(
    model: nn.Module,
    targets: Sequence[str],
    batches: Iterable[Any],
    loss_fn: LossFn,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """``|w ⊙ dL/dw|`` with ``L`` the sum of the batch losses (gradients summed over batches first).

    ``w`` is the stored weight (pruned entries of an already masked model score 0). The model runs
    in its current train/eval mode; its parameters, buffers and ``.grad`` are left as they were.
    ``generator`` is unused. Lee et al.'s normalisation by the total score does not change the
    ranking and is omitted.
    """
    batches = take_batches(batches)
    with frozen(model):
        leaves = leaf_weights(model, targets)
        grads = summed_gradients(model, leaves, batches, loss_fn)
        return {t: (leaves[t].detach() * grads[t]).abs() for t in targets}
