"""The index of a prepared fastMRI folder: ``CACHE/index.json``, written and read in one place.

:func:`punmri.data.prepare.prepare_folder` writes it (:meth:`PreparedIndex.to_json`) and
:class:`punmri.data.kspace_dataset.KSpaceDataset` serves the slices it lists; both go through this
module for its names, its entries and their validation. Layout::

    {"format": "punmri-prepared", "version": 1, "root": "<abs DIR>",
     "files": [{"file": "train/file1.h5", "cache": "train/file1.h5", "slices": 16, "coils": 8,
                "kspace_shape": [320, 368], "crop": [320, 320], "acquired": [17, 351],
                "acquisition": "AXT1", "max": 0.0012, "has_target": true, "has_mask": false,
                "stamp": [size_bytes, mtime_ns]}],
     "bad": [{"file": "train/broken.h5", "error": "one-line message"}]}

:func:`read_index` checks every field and names the one that is wrong; it does not compare the
index with the source files (:func:`punmri.data.prepare.load_index` does).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from punmri.errors import InputError

__all__ = [
    "CACHE_DIRNAME",
    "FORMAT",
    "INDEX_NAME",
    "VERSION",
    "BadFile",
    "PreparedFile",
    "PreparedIndex",
    "default_cache",
    "file_stamp",
    "read_index",
]

FORMAT = "punmri-prepared"
"""Value of ``format`` in ``index.json``."""

VERSION = 1
"""Value of ``version`` in ``index.json``; bumped when the cache layout changes."""

CACHE_DIRNAME = ".punmri-cache"
"""Name of the default cache folder inside the prepared folder."""

INDEX_NAME = "index.json"
"""Name of the index file inside the cache folder."""

_ENTRY_KEYS: tuple[str, ...] = (
    "file",
    "cache",
    "slices",
    "coils",
    "kspace_shape",
    "crop",
    "acquired",
    "acquisition",
    "max",
    "has_target",
    "has_mask",
    "stamp",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(value: Any, where: str) -> tuple[int, int]:
    """Two integers from a JSON list (or tuple); :class:`InputError` naming ``where`` otherwise."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(_is_int, value)):
        raise InputError(f"{where}: expected a list of two integers, got {value!r}")
    return int(value[0]), int(value[1])


def _typed(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data[key]
    if not isinstance(value, kind):
        raise InputError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class PreparedFile:
    """One prepared source file: an entry of ``index.json["files"]``.

    Attributes:
        file: source path relative to the prepared folder (posix), e.g. ``train/file1.h5``.
        cache: path of the per-file cache relative to the cache folder (posix).
        slices: number of slices.
        coils: number of coils C.
        kspace_shape: (h, W) of the cached k-space and maps (readout oversampling removed).
        crop: (crop_h, crop_w) target size (the reconstruction size).
        acquired: [left, stop) acquired phase-encode columns, ``0 <= left < stop <= W``.
        acquisition: the file's ``acquisition`` attribute (e.g. ``"CORPD_FBK"``), or ``""``.
        max: the file's ``max`` attribute (max of the target over the volume), or ``None``.
        has_target: the cache holds ``target`` (the source has ``reconstruction_rss``).
        has_mask: the cache holds ``mask`` (the source is a test-split file, k-space undersampled).
        stamp: (size in bytes, mtime in ns) of the source when it was prepared.
    """

    file: str
    cache: str
    slices: int
    coils: int
    kspace_shape: tuple[int, int]
    crop: tuple[int, int]
    acquired: tuple[int, int]
    acquisition: str
    max: float | None
    has_target: bool
    has_mask: bool
    stamp: tuple[int, int]

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        for key in ("kspace_shape", "crop", "acquired", "stamp"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "entry") -> PreparedFile:
        """Validated entry from its ``index.json`` dict.

        Args:
            data: the decoded JSON object.
            where: what to call it in error messages, e.g. ``".../index.json: files[3]"``.

        Raises:
            InputError: a field is missing, has the wrong type or sizes that do not fit together;
                the message names ``where`` and the field.
        """
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected an object, got {type(data).__name__}")
        missing = [key for key in _ENTRY_KEYS if key not in data]
        if missing:
            raise InputError(
                f"{where}: missing {missing}; the index was written by another version"
            )
        for key in ("slices", "coils"):
            if not _is_int(data[key]) or data[key] < 1:
                raise InputError(f"{where}.{key}: expected a positive integer, got {data[key]!r}")
        h, w = _pair(data["kspace_shape"], f"{where}.kspace_shape")
        crop = _pair(data["crop"], f"{where}.crop")
        left, stop = _pair(data["acquired"], f"{where}.acquired")
        if min(h, w, *crop) < 1 or not 0 <= left < stop <= w:
            raise InputError(
                f"{where}: inconsistent sizes kspace_shape={[h, w]}, crop={list(crop)}, "
                f"acquired={[left, stop]} (expected positive sizes and 0 <= left < stop <= W)"
            )
        peak = data["max"]
        if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float))):
            raise InputError(f"{where}.max: expected a number or null, got {peak!r}")
        return cls(
            file=_typed(data, "file", str, where),
            cache=_typed(data, "cache", str, where),
            slices=data["slices"],
            coils=data["coils"],
            kspace_shape=(h, w),
            crop=crop,
            acquired=(left, stop),
            acquisition=_typed(data, "acquisition", str, where),
            max=None if peak is None else float(peak),
            has_target=_typed(data, "has_target", bool, where),
            has_mask=_typed(data, "has_mask", bool, where),
            stamp=_pair(data["stamp"], f"{where}.stamp"),
        )


