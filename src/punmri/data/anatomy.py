"""The run's image sets: train/val/test slabs of the default volume and its other views.

``source: colin27`` reads the Colin27 T1 head (Debian ``mricron-data``), ``source: phantom`` a
procedural head-like volume (fast tests); any NIfTI path works as well. The training view is cut
into spatially disjoint slabs (:func:`~punmri.data.volumes.split_slabs`); the two other views of
the same volume are anatomy-shift sets.
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


def other_view(cfg: DataConfig, view: str) -> ImageSet:
    """All tissue slices of another view of the volume (an anatomy-shift test set).

    Capped (evenly spaced) at ``cfg.max_test_slices`` when that is set.
    """
    volume = load_source_volume(cfg)
    images, keep = view_slices(volume, cfg, view)
    name = cfg.source if cfg.source in ("colin27", "phantom") else "volume"
    return _image_set(
        images, evenly_spaced(keep, cfg.max_test_slices), f"{name}:{view}", volume.source
    )
