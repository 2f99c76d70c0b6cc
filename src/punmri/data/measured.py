"""Measured multi-coil k-space as a run's data: ``data.source: fastmri`` with ``data.root``.

``data.root`` holds ``train/``, ``val/`` and ``test/`` folders of fastMRI-format files (real ones,
or ``punmri data synth``). The first use prepares the folder (``punmri data prepare``: validation,
de-oversampled k-space, ESPIRiT maps and an index in ``data.cache``, default
``ROOT/.punmri-cache``); later runs find it prepared and only check the files' stamps.

Training slices are read and undersampled on demand (:class:`MeasuredSlices`, a
:class:`~punmri.data.batches.SliceSource`); validation and test suites are lazy sequences of
samples with one fixed mask per volume (:class:`LazySamples`), so memory does not grow with the
data. Everything is at the data's native resolution, in image-scale units (:func:`normalised`);
measured slices are not augmented.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..config import DataConfig, PhysicsConfig
from ..errors import InputError
from ..physics.fft import ifft2c_numpy
from .kspace_dataset import KSpaceDataset
from .prepare import prepare_folder
from .prepared_index import default_cache
from .simulate import Sample

#: Splits a ``data.root`` folder must hold.
SPLITS = ("train", "val", "test")
#: Sampling patterns that exist for measured Cartesian k-space (fastMRI's mask functions).
MEASURED_MASK_KINDS = ("random", "equispaced")


def prepared_root(folder: str | Path, cache: str = "", progress: bool = False) -> Path:
    """Prepare ``folder`` (resumable: files already prepared and unchanged are skipped) and return
    its cache folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"data.root {folder} is not a folder of fastMRI .h5 files")
    cache_dir = Path(cache) if cache else None
    prepare_folder(folder, cache=cache_dir, workers=1, skip_bad=False, progress=progress)
    return cache_dir if cache_dir is not None else default_cache(folder)


def measured_dataset(
    folder: str | Path,
    cache: str | Path,
    split: str | None,
    physics: PhysicsConfig,
    seed: int,
    fixed_masks: bool,
    where: str = "physics",
) -> KSpaceDataset:
    """The :class:`KSpaceDataset` of ``split`` of a prepared ``folder`` with the sampling of
    ``physics`` (``mask_kind``, ``accelerations``/``center_fractions``, else the scalar
    ``acceleration``/``center_fraction``)."""
    if physics.mask_kind not in MEASURED_MASK_KINDS:
        raise InputError(
            f"{where}.mask_kind: {physics.mask_kind!r} cannot undersample measured Cartesian "
            f"k-space; use one of {list(MEASURED_MASK_KINDS)}"
        )
    accelerations = physics.accelerations or (physics.acceleration,)
    fractions = physics.center_fractions or (physics.center_fraction,) * len(accelerations)
    return KSpaceDataset(
        folder,
        cache=cache,
        split=split,
        mask_kind=physics.mask_kind,
        center_fractions=fractions,
        accelerations=accelerations,
        seed=seed,
        fixed_masks=fixed_masks,
    )


def normalised(sample: Sample) -> Sample:
    """``sample`` in image-scale units: k-space and target divided by the 99th percentile of
    the magnitude of its zero-filled SENSE image (computed from the undersampled data only, so
    nothing of the reference leaks), kept in ``extras["scale"]`` to bring reconstructions back to
    the reference's units for scoring. Measured k-space comes in arbitrary scanner units
    (fastMRI: about 1e-4); the networks are initialised for images of order 1."""
    zero_filled = np.sum(np.conj(sample.maps) * ifft2c_numpy(sample.kspace), axis=0)
    scale = float(np.percentile(np.abs(zero_filled), 99))
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"{sample.name}: the undersampled k-space is empty or not finite")
    return Sample(
        target=(sample.target / scale).astype(np.complex64),
        kspace=(sample.kspace / scale).astype(np.complex64),
        maps=sample.maps,
        mask=sample.mask,
        name=sample.name,
        extras={**sample.extras, "scale": scale},
    )


