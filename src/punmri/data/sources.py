"""Generic 2D image sources: NIfTI, DICOM, NumPy, PNG and TIFF files.

:func:`load_images` turns files or folders into an :class:`ImageSet` of magnitude slices
normalised by :func:`punmri.data.volumes.normalize_magnitude` (clip to the 99.9th percentile,
divide by the maximum, so every non-empty slice spans [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from punmri.data.volumes import (
    load_volume,
    normalize_magnitude,
    resize_to_shape,
    select_tissue_slices,
    slice_volume,
)
from punmri.errors import InputError

SUPPORTED_KINDS: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".dcm": "dicom",
    ".npy": "npy",
    ".npz": "npz",
    ".png": "image",
    ".tif": "image",
    ".tiff": "image",
}
"""File-name suffix (lower case) -> reader kind."""

_SUPPORTED_TEXT = (
    "NIfTI (.nii, .nii.gz), DICOM (.dcm or a folder of DICOM files), NumPy (.npy, .npz), "
    "PNG (.png), TIFF (.tif, .tiff)"
)


@dataclass(frozen=True)
class ImageSet:
    """A stack of normalised magnitude images.

    Attributes:
        images: (N, H, W) float32 in [0, 1].
        names: one label per image, ``"<file>:<kind>:<index>"`` (e.g. ``brain.nii.gz:axial:042``).
        source: the input path(s) the images were read from.
    """

    images: np.ndarray
    names: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _kind_of(path: Path) -> str | None:
    """Reader kind of a file from its suffix, DICOM magic bytes for suffix-less files."""
    name = path.name.lower()
    for suffix, kind in SUPPORTED_KINDS.items():
        if name.endswith(suffix):
            return kind
    if path.suffix == "" and _has_dicom_magic(path):
        return "dicom"
    return None


def _has_dicom_magic(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _expand(paths: str | Path | Sequence[str | Path]) -> list[tuple[str, Path]]:
    """Resolve inputs to (kind, file) pairs; folders expand to their supported files (sorted)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise InputError(f"paths: expected at least one file or folder ({_SUPPORTED_TEXT})")
    found: list[tuple[str, Path]] = []
    for item in items:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: file or folder not found (expected {_SUPPORTED_TEXT})")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            kinds = [(_kind_of(p), p) for p in files]
            supported = [(k, p) for k, p in kinds if k is not None]
            if not supported:
                raise InputError(
                    f"{path}: folder holds no supported image files (expected {_SUPPORTED_TEXT})"
                )
            found.extend((k, p) for k, p in kinds if k is not None)
            continue
        kind = _kind_of(path)
        if kind is None:
            raise InputError(
                f"{path}: unsupported file type {''.join(path.suffixes) or '(no extension)'}; "
                f"expected {_SUPPORTED_TEXT}"
            )
        found.append((kind, path))
    return found


def _check_finite(stack: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(stack)):
        raise InputError(f"{where}: image contains NaN or Inf values; expected finite intensities")


def _as_real_stack(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate a NumPy array as a 2D image or (N, H, W) stack; return float32 magnitudes."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{where}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(
            f"{where}: expected a 2D image (H, W) or a stack (N, H, W), got shape {arr.shape}"
        )
    _check_finite(arr, where)
    mag = np.abs(arr) if np.iscomplexobj(arr) else arr
    return mag.astype(np.float32)


def _read_nifti(path: Path) -> tuple[np.ndarray, list[str]]:
    volume = load_volume(path)
    if volume.data.shape[2] == 1:
        # A 2D image: keep it as one slice in the same display orientation as axial slices.
        return slice_volume(volume, "axial"), [f"{path.name}:image:000"]
    stack = slice_volume(volume, "axial")
    return stack, [f"{path.name}:axial:{i:03d}" for i in range(stack.shape[0])]


def _read_npy(path: Path) -> tuple[np.ndarray, list[str]]:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt header, pickled object arrays, truncated data
        raise InputError(
            f"{path}: cannot read as a NumPy .npy array ({type(exc).__name__}: {exc})"
        ) from exc
    stack = _as_real_stack(np.asarray(arr), str(path))
    return stack, [f"{path.name}:slice:{i:03d}" for i in range(stack.shape[0])]


