"""Samples from the measured k-space of fastMRI HDF5 files, at the files' native resolution.

Unlike :mod:`punmri.data.simulate`, which builds an acquisition from a magnitude image, this module
keeps each file's own coil data (its phase, coil sensitivities, noise and geometry), with fastMRI's
conventions (as :mod:`punmri.data.prepare` does for measured training data). Per slice:

1. readout oversampling removed: :func:`~punmri.data.prepare.remove_readout_oversampling` keeps
   the central ``h`` image rows, ``h`` the file's reconstruction height
   (:attr:`FastMRISlice.crop`); all ``W`` phase-encode columns are kept, so k-space is
   ``(C, h, W)`` (single-coil files: ``C = 1``);
2. coil maps ``S_c`` by ESPIRiT (:func:`punmri.physics.espirit_maps`) on that k-space, calibrated
   on the widest centred block of fully sampled columns
   (:func:`~punmri.data.prepare.calibration_width`, at most 24); single-coil data gets maps of ones;
3. reference ``target = sum_c conj(S_c) ifft2c(k_c)`` ``(h, W)``, the SENSE combination of the
   fully sampled k-space (what MoDL reproduces);
4. retrospective undersampling with the run's physics, one column mask for every row. Mask kinds
   ``random``/``equispaced`` use :func:`~punmri.physics.sampling.fastmri_mask` over the columns
   that hold data (fastMRI's acquired columns; zero-padded columns are never sampled); the other
   kinds (``gaussian1d``, ``poisson2d``, ``radial``) use
   :func:`~punmri.physics.sampling.sampling_mask` on ``(h, W)``. Slice ``i`` of file ``f`` is
   seeded from ``np.random.default_rng([seed, suite_seed(f), i])``, and ``kspace *= mask``. No
   simulated noise is added (``cfg.physics.snr_db`` is ignored): the raw data carries its own;
5. ``extras``: ``rss`` the file's stored reconstruction (``reconstruction_rss``/``_esc``, or the
   RSS crop when it has none), ``volume`` the file name, ``max`` the file's ``max`` attribute (or
   ``None``); then :func:`punmri.data.measured.normalised` divides k-space and target by the 99th
   percentile of the zero-filled image's magnitude (undersampled data only) and keeps that factor
   as ``extras["scale"]``. The evaluation scores ``|recon| * scale``, centre-cropped, against
   ``rss`` with ``max`` as the data range, per slice and per volume, as fastMRI does.

The coil count and image size are the file's (``cfg.physics.coils`` and ``cfg.data.image_size``
are not used). The k-space handed out is the measured data, not ``F S target``: wherever the
ESPIRiT maps do not explain the coil images the data keeps that mismatch, as a real acquisition
does. Test-split files (a stored ``mask``, no reference reconstruction) cannot be scored and are
refused; :func:`acquired_sample` serves any file with its own sampling for ``punmri recon``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from punmri.config import RunConfig
from punmri.data.anatomy import evenly_spaced
from punmri.data.batches import suite_seed
from punmri.data.fastmri import FastMRISlice, read_fastmri
from punmri.data.measured import normalised
from punmri.data.prepare import MIN_CALIB_WIDTH, calibration_width, remove_readout_oversampling
from punmri.data.simulate import Sample
from punmri.errors import InputError
from punmri.physics import espirit_maps, ifft2c_numpy, sampling_mask
from punmri.physics.sampling import FASTMRI_MASK_KINDS, fastmri_mask

KSPACE_SUFFIXES: tuple[str, ...] = (".h5",)
"""File-name suffixes (lower case) recognised as fastMRI k-space files."""


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


def native_kspace(slice_: FastMRISlice) -> np.ndarray:
    """The slice's k-space without readout oversampling: ``(C, h, W)`` complex64.

    ``h`` is the reconstruction height ``slice_.crop[0]`` (at most the stored readout length);
    the phase-encode width ``W`` is kept whole, zero-padded columns included.
    """
    height = min(int(slice_.crop[0]), int(slice_.kspace.shape[-2]))
    return remove_readout_oversampling(slice_.kspace, height)


def data_columns(kspace: np.ndarray) -> np.ndarray:
    """``(W,)`` bool: the phase-encode columns of ``kspace`` ``(C, H, W)`` that hold data."""
    return np.abs(kspace).sum(axis=(0, 1)) > 0


def is_test_split(slice_: FastMRISlice, columns: np.ndarray) -> bool:
    """Whether a slice comes from a file without a usable reference (fastMRI's test split).

    True when the file stores its sampling ``mask``, or when its target was computed
    (``attrs["target_source"] == "computed"``) from k-space whose data columns ``columns`` (W,)
    have gaps, i.e. from undersampled data.
    """
    if slice_.mask is not None:
        return True
    filled = np.flatnonzero(columns)
    gaps = filled.size > 0 and filled[-1] - filled[0] + 1 != filled.size
    return slice_.attrs.get("target_source") == "computed" and bool(gaps)


def coil_maps(kspace: np.ndarray, sampled: np.ndarray, name: str) -> np.ndarray:
    """ESPIRiT maps ``(C, H, W)`` complex64 of ``kspace`` ``(C, H, W)``; ones for one coil.

    Calibrated on the widest centred block of ``sampled`` ``(W,)`` columns
    (:func:`~punmri.data.prepare.calibration_width`, at most 24 and at most ``H``); empty regions,
    where ESPIRiT gives non-finite values, get 0. ``name`` names the slice in errors.
    """
    if kspace.shape[0] == 1:
        return np.ones(kspace.shape, dtype=np.complex64)
    calib = min(calibration_width(sampled), int(kspace.shape[-2]))
    if calib < MIN_CALIB_WIDTH:
        raise InputError(
            f"{name}: only {calib} fully sampled centre columns; ESPIRiT coil maps need at least "
            f"{MIN_CALIB_WIDTH}"
        )
    maps = espirit_maps(kspace, calib_width=calib)
    return np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0).astype(np.complex64, copy=False)


def _sense_image(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``sum_c conj(S_c) ifft2c(k_c)``, ``(H, W)`` complex64."""
    return np.sum(np.conj(maps) * ifft2c_numpy(kspace), axis=0).astype(np.complex64)


def _file_name(slice_: FastMRISlice) -> str:
    return Path(str(slice_.attrs.get("file", slice_.name.split(":")[0]))).name


def _volume_max(slice_: FastMRISlice) -> float | None:
    """The file's ``max`` attribute as a positive finite float, else ``None``."""
    try:
        value = float(slice_.attrs["max"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _column_mask(
    cfg: RunConfig, shape: tuple[int, int], columns: np.ndarray, mask_seed: int
) -> np.ndarray:
    """``(h, W)`` bool retrospective mask of the run's physics (step 4 of the module docstring)."""
    physics = cfg.physics
    if physics.mask_kind in FASTMRI_MASK_KINDS:
        filled = np.flatnonzero(columns)
        cols = fastmri_mask(
            shape[1],
            physics.mask_kind,
            (physics.center_fraction,),
            (physics.acceleration,),
            np.random.default_rng(mask_seed),
            acquired=(int(filled[0]), int(filled[-1]) + 1),
        )
        return np.ascontiguousarray(np.broadcast_to(cols > 0, shape))
    return sampling_mask(
        physics.mask_kind,
        shape,
        physics.acceleration,
        center_fraction=physics.center_fraction,
        seed=mask_seed,
    ).mask


def slice_sample(slice_: FastMRISlice, cfg: RunConfig, mask_seed: int) -> Sample:
    """One evaluation :class:`~punmri.data.simulate.Sample` from a slice's measured k-space.

    Follows steps 1-5 of the module docstring.

    Args:
        slice_: a slice read by :func:`punmri.data.fastmri.read_fastmri` from a file that holds a
            reference reconstruction (not a test-split file).
        cfg: run configuration (the sampling physics: mask kind, acceleration, centre fraction).
        mask_seed: integer seed of the sampling mask.

    Returns:
        Sample in image-scale units with ``target`` (h, W) complex64, ``kspace`` (C, h, W)
        complex64 (zero where not sampled), ``maps`` (C, h, W) complex64, ``mask`` (h, W) bool,
        ``name`` the slice name (e.g. ``file1000001.h5:slice:007``) and ``extras`` ``rss``
        (crop_h, crop_w) float32, ``volume``, ``max`` and ``scale``.

    Raises:
        InputError: a test-split file, a slice without data, or too few centre columns for ESPIRiT.
    """
    file = _file_name(slice_)
    kspace = native_kspace(slice_)
    columns = data_columns(kspace)
    if is_test_split(slice_, columns):
        raise InputError(
            f"{slice_.attrs.get('file', file)}: has no reference reconstruction (a test-split "
            "file); use punmri recon to reconstruct it"
        )
    if not columns.any():
        raise InputError(f"{slice_.name}: the k-space is all zero; expected a slice with signal")
    maps = coil_maps(kspace, columns, slice_.name)
    target = _sense_image(kspace, maps)
    mask = _column_mask(cfg, (kspace.shape[1], kspace.shape[2]), columns, mask_seed)
    sample = Sample(
        target=target,
        kspace=(kspace * mask[None]).astype(np.complex64),
        maps=maps,
        mask=mask,
        name=slice_.name,
        extras={
            "rss": np.asarray(slice_.target, dtype=np.float32),
            "volume": file,
            "max": _volume_max(slice_),
        },
    )
    return normalised(sample)


def acquired_sample(slice_: FastMRISlice) -> Sample:
    """A slice with the file's own sampling, in image-scale units, to reconstruct as acquired.

    Readout oversampling removed (:func:`native_kspace`); the sampled columns are the file's stored
    ``mask`` (test split) or else the columns that hold data; ESPIRiT maps calibrated on the fully
    sampled centre of those columns (:func:`coil_maps`). There may be no reference, so ``target``
    is the zero-filled SENSE image. Scaled by :func:`punmri.data.measured.normalised`: multiply a
    reconstruction by ``extras["scale"]`` to bring it back to the file's units.

    Returns:
        Sample with ``kspace``/``maps`` (C, h, W) complex64, ``mask`` (h, W) bool, ``target``
        (h, W) complex64 and ``extras["scale"]``.
    """
    kspace = native_kspace(slice_)
    columns = data_columns(kspace) if slice_.mask is None else np.asarray(slice_.mask) > 0
    if not columns.any():
        raise InputError(f"{slice_.name}: no sampled k-space columns; expected a slice with data")
    mask = np.ascontiguousarray(np.broadcast_to(columns, kspace.shape[1:]))
    kspace = (kspace * mask[None]).astype(np.complex64)
    maps = coil_maps(kspace, columns, slice_.name)
    sample = Sample(
        target=_sense_image(kspace, maps), kspace=kspace, maps=maps, mask=mask, name=slice_.name
    )
    return normalised(sample)


def fastmri_samples(
    path: str | Path, cfg: RunConfig, seed: int, max_slices: int = 0
) -> list[Sample]:
    """Evaluation samples from the measured k-space of fastMRI file(s), at native resolution.

    Args:
        path: a fastMRI ``.h5`` file (single- or multi-coil) with a reference reconstruction, or a
            folder whose ``.h5`` files are read in sorted name order.
        cfg: run configuration: ``physics`` (mask kind, acceleration, center fraction) is used.
        seed: evaluation seed (e.g. ``cfg.evaluate.test_seed``); slice ``i`` of file ``f`` draws
            its mask from ``np.random.default_rng([seed, suite_seed(f), i])``, so a slice gets the
            same mask whatever else is read with it.
        max_slices: at most this many evenly spaced slices per file; 0 reads all.

    Returns:
        One :class:`~punmri.data.simulate.Sample` per slice (see :func:`slice_sample`), files in
        order, slices in file order. Unreadable and test-split files raise
        :class:`~punmri.errors.InputError`.
    """
    if isinstance(max_slices, bool) or not isinstance(max_slices, (int, np.integer)):
        raise InputError(f"max_slices: expected a non-negative integer, got {max_slices!r}")
    if max_slices < 0:
        raise InputError(f"max_slices: expected a non-negative integer (0 = all), got {max_slices}")
    samples: list[Sample] = []
    for file in _files(Path(path)):
        for index in evenly_spaced(list(range(slice_count(file))), int(max_slices)):
            (slice_,) = read_fastmri(file, slice(index, index + 1))
            rng = np.random.default_rng([int(seed), suite_seed(file.name), index])
            samples.append(slice_sample(slice_, cfg, int(rng.integers(2**31 - 1))))
    return samples


def slice_count(path: str | Path) -> int:
    """Number of slices of a fastMRI file (validated by :func:`read_fastmri` first)."""
    import h5py

    path = Path(path)
    read_fastmri(path, slice(0, 0))  # raises a clear InputError for bad files
    try:
        with h5py.File(path, "r") as fh:
            return int(fh["kspace"].shape[0])
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the 'kspace' dataset shape ({exc})") from exc


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
