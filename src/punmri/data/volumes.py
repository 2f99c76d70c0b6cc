"""NIfTI volumes, slicing, slab splits and image-size/intensity normalisation.

The default real anatomy is the Colin27 T1 head template shipped by the Debian package
``mricron-data`` (181x217x181 voxels at 1 mm). Volumes are reoriented to RAS canonical axes, so
``data[x, y, z]`` runs Right, Anterior, Superior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from punmri.errors import InputError

COLIN27_PATH = "/usr/share/mricron/templates/ch2.nii.gz"
"""Colin27 T1 head template (Debian package ``mricron-data``), 181x217x181 at 1 mm."""

View = Literal["axial", "coronal", "sagittal"]
VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
SLAB_NAMES: tuple[str, str, str] = ("train", "val", "test")
CLIP_PERCENTILE = 99.9
"""Intensities are clipped at this percentile of each slice before dividing by the slice max."""


@dataclass(frozen=True)
class Volume:
    """A 3D image in RAS canonical orientation.

    Attributes:
        data: (X, Y, Z) float32 voxel intensities, axes running Right, Anterior, Superior.
        voxel_size_mm: voxel edge lengths (x, y, z) in millimetres.
        source: path of the file the volume came from (or a short description).
    """

    data: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid shape (X, Y, Z)."""
        return (int(self.data.shape[0]), int(self.data.shape[1]), int(self.data.shape[2]))