def _read_npz(path: Path) -> tuple[np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "images" in keys:
                key = "images"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise InputError(
                    f"{path}: .npz holds {len(keys)} arrays {keys}; expected a key 'images' "
                    "or exactly one array"
                )
            arr = np.asarray(archive[key])
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{path}: cannot read as a NumPy .npz archive ({type(exc).__name__}: {exc})"
        ) from exc
    stack = _as_real_stack(arr, f"{path}[{key}]")
    return stack, [f"{path.name}:{key}:{i:03d}" for i in range(stack.shape[0])]


def _pil_frame_to_array(frame: Any) -> np.ndarray:
    """Grayscale float32 pixels of one PIL frame, keeping 16-bit/float precision."""
    if frame.mode in ("I", "F") or frame.mode.startswith("I;16"):
        return np.asarray(frame, dtype=np.float32)
    if frame.mode != "L":
        frame = frame.convert("L")
    return np.asarray(frame, dtype=np.float32)


def _read_pil(path: Path) -> tuple[np.ndarray, list[str]]:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as img:
            frames = [_pil_frame_to_array(f) for f in ImageSequence.Iterator(img)]
    except Exception as exc:  # UnidentifiedImageError, truncated data, decoder errors
        raise InputError(
            f"{path}: cannot read as a PNG/TIFF image ({type(exc).__name__}: {exc})"
        ) from exc
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"{path}: TIFF pages have different sizes; expected equal-sized pages")
    stack = np.stack(frames)
    _check_finite(stack, str(path))
    return stack, [f"{path.name}:image:{i:03d}" for i in range(stack.shape[0])]


