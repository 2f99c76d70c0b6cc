"""One entry point for every mask-finding method: score -> select, with cost accounting."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning.allocation import (
    ALLOCATIONS,
    Allocation,
    check_density,
    kept_count,
    layer_counts,
)
from punmri.pruning.cost import count_passes
from punmri.pruning.masks import Masks
from punmri.pruning.model_calls import take_batches
from punmri.pruning.pun import PunSearchConfig, pun_search
from punmri.pruning.scorers import SCORERS
from punmri.pruning.selection import select_by_counts, select_top_k, select_top_k_channel_min
from punmri.pruning.targets import (
    output_channel_dim,
    prunable_targets,
    signature,
    stored_weight,
    target_filter,
    validate_targets,
)

METHODS: tuple[str, ...] = ("random", "magnitude", "snip", "grasp", "synflow", "pun")
#: methods that need ``data`` and ``loss_fn``
DATA_METHODS: frozenset[str] = frozenset({"snip", "grasp", "pun"})
#: extra keyword options each method accepts
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "random": ("channel_min",),
    "magnitude": ("channel_min",),
    "snip": ("num_batches", "channel_min"),
    "grasp": ("num_batches", "channel_min"),
    "synflow": ("iterations", "input_shape", "input_factory"),
    "pun": ("config", "dense_layers", "channel_min", *PunSearchConfig.field_names()),
}


def _check_opts(method: str, opts: dict[str, Any]) -> None:
    unknown = sorted(set(opts) - set(METHOD_OPTIONS[method]))
    if unknown:
        valid = list(METHOD_OPTIONS[method]) or "none"
        raise InputError(f"unknown options {unknown} for method {method!r}; valid: {valid}")


def _pun_config(opts: dict[str, Any]) -> PunSearchConfig:
    base = opts.pop("config", None)
    if base is None:
        base = PunSearchConfig()
    if not isinstance(base, PunSearchConfig):
        raise InputError("option config must be a PunSearchConfig")
    return dataclasses.replace(base, **opts) if opts else base


def find_mask(
    model: nn.Module,
    method: str,
    density: float,
    data: Iterable[Any] | None = None,
    loss_fn: Any = None,
    *,
    targets: Sequence[str] | None = None,
    allocation: Allocation = "global",
    generator: torch.Generator | None = None,
    **opts: Any,
) -> Masks:
    """Find a mask keeping exactly ``round(density * total)`` entries of the prunable weights.

    Args:
        model: the network; never modified (weights, buffers, flags and grads are as before).
        method: one of :data:`METHODS`.
        density: kept fraction in (0, 1].
        data: iterable of ``(inputs, target)`` batches; required for snip, grasp and pun; synflow
            uses only the shape of the first batch's inputs.
        loss_fn: ``loss_fn(output, target) -> scalar``; required for snip, grasp and pun.
        targets: weight names (default :func:`prunable_targets` of ``model``).
        allocation: ``"global"`` (one ranking over all layers), ``"uniform"`` or ``"erk"`` (exact
            per-layer counts from :func:`layer_counts`, ranking within each layer).
        generator: all randomness, a CPU generator (default: one seeded with 0). The model may
            live on any device: scores are computed where its weights are and ranked there, random
            draws are made on the CPU and moved, and the returned masks are on the CPU.
        **opts: per-method options, see :data:`METHOD_OPTIONS`: ``num_batches`` (snip/grasp: use
            only the first N batches), ``iterations``/``input_shape``/``input_factory`` (synflow),
            ``config`` and/or any :class:`PunSearchConfig` field and ``dense_layers`` (target names
            kept whole, counted in the density; pun with the global allocation), and
            ``channel_min`` (random, magnitude, snip, grasp, pun; global allocation only): the
            best-scored ``channel_min`` entries of every output channel of every target are kept,
            counted in the density, the global ranking shares the rest (a bare global ranking can
            prune a small layer, e.g. a denoiser's output layer, away entirely).

    Returns:
        :class:`Masks` whose metadata has ``method``, ``density``, ``allocation``, ``seed``,
        ``signature``, ``targets``, ``layer_counts``, ``cost`` (``seconds``, ``forward_passes``,
        ``backward_passes``) and method diagnostics (``pun``: last log entry and config).
        For pun, ``metadata["pun"]`` is the last log entry and ``metadata["pun_history"]`` the
        whole logged trace (loss, KL, expected density, Hamming distance per logged step).
    """
    if method not in METHODS:
        raise InputError(f"unknown pruning method {method!r}; valid: {list(METHODS)}")
    if not isinstance(model, nn.Module):
        raise InputError("model must be a torch.nn.Module")
    density = check_density(density)
    if allocation not in ALLOCATIONS:
        raise InputError(f"allocation must be one of {list(ALLOCATIONS)}, got {allocation!r}")
    _check_opts(method, opts)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise InputError("generator must be a torch.Generator")
    if generator.device.type != "cpu":
        raise InputError(
            f"generator must be a CPU torch.Generator (got one on {generator.device}): random "
            "draws are made on the CPU and moved, so that a mask does not depend on the device"
        )
    if method in DATA_METHODS and data is None:
        raise InputError(f"method {method!r} needs data: an iterable of (inputs, target) batches")
    if method in DATA_METHODS and loss_fn is None:
        raise InputError(f"method {method!r} needs loss_fn(output, target)")
    if targets is None:
        names, filt = prunable_targets(model), target_filter()
        if not names:
            raise InputError("the model has no prunable weights (Conv/ConvTranspose/Linear)")
    else:
        names, filt = validate_targets(model, targets), {"names": sorted(targets)}
    shapes = {t: list(stored_weight(model, t).shape) for t in names}
    numels = {t: stored_weight(model, t).numel() for t in names}
    total = sum(numels.values())
    k = kept_count(total, density)
    if k == 0:
        raise InputError(f"density {density} keeps 0 of {total} weights; use a larger density")
    counts = layer_counts(numels, density, allocation, shapes)
    if opts.get("channel_min") and counts is not None:
        raise InputError(
            f"channel_min keeps entries of every output channel within one global ranking; it "
            f"does not apply to allocation {allocation!r} (exact per-layer counts already keep "
            "every layer): use allocation 'global' or drop channel_min"
        )

    diagnostics: dict[str, Any] = {}
    with count_passes(model) as cost:
        if method == "pun":
            extra = dict(opts)
            dense = extra.pop("dense_layers", ())
            channel_min = extra.pop("channel_min", 0)
            dims = {t: output_channel_dim(model, t) for t in names} if channel_min else None
            config = _pun_config(extra)
            masks, history = pun_search(
                model,
                names,
                data,
                loss_fn,
                density,
                config,
                generator,
                counts,
                dense,
                channel_min,
                dims,
            )
            diagnostics = {**masks.metadata, "pun_history": history}
        else:
            extra = dict(opts)
            channel_min = extra.pop("channel_min", 0)
            batches = data
            if method in ("snip", "grasp"):
                batches = take_batches(data, extra.pop("num_batches", None))
            if method == "synflow":
                extra.update(density=density, counts=counts)
            scores = SCORERS[method](model, names, batches, loss_fn, generator, **extra)
            if counts is not None:
                masks = select_by_counts(scores, counts)
            elif channel_min:
                dims = {t: output_channel_dim(model, t) for t in names}
                masks = select_top_k_channel_min(scores, k, channel_min, dims)
            else:
                masks = select_top_k(scores, k)
    metadata = {
        "method": method,
        "density": density,
        "allocation": allocation,
        "seed": generator.initial_seed(),
        "signature": signature(model, names),
        "targets": filt,
        "layer_counts": {n: int(m.sum()) for n, m in masks.items()},
        "options": {k_: _jsonable(v) for k_, v in opts.items()},
        "cost": cost.as_dict(),
        **diagnostics,
    }
    return Masks(masks, metadata)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)
