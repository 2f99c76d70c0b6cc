"""Seeded k-space sampling masks following fastMRI's conventions.

1D Cartesian masks select phase-encode columns (the last axis, W) and are constant along the
readout axis (H); a block of ``round(W * center_fraction)`` low-frequency columns is always
sampled. 2D masks (``poisson2d``, ``radial``) select individual k-space points and always include
the central ``center_fraction`` square. Every mask is a function of ``(kind, shape, acceleration,
center_fraction, seed)`` only, so the same seed gives the same mask on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InputError

MaskKind = Literal["random", "equispaced", "gaussian1d", "poisson2d", "radial"]
MASK_KINDS: tuple[str, ...] = ("random", "equispaced", "gaussian1d", "poisson2d", "radial")


@dataclass(frozen=True)
class SamplingMask:
    """A binary k-space sampling mask ``(H, W)`` with what it achieved."""

    mask: np.ndarray
    kind: str
    target_acceleration: float

    @property
    def acceleration(self) -> float:
        """Achieved acceleration: all k-space points over sampled points."""
        return float(self.mask.size / max(int(self.mask.sum()), 1))


def _center_columns(width: int, center_fraction: float) -> np.ndarray:
    n_low = max(1, int(round(width * center_fraction)))
    start = (width - n_low + 1) // 2
    cols = np.zeros(width, dtype=bool)
    cols[start : start + n_low] = True
    return cols


def _random_1d(width: int, acc: float, cf: float, rng: np.random.Generator) -> np.ndarray:
    # fastMRI RandomMaskFunc: each outer column kept with the probability that makes the
    # expected number of columns width / acc.
    cols = _center_columns(width, cf)
    n_low = int(cols.sum())
    prob = (width / acc - n_low) / max(width - n_low, 1)
    return cols | (rng.uniform(size=width) < prob)


def _equispaced_1d(width: int, acc: float, cf: float, rng: np.random.Generator) -> np.ndarray:
    # fastMRI EquispacedMaskFractionFunc: spacing adjusted so the total count is width / acc.
    cols = _center_columns(width, cf)
    n_low = int(cols.sum())
    spacing = max((width - n_low) / max(width / acc - n_low, 1e-9), 1.0)
    offset = rng.integers(0, max(int(round(spacing)), 1))
    idx = np.round(np.arange(offset, width - 1, spacing)).astype(int)
    cols[idx[idx < width]] = True
    return cols


def _gaussian_1d(width: int, acc: float, cf: float, rng: np.random.Generator) -> np.ndarray:
    # Variable-density 1D: outer columns drawn without replacement, Gaussian density
    # (std = width / 6) centred on DC, until width / acc columns are sampled.
    cols = _center_columns(width, cf)
    n_extra = max(int(round(width / acc)) - int(cols.sum()), 0)
    candidates = np.flatnonzero(~cols)
    weight = np.exp(-0.5 * ((candidates - width / 2) / (width / 6)) ** 2)
    n_extra = min(n_extra, candidates.size)
    chosen = rng.choice(candidates, size=n_extra, replace=False, p=weight / weight.sum())
    cols[chosen] = True
    return cols


def _center_square(shape: tuple[int, int], cf: float) -> np.ndarray:
    h, w = shape
    ch, cw = max(1, int(round(h * cf))), max(1, int(round(w * cf)))
    out = np.zeros(shape, dtype=bool)
    out[(h - ch + 1) // 2 : (h - ch + 1) // 2 + ch, (w - cw + 1) // 2 : (w - cw + 1) // 2 + cw] = (
        True
    )
    return out


def _poisson_2d(shape: tuple[int, int], acc: float, cf: float, seed: int) -> np.ndarray:
    import sigpy.mri

    h, w = shape
    calib = (max(1, int(round(h * cf))), max(1, int(round(w * cf))))
    mask = sigpy.mri.poisson((h, w), accel=acc, calib=calib, seed=seed, dtype=np.float32)
    return mask > 0


def _radial(shape: tuple[int, int], acc: float, cf: float, rng: np.random.Generator) -> np.ndarray:
    # Golden-angle spokes through the k-space centre, rasterised to the nearest grid point; spokes
    # are added until the sampled fraction reaches 1 / acc.
    h, w = shape
    mask = _center_square(shape, cf)
    radius = np.hypot(h, w) / 2
    t = np.linspace(-radius, radius, int(4 * radius) + 1)
    angle = rng.uniform(0, np.pi)
    golden = np.pi * (3 - np.sqrt(5)) / 2 * 2  # 111.25 degrees in radians
    target = mask.size / acc
    for _ in range(10 * max(h, w)):
        if mask.sum() >= target:
            break
        rows = np.round(h / 2 + t * np.sin(angle)).astype(int)
        cols = np.round(w / 2 + t * np.cos(angle)).astype(int)
        keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        mask[rows[keep], cols[keep]] = True
        angle = (angle + golden) % np.pi
    return mask


def sampling_mask(
    kind: str,
    shape: tuple[int, int],
    acceleration: float,
    center_fraction: float = 0.08,
    seed: int = 0,
) -> SamplingMask:
    """Draw a seeded sampling mask.

    Args:
        kind: one of ``random`` (1D Cartesian, fastMRI random), ``equispaced`` (1D),
            ``gaussian1d`` (1D variable density), ``poisson2d`` (2D variable-density Poisson disc)
            or ``radial`` (golden-angle spokes on the Cartesian grid).
        shape: k-space size ``(H, W)``; 1D masks select columns of W.
        acceleration: target undersampling factor (> 1 undersamples; 1 samples everything).
        center_fraction: fraction of low frequencies always sampled (columns, or a square for 2D).
        seed: integer seed; the mask depends on nothing else.
    """
    if kind not in MASK_KINDS:
        raise InputError(f"unknown sampling mask kind {kind!r}; choose one of {list(MASK_KINDS)}")
    if not acceleration >= 1:
        raise InputError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 < center_fraction < 1:
        raise InputError(f"center_fraction must be in (0, 1), got {center_fraction}")
    h, w = int(shape[0]), int(shape[1])
    if h < 2 or w < 2:
        raise InputError(f"sampling mask shape must be at least 2x2, got {shape}")
    if acceleration == 1:
        return SamplingMask(np.ones((h, w), dtype=bool), kind, 1.0)
    rng = np.random.default_rng(seed)
    if kind == "random":
        mask = np.broadcast_to(_random_1d(w, acceleration, center_fraction, rng), (h, w))
    elif kind == "equispaced":
        mask = np.broadcast_to(_equispaced_1d(w, acceleration, center_fraction, rng), (h, w))
    elif kind == "gaussian1d":
        mask = np.broadcast_to(_gaussian_1d(w, acceleration, center_fraction, rng), (h, w))
    elif kind == "poisson2d":
        mask = _poisson_2d((h, w), acceleration, center_fraction, seed)
    else:
        mask = _radial((h, w), acceleration, center_fraction, rng)
    return SamplingMask(np.ascontiguousarray(mask, dtype=bool), kind, float(acceleration))


FASTMRI_MASK_KINDS: tuple[str, ...] = ("random", "equispaced")
"""Kinds of :func:`fastmri_mask`: fastMRI's RandomMaskFunc and EquispacedMaskFractionFunc."""


