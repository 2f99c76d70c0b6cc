"""State dicts of masked models with plain parameter names (for checkpoints).

A masked model's own ``state_dict()`` has ``<m>.parametrizations.weight.original`` and
``<m>.parametrizations.weight.0.mask`` keys that an unpruned model cannot load. These helpers store
the weights under their plain names (``<m>.weight``, pruned entries exactly 0) and the masks apart.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning.apply import apply, current_masks, mask_of, masked_tensors, remove
from punmri.pruning.masks import Masks
from punmri.pruning.targets import stored_weight


def masked_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], Masks]:
    """Plain state dict of a masked ``model`` and its masks.

    Returns:
        ``(state, masks)``: ``state`` has the keys an unmasked copy of the model would have, with
        masked weights ``original * mask`` (detached copies); ``masks`` as applied to ``model``.
    """
    masks = current_masks(model)
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        found = _parametrized_key(model, key)
        if found is None:
            state[key] = value.detach().clone()
            continue
        plain, part, mask = found
        if part == "original":
            state[plain] = value.detach().masked_fill(~mask.to(value.device), 0)
        # other keys under the parametrization are the mask buffers: dropped
    return state, masks


def _parametrized_key(model: nn.Module, key: str) -> tuple[str, str, torch.Tensor] | None:
    """For a key inside a masked tensor's parametrization: (plain name, key tail, mask)."""
    head, sep, tail = key.partition("parametrizations.")
    if not sep or (head and not head.endswith(".")):
        return None
    attr, _, part = tail.partition(".")
    try:
        module = model.get_submodule(head[:-1]) if head else model
    except AttributeError:
        return None
    p = mask_of(module, attr)
    if p is None:
        return None
    return f"{head}{attr}", part, p.mask


def load_masked_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], masks: Masks, reparametrize: bool = True
) -> nn.Module:
    """Load a plain ``state`` (from :func:`masked_state_dict`) into ``model`` and mask it.

    Works for an unpruned model and for a freshly masked one (its masks are replaced by ``masks``).
    Loading is strict: missing or unexpected keys raise :class:`InputError`.

    Args:
        model: the model to fill, in place.
        state: plain state dict.
        masks: the masks saved with ``state``.
        reparametrize: when True (default) the model ends up masked with ``masks``; when False it is
            left a plain model holding the (already zeroed) weights.

    Returns:
        ``model``.
    """
    if not isinstance(masks, Masks):
        raise InputError("masks must be a punmri.pruning.Masks")
    masks.check_fits(model)
    if masked_tensors(model):
        remove(model)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise InputError(f"state does not load into the model: {exc}") from exc
    if reparametrize:
        apply(model, masks)
    else:
        with torch.no_grad():
            for name, mask in masks.items():
                weight = stored_weight(model, name)
                weight.masked_fill_(~mask.to(weight.device), 0)
    return model