@dataclass(frozen=True)
class BadFile:
    """A source skipped by ``skip_bad``: an entry of ``index.json["bad"]``.

    Attributes:
        file: source path relative to the prepared folder (posix).
        error: the one-line reason (the :class:`~punmri.errors.InputError` message).
    """

    file: str
    error: str

    @classmethod
    def from_json(cls, data: Any, where: str = "bad entry") -> BadFile:
        """Validated entry from its ``index.json`` dict (``{"file": str, "error": str}``)."""
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), str) for key in ("file", "error")
        ):
            raise InputError(f'{where}: expected {{"file": str, "error": str}}, got {data!r}')
        return cls(file=data["file"], error=data["error"])


@dataclass(frozen=True)
class PreparedIndex:
    """A prepared folder: the contents of ``CACHE/index.json``.

    Attributes:
        root: the prepared folder (absolute).
        cache: the cache folder (absolute).
        files: the prepared files, sorted by ``file``.
        bad: the files skipped as bad, sorted by ``file``.
    """

    root: Path
    cache: Path
    files: tuple[PreparedFile, ...]
    bad: tuple[BadFile, ...] = ()

    @property
    def path(self) -> Path:
        """Absolute path of ``index.json``."""
        return self.cache / INDEX_NAME

    @property
    def slices(self) -> int:
        """Total number of slices over all prepared files."""
        return sum(entry.slices for entry in self.files)

    def source_path(self, entry: PreparedFile) -> Path:
        """Absolute path of an entry's source file."""
        return self.root / entry.file

    def cache_path(self, entry: PreparedFile) -> Path:
        """Absolute path of an entry's cache file."""
        return self.cache / entry.cache

    def to_json(self) -> dict[str, Any]:
        """The ``index.json`` content."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "root": str(self.root),
            "files": [entry.to_json() for entry in self.files],
            "bad": [asdict(entry) for entry in self.bad],
        }


def default_cache(root: str | Path) -> Path:
    """The default cache folder of a prepared folder: ``root/.punmri-cache``."""
    return Path(root) / CACHE_DIRNAME


def file_stamp(path: str | Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file: what marks a cache file up to date."""
    info = os.stat(path)
    return int(info.st_size), int(info.st_mtime_ns)


def read_index(root: str | Path, cache: str | Path | None = None) -> PreparedIndex:
    """Read and validate the ``index.json`` of a prepared folder (not its freshness).

    Args:
        root: the prepared folder.
        cache: its cache folder (default ``root/.punmri-cache``).

    Returns:
        The :class:`PreparedIndex`, with ``root``/``cache`` as given (resolved), not as recorded,
        so a moved folder with its cache inside still reads.

    Raises:
        InputError: the folder was not prepared, or the index is unreadable, of another format or
            version, or has a malformed field (the message names ``index.json`` and the field);
            the message says to run ``punmri data prepare``.
    """
    root = Path(root).resolve()
    cache_dir = (Path(cache) if cache is not None else default_cache(root)).resolve()
    path = cache_dir / INDEX_NAME
    again = f"run `punmri data prepare {root}` again"
    if not path.is_file():
        raise InputError(
            f"{root}: not prepared ({path} not found); run `punmri data prepare {root}` first "
            "(or pass the cache folder it wrote)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: unreadable prepared index ({type(exc).__name__}: {exc}); {again}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{path}: not a punmri prepared index (format {FORMAT!r}, found {found!r}); {again}"
        )
    if data.get("version") != VERSION:
        raise InputError(
            f"{path}: prepared with index version {data.get('version')}, this punmri reads "
            f"version {VERSION}; {again}"
        )
    for key in ("files", "bad"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{path}: '{key}' must be a list, got {data.get(key)!r}; {again}")
    try:
        files = tuple(
            PreparedFile.from_json(item, f"{path}: files[{i}]")
            for i, item in enumerate(data["files"])
        )
        bad = tuple(
            BadFile.from_json(item, f"{path}: bad[{i}]") for i, item in enumerate(data["bad"])
        )
    except InputError as exc:
        raise InputError(f"{exc}; {again}") from exc
    return PreparedIndex(root=root, cache=cache_dir, files=files, bad=bad)
