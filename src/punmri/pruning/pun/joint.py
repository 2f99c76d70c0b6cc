"""PUN-WT: learn mask logits jointly with trainable weights, then harden into a mask set.

Usage with any training loop::

    attach_gates(model, density, generator=g)  # a LogitGate on every target; weights trainable
    opt = Adam([{"params": weight_parameters(model)},
                {"params": gate_parameters(model), "lr": 1e-2}])
    register_resample_hook(opt, model, g)  # a fresh concrete sample after every step
    loss = loss_fn(model(x), y) + beta * gate_kl(model, p0)  # per step; set_temperature_ anneals
    masks = harden(model, density)  # plain model again; then apply(model, masks)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle

from punmri.errors import InputError
from punmri.pruning.allocation import Allocation, check_density, kept_count, layer_counts
from punmri.pruning.masks import Masks
from punmri.pruning.pun.gate import (
    GateMode,
    LogitGate,
    default_init_prob,
    initial_logits,
    prior_kl,
    top_logit_masks,
)
from punmri.pruning.targets import prunable_targets, require_owner, signature, validate_targets


def gates(model: nn.Module) -> dict[str, LogitGate]:
    """``{weight name: LogitGate}`` for every gated weight of ``model``, sorted by name."""
    found = {}
    for mod_name, module in model.named_modules():
        plists = getattr(module, "parametrizations", None)
        if plists is None:
            continue
        for attr in plists.keys():
            for p in plists[attr]:
                if isinstance(p, LogitGate):
                    found[f"{mod_name}.{attr}" if mod_name else attr] = p
    return dict(sorted(found.items()))


def attach_gates(
    model: nn.Module,
    density: float,
    targets: Sequence[str] | None = None,
    *,
    generator: torch.Generator,
    init_prob: float | None = None,
    init_noise: float = 1e-3,
    tau: float = 1.0,
) -> dict[str, nn.Parameter]:
    """Register a :class:`LogitGate` on each target weight of ``model``; weights stay trainable.

    Args:
        model: modified in place.
        density: target kept fraction ``p0``; sets the default initial probability.
        targets: weight names (default :func:`prunable_targets`).
        generator: draws the initial-logit noise and the first concrete sample.
        init_prob: initial keep probability (default ``p0``).
        init_noise: std of Gaussian noise on the initial logits.
        tau: initial temperature (change with :func:`set_temperature_`).

    Returns:
        ``{weight name: logits parameter}``.
    """
    density = check_density(density)
    targets = validate_targets(model, prunable_targets(model) if targets is None else targets)
    if gates(model):
        raise InputError("the model already carries logit gates; call harden() first")
    p_init = default_init_prob(density) if init_prob is None else init_prob
    out = {}
    for t in sorted(targets):
        module, attr = require_owner(model, t)
        weight = getattr(module, attr)
        logits = initial_logits(weight.shape, p_init, init_noise, generator)
        gate = LogitGate(logits.to(weight.device, weight.real.dtype), tau=tau)
        gate.resample_(generator)
        parametrize.register_parametrization(module, attr, gate)
        out[t] = gate.logits
    return out


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The logits of every gate (for their own optimizer parameter group)."""
    return [g.logits for g in gates(model).values()]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """All parameters of ``model`` except the gate logits."""
    logit_ids = {id(p) for p in gate_parameters(model)}
    return [p for p in model.parameters() if id(p) not in logit_ids]


def resample_(model: nn.Module, generator: torch.Generator) -> None:
    """Draw a fresh concrete-noise sample in every gate (in sorted-name order)."""
    for g in gates(model).values():
        g.resample_(generator)


def set_temperature_(model: nn.Module, tau: float) -> None:
    """Set the concrete temperature of every gate."""
    if not tau > 0:
        raise InputError(f"temperature tau must be > 0, got {tau}")
    for g in gates(model).values():
        g.tau = float(tau)


def gate_kl(model: nn.Module, p0: float, reduction: str = "mean") -> torch.Tensor:
    """``mean`` (default) or ``sum`` over all gated entries of ``KL(Bern(p) || Bern(p0))``
    (:func:`~punmri.pruning.pun.gate.prior_kl`, the PUN search's prior term)."""
    found = gates(model)
    if not found:
        raise InputError("the model carries no logit gates (call attach_gates first)")
    return prior_kl(found, p0, reduction)


def register_resample_hook(
    optimizer: torch.optim.Optimizer, model: nn.Module, generator: torch.Generator
) -> RemovableHandle:
    """Resample every gate's noise after each ``optimizer.step()``; returns the removable handle."""

    def hook(_opt, _args, _kwargs) -> None:
        resample_(model, generator)

    return optimizer.register_step_post_hook(hook)


def _top_logits(found: dict[str, LogitGate], density: float, allocation: Allocation) -> Masks:
    """The entries with the largest logits: one global ranking, or exact per-layer counts."""
    numels = {t: g.logits.numel() for t, g in found.items()}
    shapes = {t: tuple(g.logits.shape) for t, g in found.items()}
    counts = layer_counts(numels, density, allocation, shapes)
    return top_logit_masks(found, kept_count(sum(numels.values()), density), counts)


def set_gate_mode_(
    model: nn.Module,
    mode: GateMode,
    density: float | None = None,
    allocation: Allocation = "global",
) -> Masks | None:
    """Switch every gate to ``"sample"``, ``"expected"`` or ``"hard"`` (gates stay attached).

    ``"hard"`` needs ``density``: the gates then multiply by the global top ``round(density *
    total)`` mask by logit (the mask :func:`harden` would return), which is also returned, so the
    pruned network can be validated during PUN-WT training. Other modes return None.
    """
    found = gates(model)
    if not found:
        raise InputError("the model carries no logit gates (call attach_gates first)")
    if mode not in ("sample", "expected", "hard"):
        raise InputError(f"mode must be 'sample', 'expected' or 'hard', got {mode!r}")
    masks = None
    if mode == "hard":
        if density is None:
            raise InputError("mode 'hard' needs density")
        masks = _top_logits(found, check_density(density), allocation)
        for t, g in found.items():
            g.hard.copy_(masks[t].to(g.hard.device))
    for g in found.values():
        g.mode = mode
    return masks


def harden(model: nn.Module, density: float, allocation: Allocation = "global") -> Masks:
    """Keep the top ``round(density * total)`` gated entries by logit (one global ranking, or
    per-layer counts with ``allocation="uniform"``/``"erk"``) and remove the gates.

    The model is left with plain weights (the trained values, not yet masked); apply the returned
    masks (:func:`punmri.pruning.apply.apply`) to train or evaluate the pruned network.
    """
    found = gates(model)
    if not found:
        raise InputError("the model carries no logit gates (call attach_gates first)")
    masks = _top_logits(found, check_density(density), allocation)
    owners = [require_owner(model, t) for t in found]
    for t, (module, attr) in zip(found, owners, strict=True):
        if len(module.parametrizations[attr]) != 1:
            raise InputError(f"{t!r} carries other parametrizations besides its gate")
    for module, attr in owners:
        parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
    masks.metadata.update(
        {"method": "pun-wt", "density": float(density), "signature": signature(model, list(found))}
    )
    return masks
