"""How many entries each layer keeps: global, uniform or ERK allocation, exact integer counts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from punmri.errors import InputError

Allocation = Literal["global", "uniform", "erk"]
ALLOCATIONS: tuple[str, ...] = ("global", "uniform", "erk")


def check_density(density: float) -> float:
    """Return ``density`` as float, raising :class:`InputError` unless it lies in (0, 1]."""
    if isinstance(density, bool) or not isinstance(density, (int, float)):
        raise InputError(f"density must be a number in (0, 1], got {density!r}")
    density = float(density)
    if not 0.0 < density <= 1.0 or math.isnan(density):
        raise InputError(f"density must lie in (0, 1], got {density}")
    return density


def kept_count(total: int, density: float) -> int:
    """``round(density * total)`` (Python rounding): the number of entries a mask keeps."""
    return int(round(check_density(density) * total))


def largest_remainder(
    raw: Mapping[str, float], total: int, caps: Mapping[str, int]
) -> dict[str, int]:
    """Integer counts close to the real-valued ``raw`` that sum to exactly ``total``.

    Each name gets ``floor(raw)``; the remaining units go one at a time to the largest fractional
    parts (ties broken by name), never exceeding ``caps``.
    """
    if total > sum(caps.values()):
        raise InputError(f"cannot keep {total} entries out of {sum(caps.values())}")
    counts = {n: min(caps[n], max(0, math.floor(raw[n]))) for n in raw}
    left = total - sum(counts.values())
    while left > 0:
        order = sorted(
            (n for n in raw if counts[n] < caps[n]), key=lambda n: (-(raw[n] - counts[n]), n)
        )
        for n in order[:left]:
            counts[n] += 1
        left = total - sum(counts.values())
    while left < 0:  # only when floors exceed total (cannot happen for consistent raw); be safe
        order = sorted((n for n in raw if counts[n] > 0), key=lambda n: (raw[n] - counts[n], n))
        for n in order[:-left]:
            counts[n] -= 1
        left = total - sum(counts.values())
    return counts


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """Per-layer densities of Erdős–Rényi–Kernel allocation (Evci et al. 2020, "RigL").

    Layer ``l`` gets density ``eps * sum(shape_l) / prod(shape_l)`` (for a conv weight of shape
    ``(n_out, n_in, h, w)`` that is ``eps * (n_out + n_in + h + w) / (n_out n_in h w)``), with
    ``eps`` chosen so that the kept count matches ``density`` overall. Layers whose density would
    exceed 1 are made dense one at a time (largest first) and ``eps`` is recomputed over the rest.
    """
    density = check_density(density)
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    budget = density * sum(numel.values())
    dense: set[str] = set()
    while True:
        rest = [n for n in shapes if n not in dense]
        if not rest:
            return {n: 1.0 for n in shapes}
        eps = (budget - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in rest)
        worst = max(rest, key=lambda n: (raw[n], n))
        if eps * raw[worst] > 1.0:
            dense.add(worst)
            continue
        out = {n: eps * raw[n] for n in rest}
        out.update({n: 1.0 for n in dense})
        return out


def layer_counts(
    numels: Mapping[str, int],
    density: float,
    allocation: Allocation = "global",
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, int] | None:
    """Exact kept count per layer for a per-layer allocation.

    Args:
        numels: number of entries of each target tensor.
        density: overall kept fraction in (0, 1].
        allocation: ``"global"`` (no per-layer counts: one ranking over all layers, returns None),
            ``"uniform"`` (every layer keeps ``density`` of its entries) or ``"erk"`` (see
            :func:`erk_densities`; needs ``shapes``).
        shapes: tensor shapes, required for ``"erk"``.

    Returns:
        ``{name: count}`` summing to exactly ``round(density * sum(numels))`` (largest-remainder
        rounding, each count in ``[0, numel]``), or None for ``"global"``.
    """
    if allocation not in ALLOCATIONS:
        raise InputError(f"allocation must be one of {list(ALLOCATIONS)}, got {allocation!r}")
    if not numels:
        raise InputError("numels is empty: there are no target tensors")
    total = kept_count(sum(numels.values()), density)
    if allocation == "global":
        return None
    if allocation == "uniform":
        raw = {n: density * k for n, k in numels.items()}
    else:
        if shapes is None or set(shapes) != set(numels):
            raise InputError("allocation 'erk' needs shapes for exactly the names in numels")
        for n, s in shapes.items():
            if math.prod(s) != numels[n]:
                raise InputError(f"shape {list(s)} of {n!r} does not match numel {numels[n]}")
        raw = {n: d * numels[n] for n, d in erk_densities(shapes, density).items()}
    return largest_remainder(raw, total, numels)
