"""Turn scores into masks: keep exactly k entries, globally or with fixed per-layer counts.

Higher score = keep. Ties are broken deterministically: entries are laid out in one flat vector
in sorted-name order (row-major within a tensor) and ranked by (score descending, flat index
ascending).
Entries already pruned in ``current`` never compete, so iterative pruning cannot revive a weight.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from punmri.errors import InputError
from punmri.pruning.masks import Masks


def _check_scores(scores: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor] | None):
    if not isinstance(scores, Mapping) or not scores:
        raise InputError("scores must be a non-empty dict of parameter name -> tensor")
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor) or s.is_complex():
            raise InputError(f"score of {name!r} must be a real tensor")
        if torch.isnan(s).any():
            raise InputError(f"score of {name!r} contains NaN")
    if current is not None:
        if set(current) != set(scores):
            raise InputError(
                "current masks and scores must name the same tensors; "
                f"only in scores {sorted(set(scores) - set(current))}, "
                f"only in current {sorted(set(current) - set(scores))}"
            )
        for name, m in current.items():
            if tuple(m.shape) != tuple(scores[name].shape):
                raise InputError(
                    f"current mask of {name!r} has shape {tuple(m.shape)}, "
                    f"score has {tuple(scores[name].shape)}"
                )


def _rank_keep(flat: torch.Tensor, alive: torch.Tensor, k: int, what: str) -> torch.Tensor:
    """Bool vector keeping the k best alive entries of ``flat`` (ties: lower index first)."""
    n_alive = int(alive.sum())
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InputError(f"k must be a non-negative int, got {k!r}")
    if k > n_alive:
        raise InputError(f"cannot keep k={k} entries of {what}: only {n_alive} survive")
    idx = torch.nonzero(alive).flatten()
    order = torch.sort(flat[idx], descending=True, stable=True).indices
    keep = torch.zeros_like(alive)
    keep[idx[order[:k]]] = True
    return keep


def _ranked(score: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``score`` as a flat float64 vector on ``device``, with -0.0 made +0.0 (a CPU sort takes
    them as equal, a GPU radix sort may not: this keeps the kept set the same on every device)."""
    return score.detach().to(device, torch.float64).flatten() + 0.0


def _flatten(scores, current):
    names = sorted(scores)
    device = scores[names[0]].device  # rank where the scores live (a GPU sorts millions fast)
    flat = torch.cat([_ranked(scores[n], device) for n in names])
    if current is None:
        alive = torch.ones(flat.numel(), dtype=torch.bool, device=device)
    else:
        alive = torch.cat([current[n].to(device, torch.bool).flatten() for n in names])
    return names, flat, alive


def _unflatten(names, scores, keep) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for n in names:
        numel = scores[n].numel()
        out[n] = keep[start : start + numel].view(scores[n].shape).clone()
        start += numel
    return out


def select_top_k(
    scores: Mapping[str, torch.Tensor], k: int, current: Mapping[str, torch.Tensor] | None = None
) -> Masks:
    """Keep exactly ``k`` entries over all tensors: the highest scores among survivors.

    Args:
        scores: ``{name: real tensor}``; higher = keep; ``-inf`` allowed, NaN rejected.
        k: number of entries to keep overall.
        current: optional masks of the same names/shapes; only its True entries may be kept.

    Returns:
        :class:`Masks` with ``k`` True entries (empty metadata).

    Raises:
        InputError: on NaN scores, mismatched ``current`` or ``k`` above the surviving count.
    """
    _check_scores(scores, current)
    names, flat, alive = _flatten(scores, current)
    keep = _rank_keep(flat, alive, k, "all tensors")
    return Masks(_unflatten(names, scores, keep))