def _missing_file_message(path: Path) -> str:
    msg = f"NIfTI file not found: {path}"
    if path.resolve() == Path(COLIN27_PATH).resolve() or str(path) == COLIN27_PATH:
        msg += (
            " (the Colin27 template comes from the Debian package mricron-data: "
            "run `apt-get install mricron-data`, or `make demo`, which installs it)"
        )
    return msg


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file into RAS canonical float32 data (X, Y, Z) and its voxel sizes in mm."""
    import nibabel as nib

    if not path.exists():
        raise InputError(_missing_file_message(path))
    if not path.is_file():
        raise InputError(f"{path}: expected a NIfTI file (.nii or .nii.gz), got a directory")
    try:
        img = nib.load(str(path))
        if len(img.shape) == 4 and img.shape[3] == 1:
            img = img.slicer[..., 0]
        if len(img.shape) == 2:
            data2d = np.asanyarray(img.dataobj)[:, :, None]
            img = nib.Nifti1Image(data2d, img.affine)
        if len(img.shape) != 3:
            raise InputError(
                f"{path}: expected a 2D or 3D NIfTI volume, got shape {tuple(img.shape)} "
                f"({len(img.shape)}D); extract one 3D volume first"
            )
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except InputError:
        raise
    except Exception as exc:  # nibabel/gzip/zlib raise many types on corrupt files
        raise InputError(
            f"{path}: cannot read as NIfTI (.nii/.nii.gz); the file looks corrupt or is not "
            f"NIfTI ({type(exc).__name__}: {exc})"
        ) from exc
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: NIfTI data contains NaN or Inf values; expected finite values")
    return data, zooms


def load_volume(path: str | Path, resolution_mm: float | None = None) -> Volume:
    """Load a NIfTI volume, reorient it to RAS canonical and optionally resample it.

    Args:
        path: ``.nii`` or ``.nii.gz`` file holding a 3D volume (a 2D image becomes Z=1; a 4D
            file with one volume is squeezed; more volumes raise :class:`InputError`).
        resolution_mm: isotropic voxel size to resample to with linear interpolation
            (``scipy.ndimage.zoom(order=1)``), keeping the first and last voxel centers; the
            stored voxel size is this nominal value. ``None`` keeps the native grid.

    Returns:
        :class:`Volume` with float32 data (X, Y, Z) and voxel sizes in mm.
    """
    path = Path(path)
    data, zooms = _read_nifti(path)
    voxel = tuple(z if z > 0 else 1.0 for z in zooms)
    if resolution_mm is not None:
        valid = isinstance(resolution_mm, (int, float)) and math.isfinite(resolution_mm)
        if not valid or resolution_mm <= 0:
            raise InputError(f"resolution_mm: expected a positive number, got {resolution_mm!r}")
        # Keep the first and last voxel centers (scipy's default grid): m = round((n-1)v/r) + 1
        # voxels, spacing (n - 1) * v / (m - 1), exactly resolution_mm when (n - 1) * v is a
        # multiple of it (Colin27: 181x217x181 at 1 mm -> 91x109x91 at 2 mm).
        sizes = [
            n if n == 1 else max(2, int(math.floor((n - 1) * v / resolution_mm + 0.5)) + 1)
            for n, v in zip(data.shape, voxel, strict=True)
        ]
        factors = [m / n for m, n in zip(sizes, data.shape, strict=True)]
        if any(f != 1.0 for f in factors):
            data = ndimage.zoom(data, factors, order=1).astype(np.float32, copy=False)
        voxel = tuple(
            float(resolution_mm) if n > 1 else v for n, v in zip(sizes, voxel, strict=True)
        )
    return Volume(data=data, voxel_size_mm=(voxel[0], voxel[1], voxel[2]), source=str(path))


def slice_volume(volume: Volume | np.ndarray, view: View = "axial") -> np.ndarray:
    """Cut a RAS volume into 2D slices with a consistent display orientation.

    Display convention (neurological, patient left on image left): axial slices have anterior
    up and run inferior to superior; coronal slices have superior up and run posterior to
    anterior; sagittal slices have superior up, anterior on the right, and run left to right.

    Args:
        volume: :class:`Volume` or (X, Y, Z) array in RAS canonical orientation.
        view: ``"axial"``, ``"coronal"`` or ``"sagittal"``.

    Returns:
        (N, H, W) float32 array of slices (a copy).
    """
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    if data.ndim != 3:
        raise InputError(f"volume: expected a 3D (X, Y, Z) array, got shape {data.shape}")
    if view == "axial":
        stack = np.moveaxis(data, 2, 0)  # (Z, X, Y)
    elif view == "coronal":
        stack = np.moveaxis(data, 1, 0)  # (Y, X, Z)
    elif view == "sagittal":
        stack = data  # (X, Y, Z)
    else:
        raise InputError(f"view: expected one of {', '.join(VIEWS)}, got {view!r}")
    # rot90 maps (a, b) -> (b reversed, a): the second in-plane axis points up.
    return np.ascontiguousarray(np.rot90(stack, k=1, axes=(1, 2)), dtype=np.float32)


def tissue_fraction(image: np.ndarray, threshold: float | None = None) -> float:
    """Fraction of pixels of ``image`` strictly above ``threshold``.

    Args:
        image: (H, W) real image.
        threshold: intensity threshold; ``None`` uses 0.1 * the image maximum.

    Returns:
        Fraction in [0, 1]; 0.0 for an all-zero image.
    """
    image = np.asarray(image)
    if image.size == 0:
        return 0.0
    if threshold is None:
        peak = float(np.max(image))
        if peak <= 0:
            return 0.0
        threshold = 0.1 * peak
    return float(np.count_nonzero(image > threshold)) / float(image.size)


def select_tissue_slices(
    stack: np.ndarray, min_tissue: float, relative_threshold: float = 0.1
) -> list[int]:
    """Indices of slices with at least ``min_tissue`` of their pixels counted as tissue.

    A pixel is tissue when it exceeds ``relative_threshold`` times the maximum of the whole
    stack (so nearly empty end slices of a volume are rejected).

    Args:
        stack: (N, H, W) real slices.
        min_tissue: minimum tissue fraction in [0, 1]; 0 keeps every slice.
        relative_threshold: tissue threshold as a fraction of the stack maximum.

    Returns:
        Sorted slice indices.
    """
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise InputError(f"min_tissue: expected a fraction in [0, 1], got {min_tissue!r}")
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError(f"stack: expected an (N, H, W) array, got shape {stack.shape}")
    if min_tissue <= 0.0 or stack.shape[0] == 0:
        return list(range(stack.shape[0]))
    threshold = relative_threshold * float(np.max(stack))
    fractions = np.mean(stack > threshold, axis=(1, 2))
    return [int(i) for i in np.flatnonzero(fractions >= min_tissue)]


def _slab_counts(n_usable: int, weights: list[float]) -> list[int]:
    """Largest-remainder allocation of ``n_usable`` items to positive weights, each >= 1."""
    total = sum(weights)
    counts = [max(1, math.floor(n_usable * w / total)) for w in weights]
    while sum(counts) > n_usable:
        counts[int(np.argmax(counts))] -= 1
    remainders = [n_usable * w / total - c for w, c in zip(weights, counts, strict=True)]
    for i in np.argsort(remainders)[::-1]:
        if sum(counts) >= n_usable:
            break
        counts[int(i)] += 1
    return counts


def split_slabs(
    indices: Sequence[int],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    gap: int = 2,
) -> dict[str, list[int]]:
    """Split slice positions into contiguous, spatially disjoint train/val/test slabs.

    Slabs follow the slice order (train lowest, test highest). Between neighbouring non-empty
    slabs at least ``gap`` slice positions are skipped, counted in the original slice index:
    ``min(next) - max(previous) - 1 >= gap``. A zero fraction gives an empty slab; the last
    non-empty slab takes any slices left over.

    Args:
        indices: original slice indices (e.g. those with enough tissue); duplicates are dropped.
        fractions: relative sizes of train, val and test (non-negative, normalised to sum 1).
        gap: minimum number of slice positions between neighbouring slabs.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` with sorted indices.
    """
    if len(fractions) != 3:
        raise InputError(f"fractions: expected 3 values (train, val, test), got {fractions!r}")
    fr = [float(f) for f in fractions]
    if any(not math.isfinite(f) or f < 0 for f in fr) or sum(fr) <= 0:
        raise InputError(
            f"fractions: expected non-negative values with a positive sum, got {fractions!r}"
        )
    if int(gap) != gap or gap < 0:
        raise InputError(f"gap: expected a non-negative integer, got {gap!r}")
    gap = int(gap)
    positions = sorted({int(i) for i in indices})
    active = [k for k, f in enumerate(fr) if f > 0]
    # Start from the fewest usable slices (contiguous indices lose `gap` per boundary) and grow
    # while the walk still fits: sparse indices lose fewer slices to the gaps.
    n_start = max(len(active), len(positions) - gap * (len(active) - 1))
    best: list[list[int]] | None = None
    for n_try in range(n_start, len(positions) + 1):
        walked = _walk_slabs(positions, _slab_counts(n_try, [fr[k] for k in active]), gap)
        if walked is None:
            break
        best = walked
    if best is None:
        raise InputError(
            f"split_slabs: too few slices ({len(positions)}) for {len(active)} slab(s) with "
            f"gap={gap} slice positions between slabs; need at least "
            f"{len(active) + gap * (len(active) - 1)} consecutive slices (use more slices, a "
            "smaller gap, or zero fractions for unused splits)"
        )
    slabs: dict[str, list[int]] = {name: [] for name in SLAB_NAMES}
    for k, chosen in zip(active, best, strict=True):
        slabs[SLAB_NAMES[k]] = chosen
    return slabs


def _walk_slabs(positions: list[int], counts: list[int], gap: int) -> list[list[int]] | None:
    """Take ``counts`` consecutive positions per slab, skipping ``gap`` positions between slabs.

    The last slab takes every remaining position; ``None`` when some slab would be short.
    """
    chosen: list[list[int]] = []
    cursor = 0
    for j, count in enumerate(counts):
        if j > 0:
            last = chosen[-1][-1]
            while cursor < len(positions) and positions[cursor] - last - 1 < gap:
                cursor += 1
        end = len(positions) if j == len(counts) - 1 else cursor + count
        if end - cursor < count or end > len(positions):
            return None
        chosen.append(positions[cursor:end])
        cursor = end
    return chosen


def _check_shape(shape: Sequence[int], field: str = "shape") -> tuple[int, int]:
    if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
        raise InputError(f"{field}: expected two positive integers (H, W), got {shape!r}")
    return int(shape[0]), int(shape[1])


def fit_to_shape(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Center-crop and/or zero-pad the last two axes of ``image`` to exactly ``shape``.

    The kept window starts at ``(size - target) // 2`` (fastMRI's center-crop convention); padding
    puts ``(target - size) // 2`` zeros before the image.

    Args:
        image: (..., H, W) array of any dtype.
        shape: target (H, W).

    Returns:
        (..., shape[0], shape[1]) array with the dtype of ``image``.
    """
    th, tw = _check_shape(shape)
    image = np.asarray(image)
    if image.ndim < 2:
        raise InputError(f"image: expected at least 2 dimensions (H, W), got shape {image.shape}")
    out = image
    for axis, target in ((-2, th), (-1, tw)):
        size = out.shape[axis]
        if size > target:
            start = (size - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif size < target:
            before = (target - size) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, target - size - before)
            out = np.pad(out, pad)
    return np.ascontiguousarray(out)


def resize_to_shape(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Scale a 2D image to fit inside ``shape`` keeping its aspect ratio, then pad/crop to it.

    Uses linear interpolation (``scipy.ndimage.zoom(order=1)``) with one scale factor
    ``min(shape[0] / H, shape[1] / W)``, then :func:`fit_to_shape`.

    Args:
        image: (H, W) real image.
        shape: target (H, W).

    Returns:
        (shape[0], shape[1]) float32 image.
    """
    th, tw = _check_shape(shape)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"image: expected a 2D (H, W) array, got shape {image.shape}")
    h, w = image.shape
    if (h, w) == (th, tw):
        return image.copy()
    scale = min(th / h, tw / w)
    if not math.isclose(scale, 1.0):
        image = ndimage.zoom(image, scale, order=1).astype(np.float32, copy=False)
    return fit_to_shape(image, (th, tw)).astype(np.float32, copy=False)


def normalize_magnitude(image: np.ndarray) -> np.ndarray:
    """Normalise magnitude image(s) to [0, 1], slice by slice.

    Takes the magnitude of complex input, clips each slice to [0, p], where p is its
    99.9th-percentile intensity (its maximum when that percentile is 0), and divides by p, so
    the maximum of every non-empty slice is exactly 1. All-zero slices stay zero.

    Args:
        image: (H, W) or (..., H, W) real or complex array with finite values.

    Returns:
        float32 array of the same shape with values in [0, 1].
    """
    arr = np.asarray(image)
    if arr.ndim < 2:
        raise InputError(f"image: expected at least 2 dimensions (H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise InputError(f"image: expected a numeric array, got dtype {arr.dtype}")
    arr = np.abs(arr) if np.iscomplexobj(arr) else arr
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise InputError("image: contains NaN or Inf values; expected finite intensities")
    if arr.size == 0:
        return arr
    arr = np.maximum(arr, 0.0)
    peak = np.percentile(arr, CLIP_PERCENTILE, axis=(-2, -1), keepdims=True).astype(np.float32)
    peak = np.where(peak > 0, peak, np.max(arr, axis=(-2, -1), keepdims=True))
    safe = np.where(peak > 0, peak, 1.0).astype(np.float32)
    out = np.minimum(arr, safe) / safe
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
