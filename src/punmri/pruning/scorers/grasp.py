"""GraSP gradient-signal preservation (Wang et al. 2020, "Picking winning tickets before training
by preserving gradient flow")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from punmri.pruning.model_calls import (
    LossFn,
    batch_loss,
    frozen,
    leaf_weights,
    summed_gradients,
    take_batches,
)


def score(
    model: nn.Module,
    targets: Sequence[str],
    batches: Iterable[Any],
    loss_fn: LossFn,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """``w ⊙ (H g)``: higher = keep.

    Sign convention: Wang et al. (Eq. 8) define ``S(-w) = -w ⊙ H g`` and *remove* the weights with
    the largest ``S(-w)`` (those whose removal least reduces gradient flow). We return its
    negation ``w ⊙ H g`` so that, as for every scorer here, the largest scores are kept; the
    resulting mask is the paper's. ``g = dL/dw`` with ``L`` the sum of the batch losses (first
    pass, no graph); ``H g = d(g_b(w) · stopgrad(g))/dw`` summed over batches (second pass,
    double backprop). Wang et al.'s softmax temperature is for classification logits and is not
    used here. ``generator`` is unused; the model's state is left unchanged.
    """
    batches = take_batches(batches)
    with frozen(model):
        leaves = leaf_weights(model, targets)
        params = [leaves[t] for t in targets]
        summed = summed_gradients(model, leaves, batches, loss_fn)
        g = [summed[t] for t in targets]
        hg = [torch.zeros_like(w) for w in params]
        for batch in batches:
            loss = batch_loss(model, leaves, batch, loss_fn)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            z = sum(
                ((gi * fixed).sum() for gi, fixed in zip(grads, g, strict=True)), torch.zeros(())
            )
            if not z.requires_grad:  # gradient does not depend on the weights: H g = 0
                continue
            parts = torch.autograd.grad(z, params, allow_unused=True)
            for acc, part in zip(hg, parts, strict=True):
                if part is not None:
                    acc += part
        return {t: (w.detach() * h).detach() for t, w, h in zip(targets, params, hg, strict=True)}
