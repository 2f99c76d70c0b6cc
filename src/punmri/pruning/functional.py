"""Run a model with substitute target weights (scorers, mask search); the model is untouched."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning.batches import call_model, loss_value, move_to
from punmri.pruning.targets import functional_name, stored_weight

LossFn = Callable[[Any, Any], torch.Tensor]


def leaf_weights(model: nn.Module, targets: Sequence[str]) -> dict[str, torch.Tensor]:
    """Detached copies of the stored target tensors that require grad, keyed by target name."""
    return {t: stored_weight(model, t).detach().clone().requires_grad_(True) for t in targets}


def freeze_parameters(model: nn.Module) -> None:
    """Stop autograd from tracking the model's own parameters (use inside ``preserved_state``)."""
    for p in model.parameters():
        p.requires_grad_(False)


def batch_loss(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
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
