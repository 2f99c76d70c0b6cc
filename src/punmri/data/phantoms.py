"""Procedural phantoms for fast tests: Shepp-Logan, random head-like ellipses and a 3D volume.

Coordinates are normalised to [-1, 1] over each axis (pixel centers), with x to the right and
y up in 2D images. All outputs are float32, finite and normalised to [0, 1] (divided by max).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from punmri.data.volumes import Volume
from punmri.errors import InputError

# Modified Shepp-Logan (Toft's contrast-enhanced variant): rows of
# (intensity added, semi-axis x, semi-axis y, center x, center y, rotation in degrees).
_MODIFIED_SHEPP_LOGAN: tuple[tuple[float, float, float, float, float, float], ...] = (
    (1.0, 0.6900, 0.9200, 0.00, 0.0000, 0.0),
    (-0.8, 0.6624, 0.8740, 0.00, -0.0184, 0.0),
    (-0.2, 0.1100, 0.3100, 0.22, 0.0000, -18.0),
    (-0.2, 0.1600, 0.4100, -0.22, 0.0000, 18.0),
    (0.1, 0.2100, 0.2500, 0.00, 0.3500, 0.0),
    (0.1, 0.0460, 0.0460, 0.00, 0.1000, 0.0),
    (0.1, 0.0460, 0.0460, 0.00, -0.1000, 0.0),
    (0.1, 0.0460, 0.0230, -0.08, -0.6050, 0.0),
    (0.1, 0.0230, 0.0230, 0.00, -0.6060, 0.0),
    (0.1, 0.0230, 0.0460, 0.06, -0.6050, 0.0),
)


def _check_shape(shape: Sequence[int], ndim: int, field: str) -> tuple[int, ...]:
    if len(shape) != ndim or any(int(s) != s or s < 1 for s in shape):
        raise InputError(f"{field}: expected {ndim} positive integers, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise InputError(
            f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )


def _axis_coords(n: int) -> np.ndarray:
    """Pixel-center coordinates of ``n`` samples spanning [-1, 1]."""
    return ((np.arange(n, dtype=np.float64) + 0.5) / n) * 2.0 - 1.0


def _grid_2d(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) coordinate grids of an (H, W) image, y pointing up (row 0 is y close to +1)."""
    h, w = shape
    y = -_axis_coords(h)[:, None]
    x = _axis_coords(w)[None, :]
    return np.broadcast_to(x, shape), np.broadcast_to(y, shape)


def _inside(
    coords: Sequence[np.ndarray],
    center: Sequence[float],
    axes: Sequence[float],
    angle_deg: float,
) -> np.ndarray:
    """Boolean mask of an ellipse/ellipsoid rotated by ``angle_deg`` in the x-y plane."""
    theta = np.deg2rad(angle_deg)
    dx = coords[0] - center[0]
    dy = coords[1] - center[1]
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    total = (u / axes[0]) ** 2 + (v / axes[1]) ** 2
    for k in range(2, len(coords)):
        total = total + ((coords[k] - center[k]) / axes[k]) ** 2
    return total <= 1.0


def _unit_max(image: np.ndarray) -> np.ndarray:
    peak = float(np.max(image))
    out = image / peak if peak > 0 else image
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def shepp_logan(shape: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Modified Shepp-Logan phantom.

    Args:
        shape: (H, W) in pixels; the phantom spans the field of view (non-square shapes stretch).

    Returns:
        (H, W) float32 in [0, 1] (divided by its max).
    """
    hw = _check_shape(shape, 2, "shape")
    x, y = _grid_2d((hw[0], hw[1]))
    image = np.zeros((hw[0], hw[1]), dtype=np.float64)
    for value, ax, ay, cx, cy, angle in _MODIFIED_SHEPP_LOGAN:
        image[_inside((x, y), (cx, cy), (ax, ay), angle)] += value
    return _unit_max(image)


def _random_head(coords: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a scalp shell, a brain and ``n`` random lesion-like ellipsoids on ``coords``."""
    ndim = len(coords)
    head_axes = np.array([rng.uniform(0.70, 0.80), rng.uniform(0.85, 0.93)])
    if ndim == 3:
        head_axes = np.append(head_axes, rng.uniform(0.80, 0.90))
    origin = np.zeros(ndim)
    head_angle = rng.uniform(-8.0, 8.0)
    image = np.zeros(coords[0].shape, dtype=np.float64)
    image[_inside(coords, origin, head_axes, head_angle)] = 1.0
    brain_axes = head_axes * rng.uniform(0.86, 0.90)
    brain = _inside(coords, origin, brain_axes, head_angle)
    image[brain] = rng.uniform(0.45, 0.6)
    for _ in range(int(n)):
        direction = rng.normal(size=ndim)
        direction /= max(float(np.linalg.norm(direction)), 1e-12)
        center = direction * rng.uniform(0.0, 0.6) ** 0.5 * brain_axes * 0.9
        axes = brain_axes * rng.uniform(0.05, 0.3, size=ndim)
        blob = _inside(coords, center, axes, rng.uniform(0.0, 180.0)) & brain
        image[blob] = rng.uniform(0.1, 0.9)
    return image


def random_ellipses(shape: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Head-like random phantom: a bright scalp ring, a brain ellipse and ``n`` inner ellipses.

    Args:
        shape: (H, W) in pixels.
        n: number of random ellipses inside the brain (>= 0).
        rng: random generator (all randomness comes from it).

    Returns:
        (H, W) float32 in [0, 1] (divided by its max).
    """
    hw = _check_shape(shape, 2, "shape")
    _check_rng(rng)
    if int(n) != n or n < 0:
        raise InputError(f"n: expected a non-negative integer, got {n!r}")
    x, y = _grid_2d((hw[0], hw[1]))
    return _unit_max(_random_head((x, y), int(n), rng))


def phantom_volume(shape3d: tuple[int, int, int], rng: np.random.Generator, n: int = 8) -> Volume:
    """Small random 3D head phantom usable in place of Colin27 in tests.

    The data follow the RAS convention of :func:`~punmri.data.volumes.load_volume` (axes Right,
    Anterior, Superior) with 1 mm voxels; end slices hold little or no tissue, like a real head.

    Args:
        shape3d: (X, Y, Z) voxels.
        rng: random generator.
        n: number of random inner ellipsoids.

    Returns:
        :class:`~punmri.data.volumes.Volume` with float32 data (X, Y, Z) in [0, 1] and
        ``source="phantom"``.
    """
    xyz = _check_shape(shape3d, 3, "shape3d")
    _check_rng(rng)
    if int(n) != n or n < 0:
        raise InputError(f"n: expected a non-negative integer, got {n!r}")
    coords = np.meshgrid(*(_axis_coords(s) for s in xyz), indexing="ij")
    data = _unit_max(_random_head(coords, int(n), rng))
    return Volume(data=data, voxel_size_mm=(1.0, 1.0, 1.0), source="phantom")