class MeasuredSlices:
    """Training slices of a :class:`KSpaceDataset` as a slice source: ``physics.fresh`` False
    keeps each slice's mask of the first epoch for the whole run."""

    def __init__(self, dataset: KSpaceDataset, fresh: bool) -> None:
        self.dataset = dataset
        self.fresh = fresh
        self.names = [dataset.name(i) for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int, epoch: int) -> Sample:
        """Slice ``index`` undersampled with its mask of ``epoch``."""
        return normalised(self.dataset.sample(index, epoch if self.fresh else 0))


class LazySamples(Sequence[Sample]):
    """The samples of whole volumes of a fixed-mask dataset, read on access: the first volumes
    (in index order) until ``limit`` slices are reached (0 = all), so per-volume metrics see
    complete volumes."""

    def __init__(self, dataset: KSpaceDataset, limit: int = 0) -> None:
        self.dataset = dataset
        indices: list[int] = []
        for i in range(len(dataset)):
            starts_volume = i == 0 or dataset.entry(i) is not dataset.entry(i - 1)
            if limit > 0 and len(indices) >= limit and starts_volume:
                break
            indices.append(i)
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        if isinstance(i, slice):
            return [normalised(self.dataset.sample(j)) for j in self.indices[i]]  # type: ignore[return-value]
        return normalised(self.dataset.sample(self.indices[i]))

    def __iter__(self) -> Iterator[Sample]:
        return (normalised(self.dataset.sample(j)) for j in self.indices)


def describe_kspace_file(path: str | Path) -> str:
    """One line on a fastMRI file, read from its header and dataset shapes (no k-space read):
    slices, coils, k-space size, reconstruction size, acquired columns, acquisition, whether it
    holds a reference reconstruction and a stored mask (test split)."""
    import h5py

    from .fastmri import parse_ismrmrd_header

    path = Path(path)
    try:
        with h5py.File(path, "r") as fh:
            if "kspace" not in fh:
                raise InputError(f"{path}: no 'kspace' dataset (not a fastMRI file)")
            shape = fh["kspace"].shape
            header = (
                parse_ismrmrd_header(fh["ismrmrd_header"][()]) if "ismrmrd_header" in fh else None
            )
            acquisition = fh.attrs.get("acquisition", "")
            target = next(
                (k for k in ("reconstruction_rss", "reconstruction_esc") if k in fh), None
            )
            stored_mask = "mask" in fh
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    if isinstance(acquisition, bytes):
        acquisition = acquisition.decode(errors="replace")
    header = header or {}
    recon = header.get("recon_size", (320, 320, 1))[:2]
    coils = f"{shape[1]} coils" if len(shape) == 4 else "single-coil"
    limits = header.get("limits")
    columns = ""
    if limits is not None:
        left = shape[-1] // 2 - limits[2]
        columns = f", columns [{left}, {left + limits[1] + 1})"
    sampling = "stored mask (test split)" if stored_mask else "fully sampled"
    return (
        f"{path.name}: {shape[0]} slices, {coils}, k-space {shape[-2]}x{shape[-1]}, recon "
        f"{recon[0]}x{recon[1]}{columns}, {acquisition or 'no acquisition attr'}; "
        f"reference: {target or 'none'}; {sampling}"
        + ("" if header else "; no readable ISMRMRD header")
    )


def check_root(cfg: DataConfig) -> Path:
    """``data.root`` as a path, after checking it holds the three split folders."""
    root = Path(cfg.root)
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise InputError(
            f"data.root {root}: expected folders {', '.join(SPLITS)} of fastMRI .h5 files; "
            f"missing {', '.join(missing)} (make a test set with `punmri data synth --out DIR`)"
        )
    return root


__all__ = [
    "MEASURED_MASK_KINDS",
    "describe_kspace_file",
    "LazySamples",
    "MeasuredSlices",
    "check_root",
    "measured_dataset",
    "prepared_root",
]
