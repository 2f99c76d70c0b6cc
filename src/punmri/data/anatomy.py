"""The run's image sets: train/val/test slabs of the default volume and its other views.

``source: colin27`` reads the Colin27 T1 head (Debian ``mricron-data``), ``source: phantom`` a
procedural head-like volume (fast tests); any NIfTI path works as well. The training view is cut
into spatially disjoint slabs (:func:`~punmri.data.volumes.split_slabs`); the two other views of
the same volume, cropped to the test slab's extent (:func:`other_view`), are anatomy-shift sets.
Every slice of a run on one volume comes from one subject.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig
from ..errors import InputError
from .phantoms import phantom_volume
from .sources import ImageSet
from .volumes import (
    COLIN27_PATH,
    VIEWS,
    Volume,
    fit_to_shape,
    load_volume,
    normalize_magnitude,
    select_tissue_slices,
    slice_volume,
    split_slabs,
)


def load_source_volume(cfg: DataConfig) -> Volume:
    """The 3D volume named by ``cfg.source`` at ``cfg.resolution_mm``."""
    if cfg.source == "phantom":
        return phantom_volume((48, 56, 40), np.random.default_rng(0))
    path = COLIN27_PATH if cfg.source == "colin27" else cfg.source
    return load_volume(path, cfg.resolution_mm)


def evenly_spaced(indices: list[int], limit: int) -> list[int]:
    """At most ``limit`` entries of ``indices``, evenly spaced (``limit <= 0`` keeps all)."""
    if limit <= 0 or limit >= len(indices):
        return list(indices)
    picks = np.round(np.linspace(0, len(indices) - 1, limit)).astype(int)
    return [indices[i] for i in picks]


def view_slices(volume: Volume, cfg: DataConfig, view: str) -> tuple[np.ndarray, list[int]]:
    """Normalised slices ``(N, H, W)`` of one view at the run's image size, and the indices of
    the slices with enough tissue."""
    if view not in VIEWS:
        raise InputError(f"data.view: {view!r} is not one of {list(VIEWS)}")
    stack = slice_volume(volume, view)
    keep = select_tissue_slices(stack, cfg.min_tissue)
    images = np.stack([normalize_magnitude(fit_to_shape(s, cfg.image_size)) for s in stack])
    return images.astype(np.float32), keep


def _image_set(images: np.ndarray, indices: list[int], label: str, source: str) -> ImageSet:
    return ImageSet(
        images=images[indices], names=[f"{label}:{i:03d}" for i in indices], source=source
    )


def training_splits(cfg: DataConfig) -> dict[str, ImageSet]:
    """``train``/``val``/``test`` slabs of the training view, capped as configured."""
    volume = load_source_volume(cfg)
    images, keep = view_slices(volume, cfg, cfg.view)
    slabs = split_slabs(keep, cfg.slab_fractions, cfg.slab_gap)
    limits = {"train": cfg.max_train_slices, "val": cfg.max_val_slices, "test": cfg.max_test_slices}
    name = cfg.source if cfg.source in ("colin27", "phantom") else "volume"
    return {
        split: _image_set(
            images, evenly_spaced(slabs[split], limits[split]), f"{name}:{cfg.view}", volume.source
        )
        for split in ("train", "val", "test")
    }


SLICE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
"""The volume axis (RAS ``X, Y, Z``) that :func:`~punmri.data.volumes.slice_volume` steps along
for each view: slab positions of a view are indices on this axis."""


def slab_extent(
    cfg: DataConfig, split: str = "test", volume: Volume | None = None
) -> tuple[int, int, int]:
    """``(first, last, n_positions)``: the first and last training-view position of a slab (the
    whole slab, before ``max_*_slices`` caps) and the number of positions along that axis."""
    volume = load_source_volume(cfg) if volume is None else volume
    keep = select_tissue_slices(slice_volume(volume, cfg.view), cfg.min_tissue)
    slab = split_slabs(keep, cfg.slab_fractions, cfg.slab_gap)[split]
    if not slab:
        raise InputError(
            f"data.slab_fractions: the {split} slab is empty ({cfg.slab_fractions}); view-shift "
            "suites are cut from the test slab's extent"
        )
    return min(slab), max(slab), volume.shape[SLICE_AXIS[cfg.view]]


def _test_band(
    cfg: DataConfig, view: str, volume: Volume
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Slices ``(N, h, w)`` of ``view`` cropped to the voxels of the test slab, and its extent."""
    if view not in VIEWS:
        raise InputError(f"view: {view!r} is not one of {list(VIEWS)}")
    if view == cfg.view:
        raise InputError(
            f"view {view!r} is the training view (data.view), whose slices are the slabs "
            "themselves; use source 'test' instead"
        )
    first, last, n_positions = slab_extent(cfg, "test", volume)
    inside = np.zeros(volume.shape, dtype=np.float32)
    index: list[slice] = [slice(None)] * 3
    index[SLICE_AXIS[cfg.view]] = slice(first, last + 1)
    inside[tuple(index)] = 1.0
    keep = slice_volume(inside, view)[0] > 0.5  # the same in-plane band on every slice
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    crop = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    if not keep[crop[1:]].all():
        raise InputError(f"view {view!r}: the test slab is not a band of its slices")
    return slice_volume(volume, view)[crop], (first, last, n_positions)


def other_view(cfg: DataConfig, view: str, volume: Volume | None = None) -> ImageSet:
    """The tissue slices of another view of the volume, cropped to the test slab (an
    anatomy-shift test set that shares no voxel with the training or validation slab).

    A slice of another view crosses every slab of the training view; only the band of rows (or
    columns) inside the test slab's extent (:func:`slab_extent`: its first to last training-view
    position) is kept, then centre-padded/cropped to ``cfg.image_size``. For the default
    ``colin27`` at 2 mm that is a 15-pixel (30 mm) band of the upper head in a 96x80 image:
    at least 84% of each image is zero padding. A slice is kept when at least ``cfg.min_tissue`` of
    the band (not of the image) is tissue; the set is capped (evenly spaced) at
    ``cfg.max_test_slices`` when that is set.
    """
    volume = load_source_volume(cfg) if volume is None else volume
    stack, _ = _test_band(cfg, view, volume)
    keep = select_tissue_slices(stack, cfg.min_tissue)
    if not keep:
        raise InputError(
            f"view {view!r}: no slice has data.min_tissue={cfg.min_tissue:g} of tissue inside "
            "the test slab's extent; lower data.min_tissue or drop the view-shift suites"
        )
    keep = evenly_spaced(keep, cfg.max_test_slices)
    images = np.stack([normalize_magnitude(fit_to_shape(stack[i], cfg.image_size)) for i in keep])
    name = cfg.source if cfg.source in ("colin27", "phantom") else "volume"
    return ImageSet(
        images=images.astype(np.float32),
        names=[f"{name}:{view}:{i:03d}" for i in keep],
        source=volume.source,
    )


def view_crop_note(cfg: DataConfig, view: str, volume: Volume | None = None) -> str:
    """What :func:`other_view` keeps, for a suite description, e.g. ``test slab only (axial
    positions 64-78 of 91; a 15x91 band centred in 96x80 pixels, no training or validation
    voxels)``."""
    volume = load_source_volume(cfg) if volume is None else volume
    stack, (first, last, n_positions) = _test_band(cfg, view, volume)
    h, w = cfg.image_size
    return (
        f"test slab only ({cfg.view} positions {first}-{last} of {n_positions}; a "
        f"{stack.shape[1]}x{stack.shape[2]} band centred in {h}x{w} pixels, no training or "
        "validation voxels)"
    )
