"""Evaluation samples from the measured k-space of fastMRI HDF5 files.

Unlike :mod:`punmri.data.simulate`, which builds an acquisition from a magnitude image, this module
keeps each file's own coil data (its phase, coil sensitivities and noise) and brings it to the run's
geometry. Per slice:

1. coil images ``x_c`` = centered orthonormal inverse FFT of the file's k-space ``(C, H, W)``
   (single-coil files: ``C = 1``);
2. center crop to the file's reconstruction size (:attr:`FastMRISlice.crop`, e.g. 320x320), which
   removes the readout oversampling;
3. resample the complex coil images to fit ``cfg.data.image_size`` with the aspect ratio kept (real
   and imaginary parts zoomed with ``scipy.ndimage.zoom(order=1)``, then center crop/zero pad). This
   changes the pixel size and field of view to the run's: a 320x320 knee crop shown on a 112x96
   grid becomes a 96x96 image (about 3.3x coarser pixels) padded with 8 empty rows on each side;
4. fully sampled k-space at the new size = ``fft2c`` of the coil images; coil maps ``S_c`` by
   ESPIRiT (:func:`punmri.physics.espirit_maps`) from that fully sampled k-space, calibration width
   :func:`calib_width`; single-coil data gets maps of ones;
5. reference ``target = sum_c conj(S_c) x_c`` (complex SENSE combination). ESPIRiT maps have unit
   norm over coils where they are not cropped, so this is the object (phase relative to coil 0)
   and its magnitude approximately equals the root-sum-of-squares image (exactly where
   ``x_c = S_c m``);
6. scale k-space and target by one factor so that ``max |target| = 1``;
7. retrospective undersampling with the run's physics: the mask of slice ``i`` of file ``f`` is
   ``sampling_mask(cfg.physics.mask_kind, size, cfg.physics.acceleration, ...)`` seeded from
   ``np.random.default_rng([seed, suite_seed(f), i])``, and ``kspace *= mask``. No simulated
   noise is added (``cfg.physics.snr_db`` is ignored): the raw data carries its own.

The coil count is the file's (``cfg.physics.coils`` is not used). The k-space handed out is the
measured data, not ``F S target``: wherever the ESPIRiT maps do not explain the coil images (map
cropping, noise, model error) the data keeps that mismatch, as a real acquisition does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from punmri.config import RunConfig
from punmri.data.anatomy import evenly_spaced
from punmri.data.batches import suite_seed
from punmri.data.fastmri import FastMRISlice, read_fastmri
from punmri.data.simulate import Sample
from punmri.data.volumes import fit_to_shape
from punmri.errors import InputError
from punmri.physics import espirit_maps, fft2c_numpy, ifft2c_numpy, sampling_mask

KSPACE_SUFFIXES: tuple[str, ...] = (".h5",)
"""File-name suffixes (lower case) recognised as fastMRI k-space files."""

MAX_CALIB_WIDTH = 24
"""ESPIRiT calibration width used for images of 96 pixels and more (fastMRI's usual value)."""

MIN_CALIB_WIDTH = 12
"""Smallest ESPIRiT calibration width (sigpy's kernel is 6 wide; the region must hold several)."""


def is_kspace_source(path: str | Path) -> bool:
    """True for an existing ``.h5`` file, or a folder that directly contains ``.h5`` files.

    Only the name is checked, so a damaged ``.h5`` file is still routed here and reported by
    :func:`fastmri_samples` with a clear :class:`~punmri.errors.InputError`.
    """
    path = Path(path)
    if path.is_file():
        return _is_h5_name(path)
    if path.is_dir():
        return bool(_h5_files(path))
    return False


def calib_width(shape: tuple[int, int]) -> int:
    """ESPIRiT calibration width for an image of ``shape`` (H, W) pixels.

    ``min(H, W) // 4`` clamped to [:data:`MIN_CALIB_WIDTH`, :data:`MAX_CALIB_WIDTH`] and to the
    image: 24 at 112x96 (the usual fastMRI value at full size), 12 for tiny test images.
    """
    side = min(int(shape[0]), int(shape[1]))
    return min(MAX_CALIB_WIDTH, max(MIN_CALIB_WIDTH, side // 4), side)


def resize_coil_images(images: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Scale complex coil images to fit ``shape`` keeping the aspect ratio, then crop/pad to it.

    Real and imaginary parts are zoomed separately with linear interpolation
    (``scipy.ndimage.zoom(order=1)``) by one factor ``min(shape[0] / h, shape[1] / w)``, then
    :func:`~punmri.data.volumes.fit_to_shape` center-crops/zero-pads to exactly ``shape``.

    Args:
        images: (C, h, w) complex coil images.
        shape: target (H, W) in pixels.

    Returns:
        (C, H, W) complex64 coil images.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise InputError(f"coil images: expected a (C, H, W) array, got shape {images.shape}")
    h, w = images.shape[1:]
    scale = min(shape[0] / h, shape[1] / w)
    if not np.isclose(scale, 1.0):
        factors = (1.0, scale, scale)
        real = ndimage.zoom(images.real.astype(np.float32), factors, order=1)
        imag = ndimage.zoom(images.imag.astype(np.float32), factors, order=1)
        images = real + 1j * imag
    return fit_to_shape(images, shape).astype(np.complex64, copy=False)


def slice_sample(slice_: FastMRISlice, cfg: RunConfig, mask_seed: int) -> Sample:
    """One evaluation :class:`~punmri.data.simulate.Sample` from a slice's measured k-space.

    Follows steps 1-7 of the module docstring at ``cfg.data.image_size`` (H, W).

    Args:
        slice_: a slice read by :func:`punmri.data.fastmri.read_fastmri`.
        cfg: run configuration (image size and sampling physics).
        mask_seed: integer seed of the sampling mask.

    Returns:
        Sample with ``target`` (H, W) complex64 (max magnitude 1), ``kspace`` (C, H, W)
        complex64 (zero where not sampled), ``maps`` (C, H, W) complex64, ``mask`` (H, W) bool and
        ``name`` the slice name (e.g. ``file1000001.h5:slice:007``).
    """
    shape = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    coils = ifft2c_numpy(slice_.kspace)
    crop = (min(slice_.crop[0], coils.shape[1]), min(slice_.crop[1], coils.shape[2]))
    coils = resize_coil_images(fit_to_shape(coils, crop), shape)
    full = fft2c_numpy(coils)
    if coils.shape[0] == 1:
        maps = np.ones(coils.shape, dtype=np.complex64)
    else:
        maps = espirit_maps(full, calib_width=calib_width(shape))
        maps = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0).astype(np.complex64)
    target = np.sum(np.conj(maps) * coils, axis=0)
    peak = float(np.max(np.abs(target)))
    if not peak > 0 or not np.isfinite(peak):
        raise InputError(
            f"{slice_.name}: the coil-combined image is empty after cropping to {crop} and "
            f"resizing to {shape}; expected a slice with signal"
        )
    physics = cfg.physics
    mask = sampling_mask(
        physics.mask_kind,
        shape,
        physics.acceleration,
        center_fraction=physics.center_fraction,
        seed=mask_seed,
    ).mask
    kspace = (full / peak) * mask[None]
    return Sample(
        target=(target / peak).astype(np.complex64),
        kspace=kspace.astype(np.complex64),
        maps=maps,
        mask=np.ascontiguousarray(mask, dtype=bool),
        name=slice_.name,
    )


def fastmri_samples(
    path: str | Path, cfg: RunConfig, seed: int, max_slices: int = 0
) -> list[Sample]:
    """Evaluation samples from the measured k-space of fastMRI file(s), at the run's image size.

    Args:
        path: a fastMRI ``.h5`` file (single- or multi-coil), or a folder whose ``.h5`` files are
            read in sorted name order.
        cfg: run configuration: ``data.image_size`` and ``physics`` (mask kind, acceleration,
            center fraction) are used.
        seed: evaluation seed (e.g. ``cfg.evaluate.test_seed``); slice ``i`` of file ``f`` draws
            its mask from ``np.random.default_rng([seed, suite_seed(f), i])``, so a slice gets the
            same mask whatever else is read with it.
        max_slices: at most this many evenly spaced slices per file; 0 reads all.

    Returns:
        One :class:`~punmri.data.simulate.Sample` per slice (see :func:`slice_sample`), files in
        order, slices in file order. Unreadable files raise :class:`~punmri.errors.InputError`.
    """
    if isinstance(max_slices, bool) or not isinstance(max_slices, (int, np.integer)):
        raise InputError(f"max_slices: expected a non-negative integer, got {max_slices!r}")
    if max_slices < 0:
        raise InputError(f"max_slices: expected a non-negative integer (0 = all), got {max_slices}")
    samples: list[Sample] = []
    for file in _files(Path(path)):
        for index in evenly_spaced(list(range(_slice_count(file))), int(max_slices)):
            (slice_,) = read_fastmri(file, slice(index, index + 1))
            rng = np.random.default_rng([int(seed), suite_seed(file.name), index])
            samples.append(slice_sample(slice_, cfg, int(rng.integers(2**31 - 1))))
    return samples


def _is_h5_name(path: Path) -> bool:
    return path.name.lower().endswith(KSPACE_SUFFIXES) and not path.name.startswith(".")


def _h5_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _is_h5_name(p))


def _files(path: Path) -> list[Path]:
    """The fastMRI files named by ``path``: the file itself, or a folder's ``.h5`` files."""
    if not path.exists():
        raise InputError(f"{path}: file or folder not found (expected a fastMRI .h5 file)")
    if path.is_dir():
        files = _h5_files(path)
        if not files:
            raise InputError(f"{path}: folder holds no .h5 files (expected fastMRI HDF5 files)")
        return files
    return [path]


def _slice_count(path: Path) -> int:
    """Number of slices of a fastMRI file (validated by :func:`read_fastmri` first)."""
    import h5py

    read_fastmri(path, slice(0, 0))  # raises a clear InputError for bad files
    try:
        with h5py.File(path, "r") as fh:
            return int(fh["kspace"].shape[0])
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the 'kspace' dataset shape ({exc})") from exc