def select_by_counts(
    scores: Mapping[str, torch.Tensor],
    counts: Mapping[str, int],
    current: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Keep exactly ``counts[name]`` entries in each tensor, ranked within that tensor.

    Same tie-breaking and no-revival rule as :func:`select_top_k`.
    """
    _check_scores(scores, current)
    if set(counts) != set(scores):
        raise InputError("counts and scores must name the same tensors")
    out = {}
    for name in sorted(scores):
        s = _ranked(scores[name], scores[name].device)
        alive = (
            torch.ones(s.numel(), dtype=torch.bool, device=s.device)
            if current is None
            else current[name].to(s.device, torch.bool).flatten()
        )
        out[name] = _rank_keep(s, alive, counts[name], repr(name)).view(scores[name].shape)
    return Masks(out)


def channel_floor(
    scores: Mapping[str, torch.Tensor], per_channel: int, channel_dims: Mapping[str, int]
) -> Masks:
    """The ``per_channel`` best entries of every output channel of every tensor.

    Args:
        scores: ``{name: real tensor}``; higher = keep.
        per_channel: entries kept in each output channel (capped at the channel's size).
        channel_dims: ``{name: dim}``, the output-channel dimension of each tensor (0 for
            ``Conv``/``Linear`` weights, 1 for ``ConvTranspose`` weights).

    Returns:
        :class:`Masks` with ``min(per_channel, entries per channel)`` True entries per channel,
        ties broken by the lower index within the channel (row-major).
    """
    _check_scores(scores, None)
    if isinstance(per_channel, bool) or not isinstance(per_channel, int) or per_channel < 0:
        raise InputError(f"per_channel must be a non-negative int, got {per_channel!r}")
    out = {}
    for name in sorted(scores):
        s = scores[name]
        dim = channel_dims[name]
        rows = _ranked(s.movedim(dim, 0), s.device).view(s.shape[dim], -1)
        order = torch.sort(rows, dim=1, descending=True, stable=True).indices
        keep = torch.zeros_like(rows, dtype=torch.bool)
        keep.scatter_(1, order[:, : min(per_channel, rows.shape[1])], True)
        shape = s.movedim(dim, 0).shape
        out[name] = keep.view(shape).movedim(0, dim).contiguous()
    return Masks(out)


def select_top_k_with_floor(
    scores: Mapping[str, torch.Tensor],
    k: int,
    floor: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Keep every entry of ``floor`` and the best ``k - |floor|`` other entries (one global ranking
    over all tensors, among the survivors of ``current`` when given), so exactly ``k`` in all.

    Raises:
        InputError: when the floor alone holds more than ``k`` entries.
    """
    floor_count = sum(int(m.sum()) for m in floor.values())
    if floor_count > k:
        raise InputError(
            f"the entries that must be kept ({floor_count}) exceed the {k} a mask may keep; "
            "use a larger density or a smaller floor"
        )
    alive = {n: ~m.to(torch.bool) for n, m in floor.items()}
    if current is not None:
        alive = {n: a & current[n].to(a.device, torch.bool) for n, a in alive.items()}
    rest = select_top_k(scores, k - floor_count, current=alive)
    return Masks({n: rest[n] | floor[n].to(rest[n].device, torch.bool) for n in rest})


def select_top_k_channel_min(
    scores: Mapping[str, torch.Tensor],
    k: int,
    per_channel: int,
    channel_dims: Mapping[str, int],
    current: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """One global ranking keeping exactly ``k`` entries, among them the ``per_channel`` best
    (surviving) entries of every output channel of every tensor (:func:`channel_floor`), so that
    no layer is pruned away; with ``current``, only its survivors are kept (no revival)."""
    if current is None:
        return select_top_k_with_floor(scores, k, channel_floor(scores, per_channel, channel_dims))
    alive = {n: current[n].to(s.device, torch.bool) for n, s in scores.items()}
    live = {n: s.masked_fill(~alive[n], float("-inf")) for n, s in scores.items()}
    floor = channel_floor(live, per_channel, channel_dims)
    floor = Masks({n: floor[n] & alive[n].to(floor[n].device) for n in floor})
    return select_top_k_with_floor(scores, k, floor, current)
