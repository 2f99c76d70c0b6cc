"""Synthetic pathology: small smooth-edged blobs inserted into tissue, with their ROI masks.

This mirrors how fastMRI+ bounding-box annotations are used: a reconstruction is scored not only
on the whole slice but on the small regions a radiologist cares about. A lesion is an ellipse with
random semi-axes (pixels), rotation and sub-pixel centre whose intensity change is
``contrast * local mean tissue intensity`` with a smooth (smoothstep) taper towards its edge.
Lesions lie entirely inside tissue (pixels above ``tissue_threshold``), do not touch the image
border and do not touch each other. A bright lesion is placed where it keeps the image <= 1 when
such a place exists (shrinking it if needed); otherwise the image is divided by its new maximum.
The ROI is the union of the lesion supports (every pixel that was changed, before any
re-normalisation).

Everything depends only on the image and the given :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .batches import suite_seed

EDGE_PX = 1.5
"""Width in pixels of the smooth taper at a lesion's edge."""

LOCAL_RADIUS_PX = 8
"""Half-size in pixels of the window whose mean tissue intensity scales a lesion's contrast."""


@dataclass(frozen=True)
class Lesion:
    """One planned lesion.

    Attributes:
        row, col: integer pixel the lesion is anchored at.
        shift: sub-pixel offset ``(dy, dx)`` of the true centre from that pixel, in [-0.5, 0.5).
        semi_axes: ellipse semi-axes ``(a, b)`` in pixels (``a`` along the rotated x axis).
        angle: rotation in radians.
        contrast: relative intensity change (e.g. ``-0.1`` is 10 % darker than the local tissue).
        delta: absolute intensity change at the lesion core (``contrast * local tissue mean``).
    """

    row: int
    col: int
    shift: tuple[float, float]
    semi_axes: tuple[float, float]
    angle: float
    contrast: float
    delta: float


