"""Prepare a folder of fastMRI multi-coil files for training: validate, de-oversample, ESPIRiT.

``prepare_folder(DIR)`` makes one pass over every ``*.h5`` file below ``DIR`` (recursively, in
sorted order; hidden files and folders, such as the default cache, are skipped) and writes a cache
that :mod:`punmri.data.kspace_dataset` reads without touching the source files again:

- ``CACHE/<file>`` (same relative path as the source), one HDF5 file per source with
  ``kspace`` complex64 (slices, coils, h, W): the source k-space with the readout oversampling
  removed (:func:`remove_readout_oversampling`); ``maps`` complex64 (slices, coils, h, W): ESPIRiT
  sensitivities per slice from the fully sampled centre columns; ``target`` float32
  (slices, crop_h, crop_w): the file's ``reconstruction_rss`` when it has one; ``mask`` float32
  (W,) when the source has one (test split); attributes ``source`` (path relative to ``DIR``),
  ``stamp`` ([size in bytes, mtime in ns] of the source) and ``entry`` (the file's index entry as
  JSON, so a resumed run does not reopen the source);
- ``CACHE/index.json``: format, version, root, one entry per prepared file
  (:class:`~punmri.data.prepared_index.PreparedFile`) and the files skipped as bad
  (:class:`~punmri.data.prepared_index.BadFile`), written last (the index's names, entries and
  validation live in :mod:`punmri.data.prepared_index`).

Every file is written under a temporary name and renamed into place, so a killed run never leaves a
half-written cache file, and a rerun skips every cache file whose ``stamp`` still matches its
source (resume); a source that changed is prepared again, and cache files of sources that are gone
are deleted. With ``workers > 1`` files are prepared in parallel processes; the cache is the same
for any number of workers. The default cache folder is ``DIR/.punmri-cache``.

Geometry follows fastMRI: the readout (axis -2, ``H_enc``) is 2x oversampled and the recon size
``(h, w)`` comes from the header's ``reconSpace`` (or from the shape of ``reconstruction_rss`` when
the file has one, which fastMRI's own transforms trust first); the acquired phase-encode columns
are ``[W // 2 - center, W // 2 - center + maximum + 1)`` from the header's ``encodingLimits``.
A file without a readable header falls back to a 320x320 recon size with every column acquired,
with one warning.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from punmri.data.fastmri import (
    DEFAULT_CROP,
    _kspace_dataset,
    _open,
    _read_mask,
    _read_target,
    _reading,
    parse_ismrmrd_header,
)
from punmri.data.prepared_index import (
    INDEX_NAME,
    VERSION,
    BadFile,
    PreparedFile,
    PreparedIndex,
    default_cache,
    file_stamp,
    read_index,
)
from punmri.errors import InputError
from punmri.io import write_json_atomic
from punmri.physics.coils import espirit_maps

__all__ = [
    "calibration_width",
    "load_index",
    "prepare_file",
    "prepare_folder",
    "remove_readout_oversampling",
    "source_files",
]

MAX_CALIB_WIDTH = 24
"""Largest ESPIRiT calibration width (columns and rows): fastMRI's usual 24 fully sampled lines."""

MIN_CALIB_WIDTH = 8
"""Fewest fully sampled centre columns ESPIRiT is run with (sigpy's kernel is 6 wide)."""

