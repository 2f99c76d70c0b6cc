"""Synthetic fastMRI-format multi-coil brain datasets, written offline.

:func:`synthesize_fastmri` writes ``out/train``, ``out/val`` and ``out/test``, each holding
multi-coil HDF5 files laid out like fastMRI's brain files, so that the measured-k-space pipeline
(``punmri data prepare`` and :class:`~punmri.data.kspace_dataset.KSpaceDataset`) can be exercised
without downloading fastMRI:

- ``kspace``: complex64 ``(slices, coils, 2 * recon_h, W)``, readout (axis -2) 2x oversampled, so
  the object lies in the central half of the readout field of view; phase-encode columns outside
  the header's encoding limits are exactly zero (fastMRI's zero-padded edge columns);
- ``ismrmrd_header``: ISMRMRD XML with ``encodedSpace`` ``(2 * recon_h, W, 1)``, ``reconSpace``
  ``(recon_h, recon_w, 1)`` and ``encodingLimits/kspace_encoding_step_1``;
- ``reconstruction_rss``: float32 ``(slices, recon_h, recon_w)``, the centre crop of the
  root-sum-of-squares of ``ifft2c(kspace)`` computed from the stored (noisy) k-space;
- attributes ``max``, ``norm``, ``acquisition`` and ``patient_id``.

Each file is one "subject". Several source volumes give different subjects directly; a source
used again (e.g. the single Colin27 template) is varied by a random rotation, anisotropic scaling,
smooth elastic warp, slab position, tissue-contrast remapping (monotone piecewise-linear curve and
gamma) and a smooth intensity bias, all drawn from a generator seeded by ``(seed, subject)``.
Every subject also gets its own birdcage-like coil sensitivities
(:func:`~punmri.physics.coils.simulated_coil_maps` on the oversampled grid), a smooth image phase
and coil-correlated complex Gaussian noise at ``snr_db``.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from punmri.data.fastmri import rss_target
from punmri.data.phantoms import phantom_volume
from punmri.data.volumes import COLIN27_PATH, Volume, fit_to_shape, load_volume
from punmri.errors import InputError
from punmri.io import write_json_atomic
from punmri.physics.coils import simulated_coil_maps
from punmri.physics.fft import fft2c_numpy

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
"""XML namespace of the ISMRMRD header."""

SPLITS: tuple[str, str, str] = ("train", "val", "test")
"""Split folders written below the output directory, in subject order."""

FILE_PREFIX = "file_synth_"
"""Names of written files: ``file_synth_<acquisition>_<subject:03d>.h5``."""

MANIFEST_NAME = "synth.json"
"""Per-dataset record of the parameters and of every subject, written last."""

ACQUIRED_FRACTION = 334 / 368
"""Default fraction of phase-encode columns acquired (fastMRI knee: 334 of 368)."""

_PHANTOM = "phantom"
_COLIN27 = "colin27"
_FILL_RANGE = (0.78, 0.9)
"""Fraction of the recon field of view spanned by the head (augmented subjects draw from it)."""
_FILL_DEFAULT = 0.86
_ELASTIC_RMS = 0.03
"""RMS elastic displacement as a fraction of the head radius."""


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize_fastmri` wrote.

    Attributes:
        out: output directory.
        files: split name -> file paths relative to ``out`` (posix), in subject order.
        kspace_shape: per-file k-space shape (slices, coils, H_enc, W).
        recon_size: (recon_h, recon_w), the ``reconstruction_rss`` size.
        acquired: [left, stop) phase-encode columns holding data.
        sources: source of each subject (a NIfTI path or ``"phantom"``), in subject order.
        seconds: wall-clock time of the whole call.
    """

    out: Path
    files: dict[str, list[str]]
    kspace_shape: tuple[int, int, int, int]
    recon_size: tuple[int, int]
    acquired: tuple[int, int]
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (paths as strings, tuples as lists)."""
        return {
            "out": str(self.out),
            "files": {k: list(v) for k, v in self.files.items()},
            "kspace_shape": list(self.kspace_shape),
            "recon_size": list(self.recon_size),
            "acquired": list(self.acquired),
            "sources": list(self.sources),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class _Anatomy:
    """A source volume ready for resampling.

    Attributes:
        data: (X, Y, Z) float32 RAS intensities divided by the 99th percentile of the tissue.
        voxel_mm: (3,) voxel size in mm; voxel index ``i`` sits at ``i * voxel_mm``.
        points_mm: (N, 3) positions (mm) of a subsample of the tissue voxels.
        center_mm: (3,) centre of the tissue bounding box (mm).
        extent_mm: (3,) size of the tissue bounding box (mm).
        source: where the volume came from.
    """

    data: np.ndarray
    voxel_mm: np.ndarray
    points_mm: np.ndarray
    center_mm: np.ndarray
    extent_mm: np.ndarray
    source: str


@dataclass(frozen=True)
class _Subject:
    """One file to write: which split, which source, whether its anatomy is augmented."""

    index: int
    split: str
    name: str
    source: str
    augment: bool


@dataclass(frozen=True)
class _Geometry:
    """Grid sizes shared by every file: recon (h, w), k-space width, acquired columns."""

    recon_h: int
    recon_w: int
    width: int
    left: int
    stop: int

    @property
    def encoded_h(self) -> int:
        """Readout length with 2x oversampling."""
        return 2 * self.recon_h


# --------------------------------------------------------------------------------------------
# Public helpers for the fastMRI header conventions
# --------------------------------------------------------------------------------------------


def encoding_limits(width: int, lines: int) -> tuple[int, int, int]:
    """``kspace_encoding_step_1`` limits (minimum, maximum, center) for ``lines`` centred columns.

    With fastMRI's reading rule (``left = width // 2 - center``, acquired columns
    ``[left, left + maximum + 1)``) the acquired block is centred on column ``width // 2``.

    Args:
        width: number of phase-encode columns W of the stored k-space.
        lines: number of acquired columns, 1 <= lines <= width.

    Returns:
        (0, lines - 1, lines // 2).
    """
    if int(lines) != lines or not 1 <= lines <= width:
        raise InputError(f"acquired lines: expected an integer in [1, {width}], got {lines!r}")
    return 0, int(lines) - 1, int(lines) // 2


def acquired_columns(width: int, maximum: int, center: int) -> tuple[int, int]:
    """fastMRI's acquired phase-encode columns ``[left, stop)`` from the encoding limits.

    Args:
        width: W, the k-space width.
        maximum: ``encodingLimits/kspace_encoding_step_1/maximum``.
        center: ``encodingLimits/kspace_encoding_step_1/center``.

    Returns:
        ``(width // 2 - center, width // 2 - center + maximum + 1)``.
    """
    left = width // 2 - int(center)
    return left, left + int(maximum) + 1


def ismrmrd_header(
    encoded: tuple[int, int],
    recon: tuple[int, int],
    lines: int,
    n_slices: int,
    coils: int,
    pixel_mm: float,
    slice_mm: float,
    protocol: str = "AXT1",
) -> bytes:
    """ISMRMRD XML header of a 2-D Cartesian multi-slice fastMRI-style acquisition.

    Args:
        encoded: (H_enc, W) encoded matrix (readout x, phase encoding y).
        recon: (recon_h, recon_w) reconstruction matrix.
        lines: acquired phase-encode columns (see :func:`encoding_limits`).
        n_slices: number of slices (``encodingLimits/slice``).
        coils: receiver channels.
        pixel_mm: in-plane pixel size (mm), the same along both axes.
        slice_mm: slice spacing (mm), the ``z`` field of view.
        protocol: protocol name (e.g. ``"AXT1"``).

    Returns:
        UTF-8 XML bytes in the ISMRMRD namespace.
    """
    ns = ISMRMRD_NAMESPACE

    def add(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
        node = ET.SubElement(parent, f"{{{ns}}}{tag}")
        if text is not None:
            node.text = str(text)
        return node

    def xyz(parent: ET.Element, tag: str, values: Sequence[object]) -> None:
        node = add(parent, tag)
        for axis, value in zip("xyz", values, strict=True):
            add(node, axis, value)

    def limit(parent: ET.Element, tag: str, maximum: int, center: int) -> None:
        node = add(parent, tag)
        add(node, "minimum", 0)
        add(node, "maximum", maximum)
        add(node, "center", center)

    _, maximum, center = encoding_limits(encoded[1], lines)
    ET.register_namespace("", ns)
    root = ET.Element(f"{{{ns}}}ismrmrdHeader")
    measurement = add(root, "measurementInformation")
    add(measurement, "patientPosition", "HFS")
    add(measurement, "protocolName", protocol)
    system = add(root, "acquisitionSystemInformation")
    add(system, "systemVendor", "punmri")
    add(system, "systemModel", "synthetic")
    add(system, "systemFieldStrength_T", "3.0")
    add(system, "receiverChannels", coils)
    conditions = add(root, "experimentalConditions")
    add(conditions, "H1resonanceFrequency_Hz", 127_740_000)
    encoding = add(root, "encoding")
    for tag, matrix in (("encodedSpace", encoded), ("reconSpace", recon)):
        space = add(encoding, tag)
        xyz(space, "matrixSize", (matrix[0], matrix[1], 1))
        fov = (matrix[0] * pixel_mm, matrix[1] * pixel_mm, slice_mm)
        xyz(space, "fieldOfView_mm", [f"{v:.4f}" for v in fov])
    limits = add(encoding, "encodingLimits")
    limit(limits, "kspace_encoding_step_0", encoded[0] - 1, encoded[0] // 2)
    limit(limits, "kspace_encoding_step_1", maximum, center)
    limit(limits, "kspace_encoding_step_2", 0, 0)
    for tag in ("average", "slice", "contrast", "phase", "repetition", "set", "segment"):
        top = n_slices - 1 if tag == "slice" else 0
        limit(limits, tag, top, top // 2)
    add(encoding, "trajectory", "cartesian")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --------------------------------------------------------------------------------------------
# The dataset writer
# --------------------------------------------------------------------------------------------


def synthesize_fastmri(
    out: str | Path,
    volumes: int = 10,
    slices: int = 16,
    coils: int = 8,
    source: str | Path | Sequence[str | Path] = _COLIN27,
    recon_size: tuple[int, int] = (320, 320),
    width: int = 368,
    seed: int = 0,
    snr_db: float | None = 30.0,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    progress: bool = True,
    overwrite: bool = False,
    acquired_lines: int | None = None,
    slice_spacing_mm: float = 5.0,
    acquisition: str = "AXT1",
    augment: bool | None = None,
    intensity_scale: float = 1e-3,
) -> SynthSummary:
    """Write a fastMRI-format multi-coil dataset of synthetic brain scans.

    Subject ``k`` (0-based, numbered across splits: train first, then val, then test) comes from
    source ``k % n_sources`` and every random choice for it comes from
    ``np.random.default_rng([seed, k, stream])``, so the same arguments give identical files.

    Args:
        out: output directory; ``out/train``, ``out/val`` and ``out/test`` are created. It must
            be empty or absent unless ``overwrite``.
        volumes: number of files (subjects) over all splits.
        slices: contiguous axial slices per file, centred on the middle of the head.
        coils: receiver coils.
        source: ``"colin27"`` (the Colin27 template, :data:`~punmri.data.volumes.COLIN27_PATH`),
            ``"phantom"`` (a different random 3-D head phantom per subject, no files needed), a
            NIfTI file, a folder of NIfTI files, or a list of these.
        recon_size: (recon_h, recon_w) reconstruction matrix; k-space is ``(2 * recon_h, width)``.
        width: W, phase-encode columns of the stored k-space (>= recon_w).
        seed: base seed.
        snr_db: ``20 log10(mean object magnitude / sigma)``, where ``sigma**2`` is the per-coil
            complex noise variance ``E|n|^2`` (the SNR of the coil-combined image); ``None``
            writes noise-free k-space.
        splits: three subject counts for (train, val, test) summing to ``volumes``, or three
            non-negative fractions (largest-remainder rounding, every positive fraction gets at
            least one subject when ``volumes`` allows).
        progress: show a progress bar.
        overwrite: allow a non-empty ``out``; earlier ``file_synth_*.h5`` files in its split
            folders are removed first (other files are left alone).
        acquired_lines: phase-encode columns with data (centred); ``None``: the even number
            closest to ``width * 334 / 368``.
        slice_spacing_mm: slice spacing, reduced so the slab spans at most 60% of the head.
        acquisition: ``acquisition`` attribute and file-name tag (e.g. ``"AXT1"``).
        augment: vary the anatomy of subjects (see the module docstring). ``None``: only
            subjects that reuse a source already used by an earlier subject; ``True``: every
            NIfTI subject; ``False``: none. Phantom subjects are never augmented (each is new).
        intensity_scale: magnitude of the tissue (its 99th percentile) in the image; fastMRI
            k-space values are of order 1e-4..1e-3.

    Returns:
        :class:`SynthSummary`; ``out/synth.json`` records the parameters and every subject.
    """
    start = time.perf_counter()
    out = Path(out)
    geometry = _check_geometry(recon_size, width, acquired_lines)
    for name, value in (("volumes", volumes), ("slices", slices), ("coils", coils)):
        _check_positive_int(value, name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
    if snr_db is not None and (
        isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or math.isnan(snr_db)
    ):
        raise InputError(f"snr_db: expected a number in dB or None (no noise), got {snr_db!r}")
    _check_positive_float(slice_spacing_mm, "slice_spacing_mm")
    _check_positive_float(intensity_scale, "intensity_scale")
    if not isinstance(acquisition, str) or not acquisition.isidentifier():
        raise InputError(
            f"acquisition: expected a short alphanumeric tag such as 'AXT1', got {acquisition!r}"
        )
    counts = split_counts(int(volumes), splits)
    sources = resolve_sources(source)
    _prepare_output(out, overwrite)

    subjects = _plan_subjects(counts, sources, acquisition, augment)
    records: list[dict[str, Any]] = []
    anatomy_cache: dict[str, _Anatomy] = {}
    for subject in tqdm(subjects, desc="synth", unit="file", disable=not progress, leave=False):
        anatomy = _anatomy_for(subject, anatomy_cache, int(seed), geometry, int(slices))
        record = _write_subject(
            out / subject.split / subject.name,
            subject,
            anatomy,
            geometry,
            n_slices=int(slices),
            coils=int(coils),
            seed=int(seed),
            snr_db=None if snr_db is None else float(snr_db),
            slice_spacing_mm=float(slice_spacing_mm),
            acquisition=acquisition,
            intensity_scale=float(intensity_scale),
        )
        records.append(record)

    files = {
        split: [f"{s.split}/{s.name}" for s in subjects if s.split == split] for split in SPLITS
    }
    seconds = time.perf_counter() - start
    summary = SynthSummary(
        out=out,
        files=files,
        kspace_shape=(int(slices), int(coils), geometry.encoded_h, geometry.width),
        recon_size=(geometry.recon_h, geometry.recon_w),
        acquired=(geometry.left, geometry.stop),
        sources=[s.source for s in subjects],
        seconds=seconds,
    )
    manifest = {
        "format": "punmri-synth",
        "version": 1,
        "parameters": {
            "volumes": int(volumes),
            "slices": int(slices),
            "coils": int(coils),
            "source": [str(s) for s in sources],
            "recon_size": [geometry.recon_h, geometry.recon_w],
            "width": geometry.width,
            "acquired": [geometry.left, geometry.stop],
            "seed": int(seed),
            "snr_db": snr_db,
            "splits": list(counts),
            "slice_spacing_mm": float(slice_spacing_mm),
            "acquisition": acquisition,
            "augment": augment,
            "intensity_scale": float(intensity_scale),
        },
        "subjects": records,
        "seconds": seconds,
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return summary


def split_counts(volumes: int, splits: Sequence[float]) -> tuple[int, int, int]:
    """Subjects per split (train, val, test) from counts or fractions.

    Args:
        volumes: total number of subjects (>= 1).
        splits: three integers summing to ``volumes``, or three non-negative fractions with a
            positive sum (normalised; largest-remainder rounding, each positive fraction gets at
            least one subject while ``volumes`` allows).

    Returns:
        (n_train, n_val, n_test) summing to ``volumes``.
    """
    values = list(splits) if isinstance(splits, (list, tuple)) else None
    if values is None or len(values) != 3:
        raise InputError(f"splits: expected 3 values (train, val, test), got {splits!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.number)) for v in values):
        raise InputError(f"splits: expected numbers (counts or fractions), got {splits!r}")
    if any(not math.isfinite(float(v)) or v < 0 for v in values) or sum(values) <= 0:
        raise InputError(
            f"splits: expected non-negative values with a positive sum, got {splits!r}"
        )
    if all(isinstance(v, (int, np.integer)) for v in values):
        if sum(values) != volumes:
            raise InputError(
                f"splits: the counts {tuple(int(v) for v in values)} sum to {sum(values)}, but "
                f"volumes={volumes}; give counts summing to volumes, or fractions"
            )
        return int(values[0]), int(values[1]), int(values[2])
    positive = [k for k in range(3) if values[k] > 0]
    counts = [0, 0, 0]
    if volumes <= len(positive):  # one subject each, in split order, while they last
        for k in positive[:volumes]:
            counts[k] = 1
        return counts[0], counts[1], counts[2]
    total = float(sum(values))
    shares = [volumes * float(v) / total for v in values]
    counts = [max(1, math.floor(shares[k])) if k in positive else 0 for k in range(3)]
    while sum(counts) > volumes:  # the minimum of one pushed the total over: take from the largest
        counts[max(range(3), key=lambda k: (counts[k], -k))] -= 1
    by_remainder = sorted(positive, key=lambda k: (counts[k] - shares[k], k))
    for k in by_remainder[: volumes - sum(counts)]:
        counts[k] += 1
    return counts[0], counts[1], counts[2]


def resolve_sources(source: str | Path | Sequence[str | Path]) -> list[str]:
    """Expand ``source`` into a list of NIfTI paths and ``"phantom"`` entries.

    ``"colin27"`` becomes :data:`~punmri.data.volumes.COLIN27_PATH`; a folder becomes its
    ``*.nii``/``*.nii.gz`` files, sorted by name; a missing file raises :class:`InputError`.
    """
    items = [source] if isinstance(source, (str, Path)) else list(source)
    if not items:
        raise InputError("source: expected 'colin27', 'phantom', NIfTI paths or a folder; got []")
    resolved: list[str] = []
    for item in items:
        if not isinstance(item, (str, Path)):
            raise InputError(f"source: expected a path or 'colin27'/'phantom', got {item!r}")
        text = str(item)
        if text.lower() == _PHANTOM:
            resolved.append(_PHANTOM)
            continue
        path = Path(COLIN27_PATH) if text.lower() == _COLIN27 else Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
            )
            if not found:
                raise InputError(f"source {path}: folder holds no .nii or .nii.gz volume")
            resolved.extend(str(p) for p in found)
        elif path.is_file():
            resolved.append(str(path))
        else:
            hint = ""
            if text.lower() == _COLIN27:
                hint = " (Colin27 comes from the Debian package mricron-data: apt-get install it)"
            raise InputError(
                f"source {path}: NIfTI file not found{hint}; expected 'colin27', 'phantom', a "
                ".nii/.nii.gz file or a folder of them"
            )
    return resolved


# --------------------------------------------------------------------------------------------
# Validation and planning
# --------------------------------------------------------------------------------------------


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value!r}")


def _check_positive_float(value: object, name: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise InputError(f"{name}: expected a positive number, got {value!r}")


def _check_geometry(recon_size: Sequence[int], width: int, acquired_lines: int | None) -> _Geometry:
    if len(recon_size) != 2:
        raise InputError(f"recon_size: expected (recon_h, recon_w), got {recon_size!r}")
    for value in recon_size:
        _check_positive_int(value, "recon_size")
    recon_h, recon_w = int(recon_size[0]), int(recon_size[1])
    _check_positive_int(width, "width")
    if width < recon_w:
        raise InputError(
            f"width: expected at least recon_w={recon_w} phase-encode columns, got {width}"
        )
    if acquired_lines is None:
        lines = min(int(width), 2 * round(width * ACQUIRED_FRACTION / 2))
        lines = max(lines, 1)
    else:
        lines = acquired_lines
    _, maximum, center = encoding_limits(int(width), lines)
    left, stop = acquired_columns(int(width), maximum, center)
    return _Geometry(recon_h=recon_h, recon_w=recon_w, width=int(width), left=left, stop=stop)


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Create ``out`` and its split folders; refuse a non-empty ``out`` unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a directory")
    # Empty folders (such as those left by a run that failed early) do not count.
    if out.is_dir() and any(p.is_file() or p.is_symlink() for p in out.rglob("*")):
        if not overwrite:
            raise InputError(
                f"{out}: output directory is not empty; choose a new directory or pass "
                "overwrite=True (--overwrite) to replace an earlier synthetic dataset"
            )
        for split in SPLITS:
            folder = out / split
            if folder.is_dir():
                for stale in folder.glob(f"{FILE_PREFIX}*.h5"):
                    stale.unlink()
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)


def _plan_subjects(
    counts: tuple[int, int, int], sources: list[str], acquisition: str, augment: bool | None
) -> list[_Subject]:
    subjects: list[_Subject] = []
    index = 0
    for split, count in zip(SPLITS, counts, strict=True):
        for _ in range(count):
            src = sources[index % len(sources)]
            if src == _PHANTOM:
                varied = False
            elif augment is None:
                varied = index >= len(sources)
            else:
                varied = bool(augment)
            name = f"{FILE_PREFIX}{acquisition}_{index:03d}.h5"
            subjects.append(_Subject(index, split, name, src, varied))
            index += 1
    return subjects


def _rng(seed: int, subject: int, stream: int) -> np.random.Generator:
    """Independent generator per (seed, subject, stream): 0 anatomy, 1 augmentation, 2 coils and
    phase, 3 noise."""
    return np.random.default_rng([seed, subject, stream])


# --------------------------------------------------------------------------------------------
# Anatomy: source volumes and their resampling into slices
# --------------------------------------------------------------------------------------------


def _anatomy_for(
    subject: _Subject, cache: dict[str, _Anatomy], seed: int, geometry: _Geometry, n_slices: int
) -> _Anatomy:
    """The subject's source volume, prepared (the last NIfTI volume is kept for reuse)."""
    if subject.source == _PHANTOM:
        side = int(np.clip(max(geometry.recon_h, geometry.recon_w) // 2, 24, 96))
        shape = (side, int(round(1.15 * side)), int(np.clip(3 * n_slices, 24, 64)))
        ph = phantom_volume(shape, _rng(seed, subject.index, 0), n=10)
        # Partial-volume blur, so that upsampled edges are not staircases.
        data = ndimage.gaussian_filter(ph.data, 0.8)
        # Physical size of an adult head: ~200 x 230 x 190 mm field of view.
        voxel = (200.0 / shape[0], 230.0 / shape[1], 190.0 / shape[2])
        return _prepare_anatomy(Volume(data=data, voxel_size_mm=voxel, source=_PHANTOM))
    if subject.source not in cache:
        cache.clear()
        cache[subject.source] = _prepare_anatomy(load_volume(subject.source))
    return cache[subject.source]


def _prepare_anatomy(volume: Volume) -> _Anatomy:
    data = np.asarray(volume.data, dtype=np.float32)
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(
            f"{volume.source}: expected a 3-D volume with at least 2 voxels per axis, got shape "
            f"{data.shape}"
        )
    coarse = data[::2, ::2, ::2]
    p99 = float(np.percentile(coarse, 99))
    if p99 <= 0:
        raise InputError(f"{volume.source}: volume has no positive intensities (all background)")
    tissue = coarse[coarse > 0.1 * p99]
    ref = float(np.percentile(tissue, 99)) if tissue.size else p99
    mask = data > 0.1 * p99
    step = max(1, int(round((mask.sum() / 2e5) ** (1 / 3))))
    voxel = np.asarray(volume.voxel_size_mm, dtype=np.float64)
    points = np.argwhere(mask[::step, ::step, ::step]).astype(np.float64) * step * voxel
    low, high = points.min(axis=0), points.max(axis=0)
    return _Anatomy(
        data=np.maximum(data / ref, 0.0).astype(np.float32),
        voxel_mm=voxel,
        points_mm=points,
        center_mm=(low + high) / 2,
        extent_mm=np.maximum(high - low, voxel),
        source=volume.source,
    )


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """3x3 rotation ``Rz @ Ry @ Rx`` for angles (about x, about y, about z) in degrees."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _basis(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth 1-D basis on normalised coordinates ``t`` (about [-1, 1]).

    Returns:
        (n, 5) values of ``1, sin(pi t / 2), cos(pi t / 2), sin(pi t), cos(pi t)`` and their
        (5,) frequencies.
    """
    half, full = 0.5 * np.pi * t, np.pi * t
    values = np.stack([np.ones_like(t), np.sin(half), np.cos(half), np.sin(full), np.cos(full)], 1)
    return values, np.array([0.0, 0.5, 0.5, 1.0, 1.0])


def _smooth_field(
    rng: np.random.Generator, axes: Sequence[np.ndarray], rms: float, channels: int = 1
) -> np.ndarray:
    """Random smooth field on the tensor grid of three normalised 1-D coordinate arrays.

    The field is a sum of separable products of :func:`_basis` functions with Gaussian
    coefficients that decay with frequency; its RMS over the unit cube is about ``rms``.

    Args:
        rng: generator for the coefficients.
        axes: (tz, ty, tx) 1-D coordinates (units of the head radius), lengths (S, H, W).
        rms: target root-mean-square value.
        channels: number of independent fields.

    Returns:
        (channels, S, H, W) float64.
    """
    bases = [_basis(np.asarray(t, dtype=np.float64)) for t in axes]
    freq = sum(np.meshgrid(*(f for _, f in bases), indexing="ij"))
    weight = 1.0 / (1.0 + 2.0 * freq)
    energy = np.ones_like(weight)
    for axis, (_, f) in enumerate(bases):
        shape = [1, 1, 1]
        shape[axis] = -1
        energy = energy * np.where(f > 0, 0.5, 1.0).reshape(shape)
    scale = rms / math.sqrt(float(np.sum(weight**2 * energy)))
    out = []
    for _ in range(channels):
        coef = rng.standard_normal(weight.shape) * weight * scale
        out.append(np.einsum("ijk,zi,yj,xk->zyx", coef, *(b for b, _ in bases), optimize=True))
    return np.stack(out)


def _contrast_curve(rng: np.random.Generator, top: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Random monotone tissue-intensity remapping: knots (x, y) over [0, top] and a gamma."""
    knots = np.linspace(0.0, top, 7)
    slopes = np.exp(rng.normal(0.0, 0.3, size=6))
    values = np.concatenate([[0.0], np.cumsum(slopes * np.diff(knots))])
    values /= max(float(np.interp(1.0, knots, values)), 1e-12)  # tissue level 1 stays 1
    gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
    return knots, values, gamma


def _subject_magnitude(
    anatomy: _Anatomy,
    geometry: _Geometry,
    n_slices: int,
    slice_spacing_mm: float,
    augment: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Resample ``n_slices`` contiguous axial slices of (a varied copy of) ``anatomy``.

    The slab is centred on the middle of the head; in-plane, the head's bounding box (over the
    slab) fits in ``fill`` of the recon field of view. Rows run anterior -> posterior, columns
    along +x (the orientation of :func:`~punmri.data.volumes.slice_volume`).

    Returns:
        ``(S, recon_h, W)`` float32 magnitude (tissue ~1, background 0) and the geometry/
        augmentation record (pixel and slice sizes in mm, angles in degrees, ...).
    """
    radius = 0.5 * float(anatomy.extent_mm.max())
    angles = np.zeros(3)
    scales = np.ones(3)
    fill, slab_offset, elastic = _FILL_DEFAULT, 0.0, 0.0
    if augment:
        angles = np.array([rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-12, 12)])
        scales = np.exp(rng.uniform(-0.08, 0.08, size=3))
        fill = float(rng.uniform(*_FILL_RANGE))
        slab_offset = float(rng.uniform(-0.05, 0.05) * anatomy.extent_mm[2])
        elastic = _ELASTIC_RMS * radius
    rot = _rotation(angles)
    matrix = rot / scales[None, :]  # source offset = rot @ (u / scales)

    extent_z = float(anatomy.extent_mm[2] * scales[2])
    spacing = min(slice_spacing_mm, 0.6 * extent_z / max(n_slices - 1, 1))
    uz = slab_offset + (np.arange(n_slices) - (n_slices - 1) / 2) * spacing

    # Tissue points in the output frame u = scales * rot^T (q - c); keep those near the slab.
    u_pts = ((anatomy.points_mm - anatomy.center_mm) @ rot) * scales
    near = np.abs(u_pts[:, 2] - slab_offset) <= (uz[-1] - uz[0]) / 2 + spacing
    if np.any(near):
        u_pts = u_pts[near]
    low, high = u_pts[:, :2].min(axis=0), u_pts[:, :2].max(axis=0)
    cx, cy = (low + high) / 2
    margin = 3.0 * elastic
    ext_x, ext_y = high - low + 2 * margin
    h, w_grid = geometry.recon_h, geometry.width
    pixel = max(ext_x / (fill * geometry.recon_w), ext_y / (fill * h), 1e-6)

    uy = cy - (np.arange(h) - (h - 1) / 2) * pixel  # row 0 is anterior
    ux = cx + (np.arange(w_grid) - (w_grid - 1) / 2) * pixel
    grid = np.empty((3, n_slices, h, w_grid))  # output-frame (x, y, z) mm of every pixel
    grid[0] = ux[None, None, :]
    grid[1] = uy[None, :, None]
    grid[2] = uz[:, None, None]
    if elastic > 0:
        axes = (uz / radius, uy / radius, ux / radius)
        grid = grid + _smooth_field(rng, axes, elastic, channels=3)
    source_mm = anatomy.center_mm[:, None, None, None] + np.einsum("ij,j...->i...", matrix, grid)
    index = source_mm / anatomy.voxel_mm[:, None, None, None]
    image = ndimage.map_coordinates(
        anatomy.data, index, order=1, mode="constant", cval=0.0, prefilter=False
    )
    image = np.maximum(image, 0.0)
    record: dict[str, Any] = {
        "pixel_mm": pixel,
        "slice_mm": spacing,
        "angles_deg": angles.round(3).tolist(),
        "scales": scales.round(4).tolist(),
        "fill": round(fill, 4),
    }
    if augment:
        top = max(float(anatomy.data.max()), 1.0)
        knots, values, gamma = _contrast_curve(rng, top)
        image = np.interp(image, knots, values) ** gamma
        axes = (uz / radius, uy / radius, ux / radius)
        image = image * np.exp(_smooth_field(rng, axes, 0.08)[0])
        record.update(gamma=round(gamma, 4), elastic_rms_mm=round(elastic, 3))
    return image.astype(np.float32), record


# --------------------------------------------------------------------------------------------
# Acquisition: coils, phase, noise, k-space
# --------------------------------------------------------------------------------------------


def _coil_maps(
    geometry: _Geometry, coils: int, ring_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Sensitivities on the oversampled ``(2 * recon_h, W)`` grid with square pixels.

    :func:`~punmri.physics.coils.simulated_coil_maps` is evaluated on a square grid covering the
    larger side and centre-cropped, so the coil ring (radius ``ring_px`` pixels, randomly rotated
    and scaled by up to 8%) is round in physical space.

    Returns:
        (C, 2 * recon_h, W) complex64 with ``sum_c |S_c|^2 = 1``.
    """
    side = max(geometry.encoded_h, geometry.width)
    radius = ring_px / (side / 2)
    maps = simulated_coil_maps((side, side), coils, rng, radius=radius, jitter=0.08)
    maps = fit_to_shape(maps, (geometry.encoded_h, geometry.width))
    # A coil centre landing exactly on a pixel would give inf/inf there (outside the head).
    return np.where(np.isfinite(maps), maps, 0).astype(np.complex64)


def _noise_mixing(coils: int, rng: np.random.Generator) -> np.ndarray:
    """(C, C) complex lower-triangular factor of a unit-diagonal coil noise covariance."""
    spread = rng.standard_normal((2, coils, coils))
    a = np.eye(coils) + 0.15 * (spread[0] + 1j * spread[1]) / np.sqrt(2)
    cov = a @ a.conj().T
    d = 1.0 / np.sqrt(np.real(np.diag(cov)))
    return np.linalg.cholesky(cov * d[:, None] * d[None, :])


def _write_subject(
    path: Path,
    subject: _Subject,
    anatomy: _Anatomy,
    geometry: _Geometry,
    n_slices: int,
    coils: int,
    seed: int,
    snr_db: float | None,
    slice_spacing_mm: float,
    acquisition: str,
    intensity_scale: float,
) -> dict[str, Any]:
    """Simulate one subject and write its fastMRI file atomically; returns its manifest record."""
    import h5py

    magnitude, record = _subject_magnitude(
        anatomy, geometry, n_slices, slice_spacing_mm, subject.augment, _rng(seed, subject.index, 1)
    )
    magnitude *= intensity_scale
    h, w_grid = geometry.recon_h, geometry.width
    rng_acq = _rng(seed, subject.index, 2)
    ring_px = 1.2 * 0.5 * max(h, geometry.recon_w) + 2.0  # coil loops just outside the head
    maps = _coil_maps(geometry, coils, ring_px, rng_acq)
    radius_px = 0.5 * max(h, w_grid)
    axes = (
        (np.arange(n_slices) - (n_slices - 1) / 2) / max(n_slices, 1),
        (np.arange(h) - (h - 1) / 2) / radius_px,
        (np.arange(w_grid) - (w_grid - 1) / 2) / radius_px,
    )
    phase = rng_acq.uniform(0, 2 * np.pi) + _smooth_field(rng_acq, axes, 0.6)[0]
    image = (magnitude * np.exp(1j * phase)).astype(np.complex64)

    sigma = 0.0
    if snr_db is not None and math.isfinite(snr_db):
        peak = float(magnitude.max())
        tissue = magnitude[magnitude > 0.1 * peak] if peak > 0 else magnitude
        sigma = float(np.mean(tissue)) / 10 ** (snr_db / 20) if tissue.size else 0.0
    rng_noise = _rng(seed, subject.index, 3)
    # Complex white noise w has E|w|^2 = 2, so the factor sigma / sqrt(2) gives E|n_c|^2 = sigma^2.
    mixing = (_noise_mixing(coils, rng_noise) * sigma / np.sqrt(2)).astype(np.complex64)

    r0 = (geometry.encoded_h - h) // 2  # rows of the recon crop (fit_to_shape's convention)
    left, stop = geometry.left, geometry.stop
    header = ismrmrd_header(
        (geometry.encoded_h, w_grid),
        (h, geometry.recon_w),
        stop - left,
        n_slices,
        coils,
        record["pixel_mm"],
        record["slice_mm"],
        protocol=acquisition,
    )
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("ismrmrd_header", data=np.bytes_(header))
            kspace_ds = fh.create_dataset(
                "kspace", shape=(n_slices, coils, geometry.encoded_h, w_grid), dtype=np.complex64
            )
            targets = np.empty((n_slices, h, geometry.recon_w), dtype=np.float32)
            for s in range(n_slices):
                coil_images = np.zeros((coils, geometry.encoded_h, w_grid), dtype=np.complex64)
                coil_images[:, r0 : r0 + h] = maps[:, r0 : r0 + h] * image[s][None]
                kspace = fft2c_numpy(coil_images)
                kspace[..., :left] = 0
                kspace[..., stop:] = 0
                if sigma > 0:
                    shape = (coils, geometry.encoded_h * (stop - left))
                    white = rng_noise.standard_normal((2, *shape), dtype=np.float32)
                    noise = mixing @ (white[0] + 1j * white[1])  # (C, H_enc * lines) complex64
                    noise = noise.reshape(coils, geometry.encoded_h, stop - left)
                    kspace[..., left:stop] += noise
                kspace_ds[s] = kspace
                targets[s] = rss_target(kspace, (h, geometry.recon_w))
            fh.create_dataset("reconstruction_rss", data=targets)
            fh.attrs["max"] = float(targets.max())
            fh.attrs["norm"] = float(np.linalg.norm(targets))
            fh.attrs["acquisition"] = acquisition
            fh.attrs["patient_id"] = f"synth-{seed}-{subject.index:03d}"
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    record.update(
        file=f"{subject.split}/{subject.name}",
        split=subject.split,
        source=subject.source,
        augmented=subject.augment,
        noise_sigma=sigma,
    )
    return record
