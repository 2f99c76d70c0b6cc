"""Apply masks to a model as a re-parametrization, and keep pruned entries at exactly zero.

After :func:`apply`, ``module.weight`` is computed as ``original * mask`` on every access (use
``torch.nn.utils.parametrize.cached()`` around a forward that reads a shared weight K times to
compute it once), so gradients of pruned entries of ``original`` are zero. Momentum and (coupled or
decoupled) weight decay could still move a raw entry that was non-zero or had optimizer state
before pruning; :func:`register_optimizer_hook` re-zeroes pruned raw entries after every
optimizer step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from punmri.errors import InputError
from punmri.pruning.masks import Masks
from punmri.pruning.targets import require_owner, stored_weight


class MaskParametrization(nn.Module):
    """Parametrization ``weight -> weight * mask`` with the bool mask held as a buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight * mask``; same shape and dtype as ``weight``."""
        return weight * self.mask


def mask_of(module: nn.Module, attr: str) -> MaskParametrization | None:
    """The :class:`MaskParametrization` on ``module.<attr>``, or None."""
    if not parametrize.is_parametrized(module, attr):
        return None
    for p in module.parametrizations[attr]:
        if isinstance(p, MaskParametrization):
            return p
    return None


def _check_untied(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Refuse a target whose tensor is also a parameter of another module (tied weights)."""
    holders: dict[int, set[int]] = {}
    for mod in model.modules():
        for p in mod._parameters.values():
            if p is not None:
                holders.setdefault(id(p), set()).add(id(mod))
    for name in masks:
        module, attr = require_owner(model, name)
        p = module._parameters.get(attr)
        if p is not None and len(holders.get(id(p), ())) > 1:
            raise InputError(
                f"weight {name!r} is tied to another module's parameter; masking supports a shared "
                "module (one module called several times) but not a tensor shared by two modules"
            )


def apply(model: nn.Module, masks: Masks) -> nn.Module:
    """Mask ``model`` in place and return it.

    Registers :class:`MaskParametrization` on every masked tensor (or replaces the mask of one
    already there) and zeroes the raw tensor wherever the mask is False.

    Raises:
        InputError: when ``masks`` do not fit ``model`` (see :meth:`Masks.check_fits`) or a target
            is a tensor tied between two modules.
    """
    if not isinstance(masks, Masks):
        raise InputError("masks must be a punmri.pruning.Masks")
    masks.check_fits(model)
    _check_untied(model, masks)
    for name, mask in masks.items():
        module, attr = require_owner(model, name)
        existing = mask_of(module, attr)
        if existing is not None:
            existing.mask.copy_(mask.to(existing.mask.device))
        else:
            device = getattr(module, attr).device
            parametrize.register_parametrization(module, attr, MaskParametrization(mask.to(device)))
    zero_pruned_(model)
    return model


@torch.no_grad()
def rescale_kept_(model: nn.Module, masks: Masks) -> nn.Module:
    """Multiply every target's stored weight by ``1 / sqrt(kept fraction of that target)``, so
    that a masked layer passes on about the signal variance of the dense one (the scaling of
    Lee et al. 2020, "A signal propagation perspective for pruning neural networks at
    initialization"); targets keeping nothing are left alone. Call before :func:`apply`; returns
    ``model``.

    Raises:
        InputError: when ``masks`` do not fit ``model``.
    """
    masks.check_fits(model)
    for name, mask in masks.items():
        kept = float(mask.float().mean())
        if kept > 0:
            stored_weight(model, name).mul_(kept**-0.5)
    return model


def masked_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str, MaskParametrization]]:
    """``(name, module, attr, parametrization)`` for every masked tensor of ``model``."""
    out = []
    for mod_name, module in model.named_modules():
        plists = getattr(module, "parametrizations", None)
        if plists is None:
            continue
        for attr in list(plists.keys()):
            p = mask_of(module, attr)
            if p is not None:
                out.append((f"{mod_name}.{attr}" if mod_name else attr, module, attr, p))
    return out


@torch.no_grad()
def zero_pruned_(model: nn.Module) -> nn.Module:
    """Set the raw (stored) tensor to exactly 0 wherever its mask is False; returns ``model``."""
    for _, module, attr, p in masked_tensors(model):
        original = module.parametrizations[attr].original
        original.masked_fill_(~p.mask, 0)
    return model


def register_optimizer_hook(optimizer: torch.optim.Optimizer, model: nn.Module) -> RemovableHandle:
    """Re-zero pruned raw entries of ``model`` after every ``optimizer.step()``.

    Returns the handle; call ``handle.remove()`` to detach it.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError("optimizer must be a torch.optim.Optimizer")

    def hook(_opt, _args, _kwargs) -> None:
        zero_pruned_(model)

    return optimizer.register_step_post_hook(hook)


def current_masks(model: nn.Module) -> Masks:
    """The masks currently applied to ``model`` (without removing them)."""
    found = {name: p.mask.detach().clone() for name, _, _, p in masked_tensors(model)}
    if not found:
        raise InputError("the model carries no masks (apply() was not called on it)")
    return Masks(found, {"method": "from_model"})


def remove(model: nn.Module) -> Masks:
    """Remove every mask parametrization, leaving plain weights equal to ``original * mask``.

    The parameter objects are kept (an optimizer holding them stays valid).

    Returns:
        The masks that were applied.
    """
    masks = current_masks(model)
    for name, module, attr, _ in masked_tensors(model):
        if len(module.parametrizations[attr]) != 1:
            raise InputError(
                f"{name!r} carries other parametrizations besides its mask; remove those first"
            )
    for _, module, attr, _ in masked_tensors(model):
        parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return masks