_TMP_SUFFIX = ".tmp"
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def source_files(root: str | Path, cache: str | Path | None = None) -> list[str]:
    """Every ``*.h5`` file below ``root``, as sorted posix paths relative to ``root``.

    Files inside ``cache`` and inside hidden folders (names starting with ``.``, such as the
    default cache), and hidden files, are left out.
    """
    root = Path(root)
    cache_dir = (Path(cache) if cache is not None else default_cache(root)).resolve()
    found = []
    for path in root.rglob("*.h5"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.resolve().is_relative_to(cache_dir):
            continue
        found.append(rel.as_posix())
    return sorted(found)


def remove_readout_oversampling(kspace: np.ndarray, height: int) -> np.ndarray:
    """Remove the readout oversampling of k-space: keep the central ``height`` image rows.

    Centred orthonormal inverse FFT along the readout axis (-2), centre crop from ``H_enc`` to
    ``height`` rows (window start ``(H_enc - height) // 2``, fastMRI's crop convention), centred
    orthonormal FFT back. The image of the result, ``ifft2c(out)``, equals the central ``height``
    rows of ``ifft2c(kspace)``; phase-encode columns that are zero stay exactly zero.

    Args:
        kspace: (..., H_enc, W) complex k-space, readout along axis -2.
        height: rows to keep, ``1 <= height <= H_enc``.

    Returns:
        (..., height, W) complex64 k-space.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim < 2:
        raise InputError(f"k-space: expected at least 2 dimensions (H, W), got {kspace.shape}")
    full = kspace.shape[-2]
    if not 1 <= height <= full:
        raise InputError(f"readout crop: height {height} must be between 1 and H_enc = {full}")
    if height == full:
        return kspace.astype(np.complex64)
    image = np.fft.fftshift(
        np.fft.ifft(np.fft.ifftshift(kspace, axes=-2), axis=-2, norm="ortho"), axes=-2
    )
    start = (full - height) // 2
    image = image[..., start : start + height, :]
    out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=-2), axis=-2, norm="ortho"), -2)
    return out.astype(np.complex64, copy=False)


def calibration_width(sampled: np.ndarray, limit: int = MAX_CALIB_WIDTH) -> int:
    """Widest centred block of sampled phase-encode columns, at most ``limit``.

    The block is the one sigpy's ESPIRiT cuts out for a calibration width ``n``: columns
    ``[W // 2 - n // 2, W // 2 - n // 2 + n)``.

    Args:
        sampled: (W,) bool, True for the sampled (or acquired) columns.
        limit: largest width returned.

    Returns:
        The calibration width ``n`` (0 when the centre column is not sampled).
    """
    sampled = np.asarray(sampled, dtype=bool)
    width = sampled.shape[-1]
    for n in range(min(limit, width), 0, -1):
        start = width // 2 - n // 2
        if start >= 0 and start + n <= width and sampled[start : start + n].all():
            return n
    return 0


@dataclass(frozen=True)
class _Geometry:
    """What validating a source file found: sizes, columns and what to copy."""

    slices: int
    coils: int
    encoded: tuple[int, int]
    crop: tuple[int, int]
    acquired: tuple[int, int]
    calib: int
    has_target: bool
    mask: np.ndarray | None


def _header_geometry(
    fh: Any, width: int
) -> tuple[tuple[int, int] | None, tuple[int, int] | None, str]:
    """(recon size, acquired columns, problem) from the header; ``None`` where it gives none."""
    if "ismrmrd_header" not in fh:
        return None, None, "has no 'ismrmrd_header' dataset"
    parsed = parse_ismrmrd_header(fh["ismrmrd_header"][()])
    if parsed is None:
        return None, None, "has an ISMRMRD header that is not valid XML"
    recon = acquired = None
    if "recon_size" in parsed:
        recon = (parsed["recon_size"][0], parsed["recon_size"][1])
    if "limits" in parsed:
        _, maximum, center = parsed["limits"]
        left = width // 2 - center
        if not 0 <= left < left + maximum + 1 <= width:
            problem = (
                f"has encodingLimits (maximum {maximum}, center {center}) that do not fit its "
                f"{width} phase-encode columns"
            )
            return recon, None, problem
        acquired = (left, left + maximum + 1)
    missing = [
        name for name, value in (("reconSpace", recon), ("encodingLimits", acquired)) if not value
    ]
    problem = f"has an ISMRMRD header without {' and '.join(missing)}" if missing else ""
    return recon, acquired, problem


def _inspect(fh: Any, path: Path, notes: list[str], calib_limit: int) -> _Geometry:
    """Validate an open source file (everything but the k-space values) and read its geometry."""
    ds = _kspace_dataset(fh, path)
    if ds.ndim == 3:
        raise InputError(
            f"{path}: single-coil k-space {ds.shape} is not supported for training; expected "
            "multi-coil (slices, coils, H, W) (use --skip-bad to skip such files)"
        )
    if ds.ndim != 4:
        raise InputError(
            f"{path}: 'kspace' has shape {ds.shape}; expected multi-coil (slices, coils, H, W)"
        )
    slices, coils, height, width = (int(n) for n in ds.shape)
    if min(slices, coils, height, width) == 0:
        raise InputError(f"{path}: 'kspace' has shape {ds.shape}; expected no empty axis")

    recon, acquired, problem = _header_geometry(fh, width)
    target = _read_target(fh, "reconstruction_rss", path, slices)
    if target is not None:  # the target's size wins, as in fastMRI's transforms
        crop, source = (int(target.shape[1]), int(target.shape[2])), "'reconstruction_rss'"
    elif recon is not None:
        crop, source = recon, "the header's reconSpace"
    else:
        crop, source = DEFAULT_CROP, "the default (no usable header)"
    if acquired is None:
        acquired = (0, width)
    if problem:
        notes.append(
            f"{path}: {problem}; using a reconstruction size of {crop[0]}x{crop[1]} and "
            f"acquired columns [{acquired[0]}, {acquired[1]})"
        )
    if height < crop[0] or width < crop[1]:
        raise InputError(
            f"{path}: 'kspace' is {height}x{width} (readout x phase encode), smaller than the "
            f"reconstruction size {crop[0]}x{crop[1]} from {source}; expected k-space at least "
            "as large"
        )

    sampled = np.zeros(width, dtype=bool)
    sampled[acquired[0] : acquired[1]] = True
    mask = _read_mask(fh, path, width)
    if mask is not None:
        sampled &= mask > 0
    calib = calibration_width(sampled, calib_limit)
    if calib < min(MIN_CALIB_WIDTH, calib_limit):
        raise InputError(
            f"{path}: only {calib} fully sampled centre columns; ESPIRiT coil maps need at least "
            f"{MIN_CALIB_WIDTH}"
        )
    return _Geometry(
        slices=slices,
        coils=coils,
        encoded=(height, width),
        crop=crop,
        acquired=acquired,
        calib=calib,
        has_target=target is not None,
        mask=mask,
    )


def _settings(calib_limit: int) -> str:
    """What besides the source decides a cache file's content (a cache file made with other
    settings is prepared again)."""
    return json.dumps({"version": VERSION, "max_calib_width": int(calib_limit)}, sort_keys=True)


@contextlib.contextmanager
def _atomic_h5(path: Path) -> Iterator[Any]:
    """An HDF5 file open for writing under a temporary name, renamed to ``path`` on success."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name (created by h5py, so it gets the usual permissions, unlike mkstemp's 0600)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
    try:
        with h5py.File(tmp, "x") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _slice_maps(kspace: np.ndarray, calib: int) -> np.ndarray:
    """ESPIRiT maps (C, h, W) complex64 of one slice; non-finite values (empty regions) -> 0."""
    maps = espirit_maps(kspace, calib_width=calib)
    return np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0).astype(np.complex64, copy=False)


