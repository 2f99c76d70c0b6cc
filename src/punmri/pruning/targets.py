"""Which tensors of a model are pruned, and how to reach them by name.

Everything in :mod:`punmri.pruning` is keyed by the fully qualified name of a weight, e.g.
``"denoiser.body.0.weight"``, never by ``id()`` or iteration order. A module that is reused (MoDL
applies one denoiser K times) or registered under two attribute names appears once, under its
first name in ``model.named_modules()``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from punmri.errors import InputError
from punmri.models.denoisers import WEIGHTED_LAYERS, ComplexDenoiser

#: Module types whose ``weight`` is prunable by default. Biases, norms and scalar parameters (MoDL's
#: ``lam``) are never selected by default.
DEFAULT_TYPES: tuple[type[nn.Module], ...] = WEIGHTED_LAYERS


def type_name(cls: type) -> str:
    """``"module.QualName"`` of a class, as stored in mask metadata."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_of_type(module: nn.Module, type_names: Sequence[str]) -> bool:
    return any(type_name(cls) in type_names for cls in type(module).__mro__)


def prunable_targets(
    model: nn.Module,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
) -> list[str]:
    """Fully qualified names of the prunable weights of ``model``.

    Args:
        model: any module; it may carry parametrizations (masks); names stay ``<module>.weight``.
        include: fnmatch patterns; when non-empty, only names matching at least one are kept.
        exclude: fnmatch patterns; names matching any are dropped (applied after ``include``).
        types: module classes whose ``weight`` is a candidate (subclasses count).

    Returns:
        Names in ``model.named_modules()`` order; a shared module or tied weight appears once.
    """
    if isinstance(include, str) or isinstance(exclude, str):
        raise InputError("include/exclude must be sequences of fnmatch patterns, not one string")
    if isinstance(types, type):
        types = (types,)
    names = [type_name(t) for t in types]
    return _select(model, include, exclude, names)


def targets_from_type_names(
    model: nn.Module, include: Sequence[str], exclude: Sequence[str], type_names: Sequence[str]
) -> list[str]:
    """Like :func:`prunable_targets` with the module types given by :func:`type_name` strings."""
    return _select(model, include, exclude, list(type_names))


def _select(
    model: nn.Module, include: Sequence[str], exclude: Sequence[str], type_names: list[str]
) -> list[str]:
    seen: set[int] = set()  # tensor identity only to detect ties; results are keyed by name
    out: list[str] = []
    for mod_name, module in model.named_modules():
        if not _is_of_type(module, type_names):
            continue
        weight = raw_tensor(module, "weight")
        if weight is None:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        if id(weight) in seen:
            continue
        seen.add(id(weight))
        out.append(name)
    return out


def split_name(name: str) -> tuple[str, str]:
    """``"a.b.weight"`` -> ``("a.b", "weight")``; a top-level tensor has module path ``""``."""
    prefix, _, attr = name.rpartition(".")
    return prefix, attr


def owner(model: nn.Module, name: str) -> tuple[nn.Module, str] | None:
    """The module holding tensor ``name`` and the attribute name, or None when absent."""
    prefix, attr = split_name(name)
    try:
        module = model.get_submodule(prefix)
    except AttributeError:
        return None
    if raw_tensor(module, attr) is None:
        return None
    return module, attr


def raw_tensor(module: nn.Module, attr: str) -> torch.Tensor | None:
    """The stored tensor behind ``module.<attr>`` (a parametrization's original if it has one)."""
    if parametrize.is_parametrized(module, attr):
        plist = module.parametrizations[attr]
        original = getattr(plist, "original", None)
        return original if isinstance(original, torch.Tensor) else None
    value = module._parameters.get(attr, None)
    if value is None:
        value = module._buffers.get(attr, None)
    return value if isinstance(value, torch.Tensor) else None


def require_owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """:func:`owner`, raising :class:`InputError` when ``name`` is not a tensor of ``model``."""
    found = owner(model, name)
    if found is None:
        raise InputError(f"target {name!r} is not a parameter or buffer of the model")
    return found


def effective_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The weight as the forward pass sees it (after any parametrization such as a mask)."""
    module, attr = require_owner(model, name)
    return getattr(module, attr)


def stored_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The stored (raw) tensor behind ``name``: the parameter, or a parametrization's original."""
    module, attr = require_owner(model, name)
    tensor = raw_tensor(module, attr)
    if tensor is None:  # pragma: no cover - require_owner guarantees it
        raise InputError(f"target {name!r} has no stored tensor")
    return tensor


def functional_name(model: nn.Module, name: str) -> str:
    """Key under which :func:`torch.func.functional_call` replaces the stored tensor of ``name``.

    For a parametrized weight this is ``<module>.parametrizations.<attr>.original``: the value
    passed goes through the parametrization (e.g. a mask) exactly like the stored tensor would.
    """
    module, attr = require_owner(model, name)
    if parametrize.is_parametrized(module, attr):
        prefix, _ = split_name(name)
        head = f"{prefix}." if prefix else ""
        return f"{head}parametrizations.{attr}.original"
    return name


def validate_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """Check that ``targets`` are distinct tensor names of ``model``; returns them as a list."""
    if isinstance(targets, str):
        raise InputError("targets must be a sequence of parameter names, not one string")
    targets = list(targets)
    if not targets:
        raise InputError("targets is empty: there is nothing to prune")
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise InputError(f"targets lists these names more than once: {dupes}")
    missing = [t for t in targets if owner(model, t) is None]
    if missing:
        raise InputError(f"targets not found in the model: {missing}")
    return targets


def signature(model: nn.Module, targets: Sequence[str]) -> list[list]:
    """Sorted ``[[name, [shape...]], ...]`` of the targets: the model a mask was made for."""
    return [[t, list(stored_weight(model, t).shape)] for t in sorted(targets)]


def output_channel_dim(model: nn.Module, name: str) -> int:
    """The output-channel dimension of weight ``name``: 1 for ``ConvTranspose`` layers (weight
    ``(in, out, ...)``), else 0 (``Conv`` ``(out, in, ...)``, ``Linear`` ``(out, in)``)."""
    module, _ = require_owner(model, name)
    return 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0


def boundary_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """The first and the last of ``targets`` in each denoiser of ``model``, in model order.

    A denoiser is a :class:`~punmri.models.denoisers.ComplexDenoiser` (MoDL's shared denoiser
    appears once; unshared ones each give their own pair). Within one, "first" and "last" follow
    registration order, which for every punmri denoiser is the input convolution (2 image
    channels in) and the output convolution (2 out, :meth:`ComplexDenoiser.output_layer`). A
    model without denoisers gives the first and last of ``targets`` overall.
    """
    targets = validate_targets(model, targets)
    modules = [n for n, _ in model.named_modules()]
    position = {f"{n}.weight" if n else "weight": i for i, n in enumerate(modules)}
    ordered = sorted(targets, key=lambda t: (position.get(t, len(position)), t))
    groups = [
        [t for t in ordered if t.startswith(f"{prefix}.")]
        for prefix, module in model.named_modules()
        if isinstance(module, ComplexDenoiser) and prefix
    ]
    groups = [g for g in groups if g] or [ordered]
    return list(dict.fromkeys(t for g in groups for t in (g[0], g[-1])))


def target_filter(
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
) -> dict[str, list[str]]:
    """JSON-friendly description of a :func:`prunable_targets` call, stored in mask metadata so that
    :meth:`Masks.check_fits` can tell which weights of a model a mask should cover."""
    names = [type_name(t) for t in types]
    return {"include": list(include), "exclude": list(exclude), "types": names}
