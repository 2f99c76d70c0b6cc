"""Iterative magnitude pruning (Frankle & Carbin 2019): one pruning step and the schedule."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from punmri.errors import InputError
from punmri.pruning.allocation import Allocation, check_density, kept_count, layer_counts
from punmri.pruning.masks import Masks
from punmri.pruning.scorers import magnitude
from punmri.pruning.selection import select_by_counts, select_top_k, select_top_k_channel_min
from punmri.pruning.targets import (
    output_channel_dim,
    prunable_targets,
    signature,
    target_filter,
    validate_targets,
)


def imp_density_schedule(final_density: float, rounds: int) -> list[float]:
    """Densities after each of ``rounds`` rounds: ``final ** (r / rounds)``, r = 1..rounds.

    Every round removes the same fraction of the surviving weights; the last entry is exactly
    ``final_density``.
    """
    final_density = check_density(final_density)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"rounds must be a positive int, got {rounds!r}")
    out = [final_density ** (r / rounds) for r in range(1, rounds)]
    return out + [final_density]


def magnitude_prune_step(
    model: nn.Module,
    current: Masks | None,
    density: float,
    targets: Sequence[str] | None = None,
    channel_min: int = 0,
    allocation: Allocation = "global",
) -> Masks:
    """Keep the ``round(density * total)`` largest ``|w|`` among the survivors of ``current``.

    Args:
        model: trained network (masked or not); read only.
        current: masks of the previous round (None for the first); never revived.
        density: kept fraction of *all* target entries after this step (not of the survivors).
        targets: weight names when ``current`` is None (default :func:`prunable_targets`).
        channel_min: keep at least this many surviving entries (the largest) in every output
            channel of every target, counted in the density; 0 = one plain global ranking,
            which can prune a small layer (a denoiser's output layer) away entirely.
        allocation: ``"global"`` (one ranking over all targets, with ``channel_min``), or
            per-target counts ranked within each target (``"uniform"``: every target keeps
            ``density`` of its entries; ``"erk"``), from
            :func:`~punmri.pruning.allocation.layer_counts` with an exact total.

    Raises:
        InputError: when ``density`` keeps more entries than ``current`` has.
    """
    density = check_density(density)
    if current is not None:
        current.check_fits(model)
        names = list(current)
    else:
        names = validate_targets(model, prunable_targets(model) if targets is None else targets)
    scores = magnitude.score(model, names, None, None, None)
    k = kept_count(sum(s.numel() for s in scores.values()), density)
    if current is not None and k > current.kept:
        raise InputError(
            f"density {density} keeps {k} entries but the current mask has only {current.kept}; "
            "iterative pruning cannot revive weights"
        )
    if allocation != "global":
        shapes = {n: tuple(sc.shape) for n, sc in scores.items()}
        numels = {n: sc.numel() for n, sc in scores.items()}
        masks = select_by_counts(scores, layer_counts(numels, density, allocation, shapes), current)
    elif channel_min:
        dims = {n: output_channel_dim(model, n) for n in names}
        masks = select_top_k_channel_min(scores, k, channel_min, dims, current)
    else:
        masks = select_top_k(scores, k, current)
    masks.metadata.update(
        {"method": "imp", "density": density, "signature": signature(model, names)}
    )
    if current is not None and "targets" in current.metadata:
        masks.metadata["targets"] = current.metadata["targets"]
    elif current is None and targets is None:
        masks.metadata["targets"] = target_filter()
    return masks