def _number(value: Any) -> float | None:
    """An HDF5 attribute as a float, or ``None`` when it is not a number."""
    try:
        return float(np.asarray(value).item())
    except (TypeError, ValueError):
        return None


def _prepare(
    source: Path, dest: Path, rel: str, calib_limit: int, notes: list[str]
) -> PreparedFile:
    """Validate ``source`` and write its cache file ``dest``; warnings are appended to ``notes``."""
    stamp = file_stamp(source)
    fh = _open(source)
    with fh:
        with _reading(source):
            geo = _inspect(fh, source, notes, calib_limit)
            acquisition = fh.attrs.get("acquisition", "")
            peak = _number(fh.attrs["max"]) if "max" in fh.attrs else None
        if isinstance(acquisition, bytes):
            acquisition = acquisition.decode("utf-8", errors="replace")
        entry = PreparedFile(
            file=rel,
            cache=rel,
            slices=geo.slices,
            coils=geo.coils,
            kspace_shape=(geo.crop[0], geo.encoded[1]),
            crop=geo.crop,
            acquired=geo.acquired,
            acquisition=str(acquisition),
            max=peak,
            has_target=geo.has_target,
            has_mask=geo.mask is not None,
            stamp=stamp,
        )
        _write_cache(fh, source, dest, geo, entry, calib_limit)
    return entry


def _write_cache(
    fh: Any, source: Path, dest: Path, geo: _Geometry, entry: PreparedFile, calib_limit: int
) -> None:
    """Stream the slices of an open, validated source into the cache file ``dest``."""
    shape = (geo.slices, geo.coils, *entry.kspace_shape)
    target = None
    if geo.has_target:
        with _reading(source):
            target = np.asarray(fh["reconstruction_rss"][()], dtype=np.float32)
        if not np.all(np.isfinite(target)):
            raise InputError(f"{source}: 'reconstruction_rss' contains NaN or Inf values")
    kspace_ds = fh["kspace"]
    with _atomic_h5(dest) as out:
        out_k = out.create_dataset("kspace", shape=shape, dtype=np.complex64)
        out_maps = out.create_dataset("maps", shape=shape, dtype=np.complex64)
        for index in range(geo.slices):
            with _reading(source):
                raw = np.asarray(kspace_ds[index], dtype=np.complex64)
            if not np.all(np.isfinite(raw)):
                raise InputError(
                    f"{source}: slice {index} of 'kspace' contains NaN or Inf values; expected "
                    "finite k-space"
                )
            kspace = remove_readout_oversampling(raw, geo.crop[0])
            out_k[index] = kspace
            out_maps[index] = _slice_maps(kspace, geo.calib)
        if target is not None:
            out.create_dataset("target", data=target)
        if geo.mask is not None:
            out.create_dataset("mask", data=geo.mask)
        out.attrs["source"] = entry.file
        out.attrs["stamp"] = np.asarray(entry.stamp, dtype=np.int64)
        out.attrs["entry"] = json.dumps(entry.to_json(), sort_keys=True)
        out.attrs["settings"] = _settings(calib_limit)