def as_floats(values: float | Sequence[float], name: str) -> tuple[float, ...]:
    """A non-empty tuple of floats from a number or a sequence of numbers."""
    if isinstance(values, (int, float, np.integer, np.floating)):
        return (float(values),)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a number or a list of numbers, got {values!r}") from exc
    if not out:
        raise InputError(f"{name}: expected at least one value, got an empty list")
    return out


def fastmri_mask(
    width: int,
    kind: str,
    center_fractions: float | Sequence[float],
    accelerations: float | Sequence[float],
    rng: np.random.Generator,
    acquired: tuple[int, int] | None = None,
) -> np.ndarray:
    """Phase-encode column mask with fastMRI's conventions, for k-space ``(..., H, width)``.

    One ``(center_fraction, acceleration)`` pair is drawn uniformly from the paired lists (the
    first draw from ``rng``), as fastMRI's ``MaskFunc`` does when trained on several accelerations.
    Only the ``n = stop - left`` acquired columns ``[left, stop)`` can be sampled: zero-padded
    columns outside them (fastMRI's encoding limits) never are, and the acceleration is counted
    over ``n``, not ``width``:

    - ``round(n * center_fraction)`` (at least 1) centre columns are always sampled, placed as
      fastMRI does around the k-space centre of the full width (first column
      ``(width - n_low + 1) // 2``, so DC ``width // 2`` is included), clipped to the acquired
      range;
    - ``"random"`` (fastMRI ``RandomMaskFunc``): every other acquired column is sampled
      independently with probability ``(n / acc - n_low) / (n - n_low)``, so on average ``n / acc``
      columns are sampled;
    - ``"equispaced"`` (fastMRI ``EquispacedMaskFractionFunc``): columns ``left + round(offset +
      j * s)`` for ``j = 0, 1, ...`` below ``stop - 1``, with ``offset`` drawn from
      ``[0, round(acc))`` and the spacing ``s = acc (n_low - n) / (n_low acc - n)`` chosen so that,
      with the centre, about ``n / acc`` columns are sampled (exact up to rounding).

    Args:
        width: number of phase-encode columns W of the k-space array (last axis).
        kind: ``"random"`` or ``"equispaced"``.
        center_fractions: fraction(s) of the acquired columns sampled fully at the centre, each in
            (0, 1); paired element-wise with ``accelerations``.
        accelerations: undersampling factor(s) >= 1 over the acquired columns (1 samples all
            of them).
        rng: generator of every random draw (the pair index first); the mask depends on nothing
            else, so a generator seeded the same way gives the same mask.
        acquired: ``(left, stop)`` acquired columns; ``None`` means all of ``(0, width)``.

    Returns:
        ``(width,)`` float32 array of 0s and 1s.
    """
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise InputError(f"fastmri_mask: width must be a positive integer, got {width!r}")
    width = int(width)
    if kind not in FASTMRI_MASK_KINDS:
        raise InputError(
            f"fastmri_mask: unknown mask kind {kind!r}; choose one of {list(FASTMRI_MASK_KINDS)}"
        )
    fractions = as_floats(center_fractions, "center_fractions")
    factors = as_floats(accelerations, "accelerations")
    if len(fractions) != len(factors):
        raise InputError(
            f"center_fractions {list(fractions)} and accelerations {list(factors)} must have the "
            "same length: they are used as (center_fraction, acceleration) pairs"
        )
    for cf in fractions:
        if not 0 < cf < 1:
            raise InputError(f"center_fractions: each must be in (0, 1), got {cf}")
    for acc in factors:
        if not acc >= 1:
            raise InputError(f"accelerations: each must be >= 1, got {acc}")
    left, stop = (0, width) if acquired is None else (int(acquired[0]), int(acquired[1]))
    if not 0 <= left < stop <= width:
        raise InputError(
            f"fastmri_mask: acquired columns {acquired} must satisfy 0 <= left < stop <= width "
            f"({width})"
        )

    pick = int(rng.integers(len(fractions)))
    cf, acc = fractions[pick], factors[pick]
    n = stop - left
    if acc == 1:  # fully sampled (fastMRI's equispaced range would miss the last column)
        full = np.zeros(width, dtype=np.float32)
        full[left:stop] = 1
        return full
    n_low = max(1, int(round(n * cf)))
    cols = np.zeros(width, dtype=bool)
    start = (width - n_low + 1) // 2
    cols[max(start, left) : min(start + n_low, stop)] = True
    n_center = int(cols.sum())
    if n_center * acc > n * (1 + 1e-9):
        raise InputError(
            f"center_fraction {cf} keeps {n_center} centre columns, more than the {n / acc:.1f} "
            f"that acceleration {acc} allows over {n} acquired columns; lower the centre fraction "
            "or the acceleration"
        )
    if n_center * acc >= n * (1 - 1e-9):  # the centre alone reaches the requested count
        return cols.astype(np.float32)
    if kind == "random":
        prob = (n / acc - n_center) / (n - n_center)
        cols[left:stop] |= rng.uniform(size=n) < prob
    else:
        offset = int(rng.integers(0, max(int(round(acc)), 1)))
        spacing = acc * (n_center - n) / (n_center * acc - n)
        picks = np.round(np.arange(offset, n - 1, spacing)).astype(np.int64)
        cols[left + picks[picks < n]] = True
    return cols.astype(np.float32)
