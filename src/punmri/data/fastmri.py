"""fastMRI HDF5 files: measured k-space and reconstruction targets.

Layout (fastMRI conventions): dataset ``kspace`` complex64, (slices, coils, H, W) multi-coil or
(slices, H, W) single-coil, with the readout (H, usually 2x oversampled) before the phase-encode
axis W; optional ``reconstruction_rss`` (multi-coil) / ``reconstruction_esc`` (single-coil)
(slices, h, w) float32; optional ``mask`` (W,); optional ``ismrmrd_header`` XML; file attributes
such as ``acquisition``, ``max``, ``norm`` and ``patient_id``.

The target is the central crop (the header's ``reconSpace`` matrix size, else 320x320) of the
root-sum-of-squares over coils of the centered orthonormal inverse 2D FFT of k-space. Targets
are kept in k-space units (not normalised to [0, 1]) so they stay consistent with the k-space.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from punmri.data.volumes import fit_to_shape
from punmri.errors import InputError
from punmri.physics.fft import ifft2c_numpy, rss_numpy

DEFAULT_CROP: tuple[int, int] = (320, 320)
"""Target size (h, w) used when the file has no ISMRMRD header."""

TARGET_KEYS: dict[bool, str] = {True: "reconstruction_rss", False: "reconstruction_esc"}
"""Stored reconstruction dataset name for multi-coil (True) and single-coil (False) files."""


@dataclass(frozen=True)
class FastMRISlice:
    """One slice of a fastMRI file.

    Attributes:
        kspace: (C, H, W) complex64 measured k-space (C=1 for single-coil), readout along H.
        target: (h, w) float32 magnitude target in k-space units: the stored reconstruction when
            the file has one, else the RSS of the centered orthonormal IFFT, center-cropped.
        crop: (h, w) target size.
        name: ``"<file>:slice:<index>"``, e.g. ``file1000001.h5:slice:007``.
        attrs: file attributes plus ``file``, ``slice``, ``target_source`` (dataset name or
            ``"computed"``) and, when the header has them, ``encoded_size``/``recon_size``.
        mask: (W,) float32 sampling mask stored in the file, or ``None``.
    """

    kspace: np.ndarray
    target: np.ndarray
    crop: tuple[int, int]
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None


def rss_target(kspace: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """fastMRI target of one slice: center crop of the RSS of ``ifft2c(kspace)``.

    Args:
        kspace: (C, H, W) complex k-space.
        crop: (h, w) target size; clamped to (H, W) when larger (as fastMRI does for narrow
            brain scans).

    Returns:
        (min(h, H), min(w, W)) float32 image.
    """
    image = rss_numpy(ifft2c_numpy(kspace), axis=0).astype(np.float32, copy=False)
    size = (min(crop[0], image.shape[0]), min(crop[1], image.shape[1]))
    return fit_to_shape(image, size)


def parse_ismrmrd_header(raw: Any) -> dict[str, tuple[int, int, int]] | None:
    """Geometry from an ISMRMRD XML header (``ismrmrd_header`` dataset value).

    Args:
        raw: the header as bytes, str or a scalar/byte numpy array.

    Returns:
        ``None`` when the XML cannot be parsed; else a dict holding, for the entries found and
        readable, ``encoded_size`` and ``recon_size`` ((x, y, z) matrix sizes of
        ``encoding/encodedSpace`` and ``encoding/reconSpace``) and ``limits`` ((minimum, maximum,
        center) of ``encoding/encodingLimits/kspace_encoding_step_1``, the phase-encode lines).
    """
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.shape == () else raw.tobytes()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        root = ET.fromstring(str(raw))
    except ET.ParseError:
        return None
    found: dict[str, tuple[int, int, int]] = {}
    for tag, key in (("encodedSpace", "encoded_size"), ("reconSpace", "recon_size")):
        node = root.find(f".//{{*}}encoding/{{*}}{tag}/{{*}}matrixSize")
        if node is None:
            continue
        try:
            dims = tuple(int(node.findtext(f"{{*}}{ax}", "1")) for ax in ("x", "y", "z"))
        except ValueError:
            continue
        found[key] = (dims[0], dims[1], dims[2])
    node = root.find(".//{*}encoding/{*}encodingLimits/{*}kspace_encoding_step_1")
    if node is not None:
        texts = [node.findtext(f"{{*}}{name}") for name in ("minimum", "maximum", "center")]
        try:
            values = [int(str(text).strip()) for text in texts]
        except ValueError:
            values = []
        if len(values) == 3:
            found["limits"] = (values[0], values[1], values[2])
    return found


def _header_sizes(raw: Any) -> dict[str, tuple[int, int, int]]:
    """``encoded_size`` and ``recon_size`` (x, y, z) from an ISMRMRD XML header, if parseable."""
    parsed = parse_ismrmrd_header(raw) or {}
    return {key: parsed[key] for key in ("encoded_size", "recon_size") if key in parsed}


def _plain(value: Any) -> Any:
    """HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _open(path: Path) -> Any:
    import h5py

    if not path.exists():
        raise InputError(f"{path}: fastMRI file not found (expected an HDF5 .h5 file)")
    if not path.is_file():
        raise InputError(f"{path}: expected a fastMRI HDF5 file, got a directory")
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # OSError for truncated/non-HDF5 files
        raise InputError(
            f"{path}: cannot open as HDF5; the file is corrupt or not a fastMRI .h5 file "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def is_fastmri_file(path: str | Path) -> bool:
    """True when ``path`` is a readable HDF5 file with a complex ``kspace`` dataset."""
    import h5py

    path = Path(path)
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as fh:
            ds = fh.get("kspace")
            return isinstance(ds, h5py.Dataset) and ds.dtype.kind == "c" and ds.ndim in (3, 4)
    except Exception:  # unreadable file: not a fastMRI file
        return False


def _read_target(fh: Any, key: str, path: Path, n_slices: int) -> Any:
    """The stored reconstruction dataset, validated, or ``None``."""
    if key not in fh:
        return None
    ds = fh[key]
    if ds.ndim != 3 or ds.shape[0] != n_slices or ds.dtype.kind not in "fiu":
        raise InputError(
            f"{path}: dataset {key!r} has shape {ds.shape} and dtype {ds.dtype}; expected real "
            f"(slices={n_slices}, h, w)"
        )
    return ds


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn h5py errors while reading ``path`` into one-line :class:`InputError`.

    h5py raises ``OSError``, ``KeyError`` or ``RuntimeError`` on truncated or damaged datasets;
    an :class:`InputError` raised inside passes through unchanged.
    """
    try:
        yield
    except (OSError, KeyError, RuntimeError) as exc:
        raise InputError(
            f"{path}: failed reading fastMRI data ({type(exc).__name__}: {exc}); the file may be "
            "truncated or corrupt"
        ) from exc


def _kspace_dataset(fh: Any, path: Path) -> Any:
    """The ``kspace`` dataset of an open fastMRI file, checked to be a complex HDF5 dataset.

    Args:
        fh: the open ``h5py.File``.
        path: the file's path (for messages).

    Returns:
        The ``h5py.Dataset`` (not read); its number of dimensions is left to the caller.
    """
    import h5py

    ds = fh.get("kspace")
    if not isinstance(ds, h5py.Dataset):
        raise InputError(
            f"{path}: no 'kspace' dataset (found {sorted(fh.keys())}); expected a fastMRI file"
        )
    if ds.dtype.kind != "c":
        raise InputError(f"{path}: 'kspace' has dtype {ds.dtype}; expected complex (complex64)")
    return ds


def _read_mask(fh: Any, path: Path, width: int) -> np.ndarray | None:
    """The file's stored sampling ``mask`` (test split) as (W,) float32, or ``None``.

    Args:
        fh: the open ``h5py.File``.
        path: the file's path (for messages).
        width: W, the length of the k-space's last (phase-encode) axis.
    """
    if "mask" not in fh:
        return None
    mask = np.asarray(fh["mask"][()], dtype=np.float32)
    if mask.shape != (width,):
        raise InputError(
            f"{path}: 'mask' has shape {mask.shape}; expected ({width},) along the last "
            "k-space axis"
        )
    return mask


def read_fastmri(path: str | Path, slices: slice | None = None) -> list[FastMRISlice]:
    """Read slices of a fastMRI HDF5 file.

    Args:
        path: fastMRI ``.h5`` file (single- or multi-coil).
        slices: which slices to read (e.g. ``slice(10, 20)``); ``None`` reads all.

    Returns:
        One :class:`FastMRISlice` per selected slice, in file order.
    """
    path = Path(path)
    if slices is not None and not isinstance(slices, slice):
        raise InputError(f"slices: expected a slice object or None, got {slices!r}")
    fh = _open(path)
    with _reading(path), fh:
        return _read_open_file(fh, path, slices)


def _read_open_file(fh: Any, path: Path, slices: slice | None) -> list[FastMRISlice]:
    ds = _kspace_dataset(fh, path)
    if ds.ndim not in (3, 4):
        raise InputError(
            f"{path}: 'kspace' has shape {ds.shape}; expected (slices, coils, H, W) multi-coil "
            "or (slices, H, W) single-coil"
        )
    multicoil = ds.ndim == 4
    n_slices, width = ds.shape[0], ds.shape[-1]
    file_attrs = {str(k): _plain(v) for k, v in fh.attrs.items()}
    sizes = _header_sizes(fh["ismrmrd_header"][()]) if "ismrmrd_header" in fh else {}
    file_attrs.update(sizes)
    crop = DEFAULT_CROP
    if "recon_size" in sizes:
        crop = (sizes["recon_size"][0], sizes["recon_size"][1])

    key = TARGET_KEYS[multicoil]
    target_ds = _read_target(fh, key, path, n_slices)
    mask = _read_mask(fh, path, width)

    out: list[FastMRISlice] = []
    for index in range(n_slices)[slices if slices is not None else slice(None)]:
        kspace = np.asarray(ds[index], dtype=np.complex64)
        if not multicoil:
            kspace = kspace[None]
        if not np.all(np.isfinite(kspace)):
            raise InputError(
                f"{path}: slice {index} of 'kspace' contains NaN or Inf values; expected finite "
                "k-space"
            )
        if target_ds is not None:
            target = np.asarray(target_ds[index], dtype=np.float32)
            if not np.all(np.isfinite(target)):
                raise InputError(f"{path}: slice {index} of {key!r} contains NaN or Inf values")
            source = key
        else:
            target = rss_target(kspace, crop)
            source = "computed"
        attrs = dict(file_attrs, file=str(path), slice=index, target_source=source)
        out.append(
            FastMRISlice(
                kspace=kspace,
                target=target,
                crop=(int(target.shape[0]), int(target.shape[1])),
                name=f"{path.name}:slice:{index:03d}",
                attrs=attrs,
                mask=None if mask is None else mask.copy(),
            )
        )
    return out