def prepare_file(
    source: str | Path,
    dest: str | Path,
    rel: str | None = None,
    calib_limit: int = MAX_CALIB_WIDTH,
) -> PreparedFile:
    """Validate one fastMRI multi-coil file and write its cache file (see the module docstring).

    Args:
        source: the fastMRI ``.h5`` file.
        dest: the cache file to write (atomically: temporary name, then renamed).
        rel: the name recorded as ``file``/``cache`` in the entry (default: the file name).
        calib_limit: largest ESPIRiT calibration width (:data:`MAX_CALIB_WIDTH`).

    Returns:
        The file's index entry. A missing or unusable header emits one ``UserWarning``.

    Raises:
        InputError: one line naming the file when it is not a usable multi-coil fastMRI file.
    """
    source, dest = Path(source), Path(dest)
    name = rel if rel is not None else source.name
    notes: list[str] = []
    entry = _prepare(source, dest, name, calib_limit, notes)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return entry


@dataclass(frozen=True)
class _Job:
    rel: str
    source: str
    dest: str
    calib_limit: int


@dataclass(frozen=True)
class _Outcome:
    rel: str
    entry: PreparedFile | None
    error: str | None
    notes: tuple[str, ...]


def _run_job(job: _Job) -> _Outcome:
    """Prepare one file; bad input is returned as an error message (it pickles as plain text)."""
    notes: list[str] = []
    try:
        entry = _prepare(Path(job.source), Path(job.dest), job.rel, job.calib_limit, notes)
    except InputError as exc:  # a bad file gets its error, not the header warning as well
        return _Outcome(job.rel, None, " ".join(str(exc).split()), ())
    return _Outcome(job.rel, entry, None, tuple(notes))


def _init_worker() -> None:
    """Worker processes compute with one thread each (the processes are the parallelism)."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Set the BLAS/OpenMP thread variables to 1 while worker processes are started."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARS}
    os.environ.update({name: "1" for name in _THREAD_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _outcomes(jobs: list[_Job], workers: int) -> Iterator[_Outcome]:
    """Outcomes of ``jobs`` in job order; in worker processes when ``workers > 1``."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _run_job(job)
        return
    context = multiprocessing.get_context("spawn")
    with (
        _single_threaded_children(),
        ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init_worker
        ) as pool,
    ):
        futures = [pool.submit(_run_job, job) for job in jobs]
        try:
            for future in futures:
                yield future.result()
        finally:  # a bad file, Ctrl-C or a crash: drop the files not started yet
            for future in futures:
                future.cancel()


def _cached_entry(dest: Path, stamp: tuple[int, int], settings: str) -> PreparedFile | None:
    """The entry stored in an existing cache file whose stamp and settings match, else None."""
    import h5py

    if not dest.is_file():
        return None
    try:
        with h5py.File(dest, "r") as fh:
            if "kspace" not in fh or "maps" not in fh:
                return None
            if tuple(int(v) for v in fh.attrs["stamp"]) != stamp:
                return None
            if str(fh.attrs.get("settings", "")) != settings:
                return None
            return PreparedFile.from_json(json.loads(str(fh.attrs["entry"])))
    except (OSError, KeyError, TypeError, ValueError):  # unreadable or foreign: prepare again
        return None


def _remove_leftovers(cache: Path, keep: set[Path]) -> None:
    """Delete temporary files of killed runs, and cache files whose source is gone or bad."""
    import h5py

    for path in sorted(cache.rglob(f".*{_TMP_SUFFIX}")):
        if path.is_file() and path.name.count(".") >= 3:
            path.unlink()
    for path in sorted(cache.rglob("*.h5")):
        if path in keep or not path.is_file():
            continue
        try:
            with h5py.File(path, "r") as fh:
                ours = "stamp" in fh.attrs and "source" in fh.attrs
        except OSError:
            ours = False
        if ours:
            path.unlink()


def _check_root(root: str | Path) -> Path:
    path = Path(root)
    if not path.exists():
        raise InputError(f"{path}: folder not found; expected a folder of fastMRI .h5 files")
    if not path.is_dir():
        raise InputError(f"{path}: expected a folder of fastMRI .h5 files, got a file")
    return path.resolve()