def _check_range(value: tuple[float, float], field: str, low: float | None = None) -> None:
    if len(value) != 2 or not all(math.isfinite(float(v)) for v in value):
        raise InputError(f"{field}: expected a (low, high) pair of numbers, got {value!r}")
    if float(value[0]) > float(value[1]):
        raise InputError(f"{field}: expected low <= high, got {value!r}")
    if low is not None and float(value[0]) < low:
        raise InputError(f"{field}: expected values >= {low}, got {value!r}")


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2 or min(arr.shape) < 3:
        raise InputError(f"image: expected a 2D magnitude image (H, W) >= 3x3, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"image: expected a float array, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise InputError("image: contains NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1 + 1e-6:
        raise InputError(
            f"image: expected intensities in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}]"
        )
    return arr.astype(np.float32)


def lesion_profile(
    offsets: tuple[np.ndarray, np.ndarray],
    semi_axes: tuple[float, float],
    angle: float,
) -> np.ndarray:
    """Smooth lesion weight in [0, 1] at pixel offsets ``(dy, dx)`` from the centre (pixels).

    1 in the core, tapering to 0 over about :data:`EDGE_PX` pixels; exactly 0 outside the ellipse.
    """
    dy, dx = offsets
    c, s = math.cos(angle), math.sin(angle)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    a, b = semi_axes
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    t = np.clip((1.0 - r) * min(a, b) / EDGE_PX, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _footprint(
    semi_axes: tuple[float, float], angle: float, shift: tuple[float, float]
) -> np.ndarray:
    """Profile ``(2R+1, 2R+1)`` around the anchor pixel, ``R = ceil(max axis) + 1``."""
    radius = math.ceil(max(semi_axes)) + 1
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    dy = k[:, None] - shift[0]
    dx = k[None, :] - shift[1]
    return lesion_profile((dy, dx), semi_axes, angle)


def _draw_contrast(
    rng: np.random.Generator, contrast: tuple[float, float], min_abs: float
) -> float:
    """Uniform on ``[low, high]`` without the open interval ``(-min_abs, min_abs)``."""
    lo, hi = float(contrast[0]), float(contrast[1])
    segments = []
    if lo <= -min_abs:
        segments.append((lo, min(hi, -min_abs)))
    if hi >= min_abs:
        segments.append((max(lo, min_abs), hi))
    lengths = np.array([s[1] - s[0] for s in segments])
    total = float(lengths.sum())
    p = lengths / total if total > 0 else np.full(len(segments), 1.0 / len(segments))
    seg = segments[int(rng.choice(len(segments), p=p))]
    return float(rng.uniform(seg[0], seg[1])) if seg[1] > seg[0] else seg[0]


def local_tissue_mean(image: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Mean of ``image`` over the tissue pixels of the ``(2 L + 1)^2`` window around each pixel,
    ``L =`` :data:`LOCAL_RADIUS_PX` (0 where the window holds no tissue)."""
    window = np.ones((2 * LOCAL_RADIUS_PX + 1,) * 2)
    weights = tissue.astype(np.float64)
    total = ndimage.correlate(image * weights, window, mode="constant")
    count = ndimage.correlate(weights, window, mode="constant")
    return np.where(count > 0.5, total / np.maximum(count, 1.0), 0.0)


def plan_lesions(
    image: np.ndarray,
    rng: np.random.Generator,
    n: tuple[int, int] = (1, 3),
    radius_px: tuple[float, float] = (2.0, 6.0),
    contrast: tuple[float, float] = (-0.4, 0.4),
    tissue_threshold: float = 0.1,
    min_abs_contrast: float = 0.05,
) -> list[Lesion]:
    """Draw lesion positions, shapes and contrasts for ``image``.

    The number of lesions is uniform on ``n`` (inclusive). A lesion that does not fit inside the
    remaining tissue (or, when bright, would push the image above 1 everywhere it fits) is shrunk
    down to a 1-pixel radius; lesions that still do not fit are skipped, but at least one is
    always placed.

    Args:
        image: ``(H, W)`` float in [0, 1].
        rng: the only source of randomness (same generator state -> same lesions).
        n: inclusive range of the number of lesions.
        radius_px: range of the ellipse semi-axes in pixels (drawn independently per axis).
        contrast: range of the relative intensity change; draws with ``|contrast| <
            min_abs_contrast`` are excluded (invisible lesions), so the default range gives subtle
            lesions (``|contrast| ~ 0.1``) as well as obvious ones.
        tissue_threshold: pixels above this intensity are tissue; lesions lie inside tissue.
        min_abs_contrast: smallest allowed ``|contrast|``.

    Raises:
        InputError: bad arguments, or no tissue pixel where even a 1-pixel lesion fits.
    """
    arr = _check_image(image)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if len(n) != 2 or int(n[0]) != n[0] or int(n[1]) != n[1] or not 1 <= n[0] <= n[1]:
        raise InputError(
            f"n: expected a (low, high) pair of integers with 1 <= low <= high, got {n}"
        )
    _check_range(radius_px, "radius_px", low=1.0)
    _check_range(contrast, "contrast", low=-1.0)
    if not 0 <= min_abs_contrast <= max(abs(float(contrast[0])), abs(float(contrast[1]))):
        raise InputError(
            f"min_abs_contrast: expected a value in [0, max |contrast|], got {min_abs_contrast}"
        )
    if not 0 <= tissue_threshold < 1:
        raise InputError(f"tissue_threshold: expected a value in [0, 1), got {tissue_threshold}")

    tissue = arr > tissue_threshold
    local_mean = local_tissue_mean(arr.astype(np.float64), tissue)
    interior = np.zeros_like(tissue)
    interior[1:-1, 1:-1] = True
    free = tissue & interior
    lesions: list[Lesion] = []
    for _ in range(int(rng.integers(int(n[0]), int(n[1]) + 1))):
        axes = (float(rng.uniform(*radius_px)), float(rng.uniform(*radius_px)))
        angle = float(rng.uniform(0.0, math.pi))
        shift = (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)))
        c = _draw_contrast(rng, contrast, min_abs_contrast)
        scale = 1.0
        while True:
            scaled = (max(axes[0] * scale, 1.0), max(axes[1] * scale, 1.0))
            support = _footprint(scaled, angle, shift) > 0
            fits = ndimage.binary_erosion(free, structure=support, border_value=0)
            # prefer places where a bright lesion stays <= 1 (no re-normalisation needed)
            peak = ndimage.maximum_filter(arr, footprint=support, mode="constant")
            room = fits & (peak + max(c, 0.0) * local_mean <= 1.0)
            if room.any() or max(scaled) <= 1.0:
                break
            scale *= 0.75
        candidates = np.flatnonzero(room if room.any() else fits)
        if candidates.size == 0:
            continue
        row, col = np.unravel_index(int(candidates[rng.integers(candidates.size)]), arr.shape)
        delta = c * float(local_mean[row, col])
        lesion = Lesion(int(row), int(col), shift, scaled, angle, c, float(delta))
        lesions.append(lesion)
        # keep later lesions one pixel away from this one
        placed = _paste(np.zeros(arr.shape), lesion) > 0
        free &= ~ndimage.binary_dilation(placed, iterations=2)
    if not lesions:
        raise InputError(
            f"image: no tissue region (pixels > tissue_threshold={tissue_threshold}) away from "
            "the border is large enough to hold a lesion"
        )
    return lesions


def _paste(canvas: np.ndarray, lesion: Lesion) -> np.ndarray:
    """Add ``lesion``'s profile (weight in [0, 1]) to ``canvas`` in place and return it."""
    fp = _footprint(lesion.semi_axes, lesion.angle, lesion.shift)
    radius = fp.shape[0] // 2
    h, w = canvas.shape
    r0, c0 = lesion.row - radius, lesion.col - radius
    rows = slice(max(r0, 0), min(r0 + fp.shape[0], h))
    cols = slice(max(c0, 0), min(c0 + fp.shape[1], w))
    canvas[rows, cols] += fp[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
    return canvas


def render_lesions(image: np.ndarray, lesions: list[Lesion]) -> tuple[np.ndarray, np.ndarray]:
    """Apply planned lesions to ``image`` ``(H, W)`` in [0, 1].

    Returns:
        the image with lesions ``(H, W)`` float32, clipped at 0 and divided by its maximum only if
        that exceeds 1, and the ROI ``(H, W)`` bool (union of the lesion supports).
    """
    arr = _check_image(image).astype(np.float64)
    change = np.zeros_like(arr)
    roi = np.zeros(arr.shape, dtype=bool)
    for lesion in lesions:
        weight = _paste(np.zeros_like(arr), lesion)
        change += lesion.delta * weight
        roi |= weight > 0
    out = np.clip(arr + change, 0.0, None)
    peak = float(out.max())
    if peak > 1.0:
        out /= peak
    return out.astype(np.float32), roi


def insert_lesions(
    image: np.ndarray, rng: np.random.Generator, **plan: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Insert synthetic lesions into a magnitude image ``(H, W)`` float in [0, 1]:
    :func:`plan_lesions` (``rng`` and the keyword arguments ``plan``) then :func:`render_lesions`.

    Returns:
        ``(image_with_lesions, roi)``: ``(H, W)`` float32 in [0, 1] and ``(H, W)`` bool.
    """
    return render_lesions(image, plan_lesions(image, rng, **plan))


def lesion_images(images: np.ndarray, seed: int, suite_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Insert lesions into every slice of ``images`` ``(N, H, W)`` with default settings.

    Slice ``i`` uses ``np.random.default_rng([seed, suite_seed(suite_name), i, 7])``, so a suite's
    lesions are fixed by the test seed and the suite name.

    Returns:
        images ``(N, H, W)`` float32 and ROI masks ``(N, H, W)`` bool.
    """
    stack = np.asarray(images)
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise InputError(f"images: expected a non-empty stack (N, H, W), got shape {stack.shape}")
    out, rois = [], []
    for i, img in enumerate(stack):
        rng = np.random.default_rng([int(seed), suite_seed(suite_name), i, 7])
        with_lesions, roi = insert_lesions(img, rng)
        out.append(with_lesions)
        rois.append(roi)
    return np.stack(out), np.stack(rois)