def _dicom_pixels(ds: Any, path: Path) -> np.ndarray:
    """Rescaled float32 pixels (F, H, W) of one DICOM dataset."""
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # missing PixelData, compressed syntax without a decoder, ...
        raise InputError(
            f"{path}: cannot decode DICOM pixel data ({type(exc).__name__}: {exc}); expected an "
            "image with uncompressed (or decodable) PixelData"
        ) from exc
    if int(ds.get("SamplesPerPixel", 1)) > 1 and pixels.ndim >= 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3].mean(axis=-1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or (frames > 1 and pixels.shape[0] != frames):
        raise InputError(f"{path}: unexpected DICOM pixel array shape {pixels.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _dicom_position(ds: Any) -> float | None:
    """Slice position along the slice normal, from ImagePositionPatient/ImageOrientationPatient."""
    pos = ds.get("ImagePositionPatient")
    if pos is None or len(pos) != 3:
        return None
    orient = ds.get("ImageOrientationPatient")
    if orient is None or len(orient) != 6:
        return float(pos[2])
    normal = np.cross(np.asarray(orient[:3], float), np.asarray(orient[3:], float))
    return float(np.dot(normal, np.asarray(pos, float)))


def _read_dicom_series(paths: list[Path]) -> list[tuple[np.ndarray, list[str], str]]:
    """Read DICOM files, group them by series and sort each series along the slice axis."""
    import pydicom

    series: dict[str, list[tuple[Path, Any]]] = {}
    for path in paths:
        try:
            ds = pydicom.dcmread(path, force=path.suffix.lower() == ".dcm")
        except Exception as exc:  # InvalidDicomError, truncated files, bad tags
            raise InputError(f"{path}: cannot read as DICOM ({type(exc).__name__}: {exc})") from exc
        if "PixelData" not in ds:
            raise InputError(f"{path}: DICOM file has no PixelData; expected an image")
        key = str(ds.get("SeriesInstanceUID", "")) or str(path.parent)
        series.setdefault(key, []).append((path, ds))

    out: list[tuple[np.ndarray, list[str], str]] = []
    for members in series.values():
        numbers = [m[1].get("InstanceNumber") for m in members]
        positions = [_dicom_position(m[1]) for m in members]
        if all(n is not None for n in numbers) and len({int(n) for n in numbers}) == len(numbers):
            order = sorted(range(len(members)), key=lambda i: int(numbers[i]))
        elif all(p is not None for p in positions):
            order = sorted(range(len(members)), key=lambda i: positions[i])
        else:
            order = sorted(range(len(members)), key=lambda i: str(members[i][0]))
        frames: list[np.ndarray] = []
        names: list[str] = []
        for i in order:
            path, ds = members[i]
            pixels = _dicom_pixels(ds, path)
            _check_finite(pixels, str(path))
            frames.extend(pixels)
            names.extend(f"{path.name}:dicom:{f:03d}" for f in range(pixels.shape[0]))
        first = members[order[0]][0]
        same_size = len({f.shape for f in frames}) == 1
        out.append((np.stack(frames) if same_size else frames, names, str(first.parent)))
    return out


def load_images(
    paths: str | Path | Sequence[str | Path],
    shape: tuple[int, int] | None = None,
    min_tissue: float = 0.0,
) -> ImageSet:
    """Load 2D magnitude images from files and folders, normalised to [0, 1].

    Readers by suffix: ``.nii``/``.nii.gz`` (3D volume -> axial slices; 2D -> one image; 4D
    raises), ``.dcm`` or suffix-less DICOM files (grouped per series, sorted by InstanceNumber,
    else ImagePositionPatient; RescaleSlope/Intercept applied), ``.npy`` (2D or (N, H, W); complex
    -> magnitude), ``.npz`` (array ``images``, else the only array), ``.png``/``.tif``/``.tiff``
    (grayscale; every TIFF page). A folder expands to its supported files, sorted by name (not
    recursive).

    Args:
        paths: a file, a folder, or a sequence of them.
        shape: output (H, W); every image is scaled to fit keeping its aspect ratio and
            padded/cropped (:func:`~punmri.data.volumes.resize_to_shape`). ``None`` keeps sizes,
            which then must all agree.
        min_tissue: keep only slices whose fraction of pixels above 0.1 * the maximum of their
            file's stack is at least this (0 keeps all).

    Returns:
        :class:`ImageSet` with float32 images (N, H, W) in [0, 1].
    """
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise InputError(f"min_tissue: expected a fraction in [0, 1], got {min_tissue!r}")
    if shape is not None:
        if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
            raise InputError(f"shape: expected two positive integers (H, W), got {shape!r}")
        shape = (int(shape[0]), int(shape[1]))
    items = _expand(paths)
    readers = {"nifti": _read_nifti, "npy": _read_npy, "npz": _read_npz, "image": _read_pil}

    groups: list[tuple[np.ndarray | list[np.ndarray], list[str], str]] = []
    dicoms = [p for k, p in items if k == "dicom"]
    dicom_done = False
    for kind, path in items:
        if kind != "dicom":
            stack, names = readers[kind](path)
            groups.append((stack, names, str(path)))
        elif not dicom_done:  # all DICOM series go where the first DICOM file was listed
            groups.extend(_read_dicom_series(dicoms))
            dicom_done = True

    images: list[np.ndarray] = []
    labels: list[str] = []
    for stack, names, _source in groups:
        if isinstance(stack, np.ndarray):
            keep = select_tissue_slices(stack, min_tissue)
        else:
            peak = max(float(np.max(f)) for f in stack)
            keep = [i for i, f in enumerate(stack) if np.mean(f > 0.1 * peak) >= min_tissue]
        for i in keep:
            image = stack[i]
            if shape is not None:
                image = resize_to_shape(image, shape)
            images.append(image)
            labels.append(names[i])
    source = ", ".join(str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths))
    if not images:
        raise InputError(
            f"{source}: no slice has a tissue fraction >= min_tissue={min_tissue}; lower min_tissue"
        )
    if len({im.shape for im in images}) != 1:
        sizes = sorted({im.shape for im in images})
        raise InputError(
            f"{source}: images have different sizes {sizes}; pass shape=(H, W) to resize them"
        )
    stack = normalize_magnitude(np.stack(images))
    return ImageSet(images=stack, names=labels, source=source)