def prepare_folder(
    root: str | Path,
    cache: str | Path | None = None,
    workers: int = 1,
    skip_bad: bool = False,
    progress: bool = True,
    calib_limit: int = MAX_CALIB_WIDTH,
) -> PreparedIndex:
    """Prepare every fastMRI multi-coil ``*.h5`` file below ``root`` (see the module docstring).

    Args:
        root: folder of fastMRI files, searched recursively.
        cache: cache folder (default ``root/.punmri-cache``).
        workers: number of processes preparing files in parallel (>= 1); the result does not
            depend on it. A script calling this with ``workers > 1`` must guard its entry point
            with ``if __name__ == "__main__":`` (worker processes are spawned).
        skip_bad: list bad files in ``index["bad"]`` and go on; without it the first bad file
            (in sorted order) raises and the files prepared so far stay in the cache.
        progress: show a tqdm progress bar (files).
        calib_limit: largest ESPIRiT calibration width.

    Returns:
        The index, also written to ``cache/index.json`` (last, atomically).

    Raises:
        InputError: ``root`` is not a folder or holds no ``.h5`` file, or (without ``skip_bad``)
            a file is bad; the message names the file and says what was expected.
    """
    from tqdm.auto import tqdm

    root = _check_root(root)
    cache_dir = (Path(cache) if cache is not None else default_cache(root)).resolve()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers: expected an integer >= 1, got {workers!r}")
    sources = source_files(root, cache_dir)
    if not sources:
        raise InputError(f"{root}: no .h5 files found below it; expected fastMRI files")
    cache_dir.mkdir(parents=True, exist_ok=True)

    settings = _settings(calib_limit)
    entries: dict[str, PreparedFile] = {}
    bad: dict[str, str] = {}
    jobs = []
    for rel in sources:
        entry = _cached_entry(cache_dir / rel, file_stamp(root / rel), settings)
        if entry is not None:
            entries[rel] = entry
        else:
            jobs.append(_Job(rel, str(root / rel), str(cache_dir / rel), calib_limit))

    bar = tqdm(
        total=len(sources),
        initial=len(entries),
        desc="prepare",
        unit="file",
        disable=not progress,
        leave=False,
    )
    with bar, contextlib.closing(_outcomes(jobs, workers)) as outcomes:
        for outcome in outcomes:
            for note in outcome.notes:
                warnings.warn(note, UserWarning, stacklevel=2)
            if outcome.entry is not None:
                entries[outcome.rel] = outcome.entry
            elif skip_bad:
                bad[outcome.rel] = str(outcome.error)
            else:
                message = str(outcome.error)
                if "--skip-bad" not in message:
                    message += " (use --skip-bad to list bad files and go on)"
                raise InputError(message)
            bar.update(1)

    index = PreparedIndex(
        root=root,
        cache=cache_dir,
        files=tuple(entries[rel] for rel in sources if rel in entries),
        bad=tuple(BadFile(rel, bad[rel]) for rel in sources if rel in bad),
    )
    _remove_leftovers(cache_dir, {cache_dir / entry.cache for entry in index.files})
    write_json_atomic(cache_dir / INDEX_NAME, index.to_json())
    return index


def load_index(root: str | Path, cache: str | Path | None = None) -> PreparedIndex:
    """Read the index of a prepared folder and check that it is up to date.

    Args:
        root: the prepared folder.
        cache: its cache folder (default ``root/.punmri-cache``).

    Returns:
        The :class:`PreparedIndex` (with ``root``/``cache`` as given, resolved, so a moved folder
        with its cache inside still loads).

    Raises:
        InputError: the folder was not prepared, the index is unreadable or of another version, or
            it is stale (a source changed, was deleted or added, or a cache file is missing); the
            message says to run ``punmri data prepare`` again.
    """
    index = read_index(_check_root(root), cache)
    problems = []
    for entry in index.files:
        source = index.source_path(entry)
        if not source.is_file():
            problems.append(f"{entry.file} was deleted")
        elif file_stamp(source) != entry.stamp:
            problems.append(f"{entry.file} changed")
        elif not index.cache_path(entry).is_file():
            problems.append(f"cache file {entry.cache} is missing")
    known = {entry.file for entry in index.files} | {entry.file for entry in index.bad}
    problems += [
        f"{rel} is new" for rel in source_files(index.root, index.cache) if rel not in known
    ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"{index.path}: stale prepared index: {problems[0]}{more} since it was prepared; "
            f"run `punmri data prepare {index.root}` again"
        )
    return index
