"""Training and evaluation slices from a prepared fastMRI folder, and shape-bucketed batches.

:class:`KSpaceDataset` serves the slices of the cache written by ``punmri data prepare DIR``
(default ``DIR/.punmri-cache/``: ``index.json`` plus one HDF5 file per source file holding
de-oversampled ``kspace``, ESPIRiT ``maps``, ``target`` and, for test-split files, ``mask``) as
:class:`~punmri.data.simulate.Sample` items at the data's native resolution; the index is read
and validated by :func:`punmri.data.prepared_index.read_index`. Per slice:

- ``target`` ``(h, W)`` complex64 = ``sum_c conj(S_c) * ifft2c(k_c)``, the SENSE combination of the
  fully sampled k-space (what MoDL is trained to reproduce);
- ``kspace`` ``(C, h, W)`` complex64 = the k-space times the column mask (unsampled columns are
  exactly 0); ``maps`` ``(C, h, W)`` complex64; ``mask`` ``(h, W)`` float32;
- ``extras``: ``rss`` ``(crop_h, crop_w)`` float32 reference (the file's ``reconstruction_rss``, or
  the RSS crop of the k-space when the file has none), ``volume`` (the file's path relative to
  ``DIR``), ``acquired`` ``[left, stop)`` int64, ``max`` (the file's ``max`` attribute, ``None``
  when it has none), ``has_target``.

Masks (:func:`~punmri.physics.sampling.fastmri_mask`, fastMRI's conventions) are pure functions of
seeds, never of a global RNG, so every worker, process and run draws the same ones:

- ``fixed_masks=True`` (validation/test): one mask per volume from
  ``np.random.default_rng([seed, zlib.crc32(basename)])``, the same for all of its slices (as
  fastMRI seeds validation masks by file name);
- otherwise (training): slice ``i`` at epoch ``e`` uses ``np.random.default_rng([seed, i, e])``;
  :meth:`KSpaceDataset.sample` takes the epoch explicitly, ``dataset[i]`` uses the epoch last given
  to :meth:`KSpaceDataset.set_epoch`;
- a file that stores its own ``mask`` (fastMRI test split: the k-space is already undersampled)
  always uses it.

HDF5 files are opened on first use in each process (never in ``__init__``), kept in a small
least-recently-used cache keyed by process id, and only the requested slice is read, so the
dataset is safe with forked or spawned ``DataLoader`` workers and its memory does not grow with the
number of files.

Typical training loop::

    data = KSpaceDataset(root, split="multicoil_train", accelerations=(4, 8),
                         center_fractions=(0.08, 0.04))
    batches = BucketBatchSampler(data, batch_size=4, shuffle=True, seed=0)
    loader = DataLoader(data, batch_sampler=batches, collate_fn=collate, num_workers=2)
    for epoch in range(epochs):
        data.set_epoch(epoch)
        batches.set_epoch(epoch)
        for batch in loader:
            ...

Workers copy the dataset when an iterator is created, so ``set_epoch`` must come before the loop
over ``loader`` (and ``persistent_workers=True`` would freeze the epoch of the first one).
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from torch.utils.data import Dataset, Sampler

from punmri.data.fastmri import rss_target
from punmri.data.prepared_index import (
    PreparedFile,
    PreparedIndex,
    default_cache,
    file_stamp,
    read_index,
)
from punmri.data.simulate import Sample
from punmri.errors import InputError
from punmri.physics.fft import ifft2c_numpy
from punmri.physics.sampling import FASTMRI_MASK_KINDS, as_floats, fastmri_mask


def volume_rng(seed: int, volume: str) -> np.random.Generator:
    """Generator of the fixed (validation/test) mask of a volume.

    ``np.random.default_rng([seed, zlib.crc32(basename)])`` where ``basename`` is the file name
    without folders, so the mask depends only on the seed and the file's name: the same for every
    slice, method, run, worker and process, and for any folder layout.

    Args:
        seed: run/evaluation seed (a non-negative integer).
        volume: the file's name or its path relative to the data folder.
    """
    return np.random.default_rng([int(seed), zlib.crc32(PurePosixPath(volume).name.encode())])


def _select(
    entries: list[PreparedFile], split: str | Sequence[str] | None, index_path: Path
) -> list[PreparedFile]:
    """The entries of ``split``: all (None), those below a subfolder (str), or listed files."""
    if split is None:
        return entries
    if isinstance(split, str):
        prefix = PurePosixPath(split.strip("/"))
        chosen = [e for e in entries if prefix in PurePosixPath(e.file).parents]
        if not chosen:
            folders = sorted({str(PurePosixPath(e.file).parent) for e in entries})
            raise InputError(
                f"split {split!r}: no prepared file below this subfolder of the data folder "
                f"({index_path}); folders with files: {folders}"
            )
        return chosen
    by_name = {e.file: e for e in entries}
    unknown = [name for name in split if name not in by_name]
    if unknown:
        example = f", e.g. {entries[0].file!r}" if entries else ""
        raise InputError(
            f"split: {unknown} not in {index_path} (paths relative to the data folder{example}); "
            "prepare them first or fix the names"
        )
    wanted = set(split)
    return [e for e in entries if e.file in wanted]


class KSpaceDataset(Dataset):
    """Slices of a prepared fastMRI folder as undersampled :class:`Sample` items.

    Args:
        folder: the data folder that was prepared (``punmri data prepare folder``).
        cache: its cache folder; ``None`` means ``folder/.punmri-cache``.
        split: which files to serve: ``None`` all; a subfolder of ``folder`` (e.g.
            ``"multicoil_val"``); or a list of file paths relative to ``folder``.
        mask_kind: ``"random"`` or ``"equispaced"`` (:func:`fastmri_mask`).
        center_fractions: fully sampled centre fraction(s), paired with ``accelerations``.
        accelerations: undersampling factor(s) over the acquired columns; one
            ``(center_fraction, acceleration)`` pair is drawn per mask.
        seed: seed of every mask.
        fixed_masks: one mask per volume from ``(seed, file name)`` (validation/test) instead of
            one per ``(seed, slice index, epoch)`` (training).
        max_open_files: HDF5 files kept open per process (least recently used are closed).
        check_stamps: refuse a cache entry whose source file still exists but changed size or
            modification time since it was prepared.

    Items: see the module docstring. Indices run over the files in index order (sorted paths),
    then their slices.

    Attributes:
        index: the cache's whole :class:`~punmri.data.prepared_index.PreparedIndex`.
        files: the :class:`~punmri.data.prepared_index.PreparedFile` entries of ``split``.
        bad: the index's :class:`~punmri.data.prepared_index.BadFile` entries (files that could
            not be prepared).
    """

    def __init__(
        self,
        folder: str | Path,
        cache: str | Path | None = None,
        split: str | Sequence[str] | None = None,
        mask_kind: str = "random",
        center_fractions: Sequence[float] = (0.08,),
        accelerations: Sequence[float] = (4,),
        seed: int = 0,
        fixed_masks: bool = False,
        max_open_files: int = 16,
        check_stamps: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.cache = default_cache(self.folder) if cache is None else Path(cache)
        if mask_kind not in FASTMRI_MASK_KINDS:
            raise InputError(
                f"mask_kind: expected one of {list(FASTMRI_MASK_KINDS)}, got {mask_kind!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
        if isinstance(max_open_files, bool) or not isinstance(max_open_files, int):
            raise InputError(f"max_open_files: expected an integer >= 1, got {max_open_files!r}")
        if max_open_files < 1:
            raise InputError(f"max_open_files: expected an integer >= 1, got {max_open_files}")
        self.mask_kind = mask_kind
        self.center_fractions = as_floats(center_fractions, "center_fractions")
        self.accelerations = as_floats(accelerations, "accelerations")
        if len(self.center_fractions) != len(self.accelerations):
            raise InputError(
                f"center_fractions {list(self.center_fractions)} and accelerations "
                f"{list(self.accelerations)} must have the same length: masks draw one "
                "(center_fraction, acceleration) pair"
            )
        self.seed = int(seed)
        self.fixed_masks = bool(fixed_masks)
        self.max_open_files = max_open_files
        self.epoch = 0

        self.index: PreparedIndex = read_index(self.folder, self.cache)
        self.bad = self.index.bad
        self.files = _select(list(self.index.files), split, self.index.path)
        if not self.files:
            raise InputError(
                f"{self.index.path}: no prepared files (bad: {len(self.bad)}); check "
                "the data folder and run `punmri data prepare` again"
            )
        for entry in self.files:
            self._check_entry(entry, check_stamps)
        self._check_masks()
        counts = np.array([e.slices for e in self.files], dtype=np.int64)
        self._file_of = np.repeat(np.arange(len(self.files), dtype=np.int64), counts)
        self._slice_of = np.concatenate([np.arange(n, dtype=np.int64) for n in counts])
        # Open HDF5 files of the process whose id is _handles_pid, least recently used first.
        self._handles: OrderedDict[int, Any] = OrderedDict()
        self._handles_pid: int | None = None

    # ----------------------------------------------------------------------------- validation
    def _check_entry(self, entry: PreparedFile, check_stamps: bool) -> None:
        cache_file = self.index.cache_path(entry)
        if not cache_file.is_file():
            raise InputError(
                f"{cache_file}: cache file of {entry.file} is missing; run `punmri data prepare "
                f"{self.folder}` again"
            )
        source = self.index.source_path(entry)
        if check_stamps and source.is_file():
            stamp = file_stamp(source)
            if stamp != entry.stamp:
                raise InputError(
                    f"{source}: changed since it was prepared (size/mtime {entry.stamp} -> "
                    f"{list(stamp)}); run `punmri data prepare {self.folder}` again"
                )

    def _check_masks(self) -> None:
        """Fail early on a (centre fraction, acceleration) pair that does not fit a file's width."""
        geometries = {(e.kspace_shape[1], e.acquired) for e in self.files if not e.has_mask}
        for width, acquired in sorted(geometries) or [(1000, (0, 1000))]:
            for cf, acc in zip(self.center_fractions, self.accelerations, strict=True):
                rng = np.random.default_rng(0)
                fastmri_mask(width, self.mask_kind, (cf,), (acc,), rng, acquired)

    # ------------------------------------------------------------------------------- indexing
    def __len__(self) -> int:
        return int(self._file_of.size)

    def _locate(self, index: int) -> tuple[int, int, int]:
        """``(index in [0, len), file position in self.files, slice in the file)``."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"KSpaceDataset index must be an integer, got {index!r}")
        if not -n <= index < n:
            raise IndexError(f"slice index {index} out of range for {n} slices")
        index = int(index) % n
        return index, int(self._file_of[index]), int(self._slice_of[index])

    def entry(self, index: int) -> PreparedFile:
        """The prepared file holding item ``index`` (no file is read)."""
        return self.files[self._locate(index)[1]]

    def kspace_shape(self, index: int) -> tuple[int, int, int]:
        """``(C, h, W)`` of item ``index``'s k-space and maps, from the index (no file is read)."""
        entry = self.entry(index)
        return (entry.coils, entry.kspace_shape[0], entry.kspace_shape[1])

    def name(self, index: int) -> str:
        """``"<file>:slice:<NNN>"`` of item ``index`` (file relative to the data folder)."""
        _, f, s = self._locate(index)
        return f"{self.files[f].file}:slice:{s:03d}"

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by ``dataset[i]`` for training masks (like ``DistributedSampler``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise InputError(f"epoch: expected a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    # ------------------------------------------------------------------------------ file access
    def _handle(self, file_index: int) -> Any:
        """Open HDF5 file ``self.files[file_index]`` of this process (opened on first use)."""
        pid = os.getpid()
        if self._handles_pid != pid:
            # Handles inherited through fork belong to the parent: drop them, open our own.
            self._handles = OrderedDict()
            self._handles_pid = pid
        handle = self._handles.get(file_index)
        if handle is not None:
            self._handles.move_to_end(file_index)
            return handle
        handle = self._open(self.files[file_index])
        self._handles[file_index] = handle
        while len(self._handles) > self.max_open_files:
            _, old = self._handles.popitem(last=False)
            old.close()
        return handle

    def _open(self, entry: PreparedFile) -> Any:
        import h5py

        path = self.index.cache_path(entry)
        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(
                f"{path}: cannot open the cache of {entry.file} ({exc}); run `punmri data "
                f"prepare {self.folder}` again"
            ) from exc
        c, (h, w) = entry.coils, entry.kspace_shape
        expected = {"kspace": (entry.slices, c, h, w), "maps": (entry.slices, c, h, w)}
        if entry.has_target:
            expected["target"] = (entry.slices, *entry.crop)
        if entry.has_mask:
            expected["mask"] = (w,)
        for key, shape in expected.items():
            found = handle[key].shape if key in handle else None
            if found != shape:
                handle.close()
                raise InputError(
                    f"{path}: dataset {key!r} has shape {found}, the index says {shape}; "
                    f"the cache is stale, run `punmri data prepare {self.folder}` again"
                )
        return handle

    def close(self) -> None:
        """Close this process's open HDF5 files (they reopen on the next access)."""
        if self._handles_pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles = OrderedDict()
        self._handles_pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()  # HDF5 handles do not pickle; reopened on demand
        state["_handles_pid"] = None
        return state

    # ------------------------------------------------------------------------------------ items
    def column_mask(self, index: int, epoch: int = 0) -> np.ndarray:
        """``(W,)`` float32 column mask of item ``index`` at ``epoch``.

        The file's stored mask when it has one; else the volume's fixed mask
        (``fixed_masks=True``, :func:`volume_rng`) or the training mask of
        ``np.random.default_rng([seed, index, epoch])``.
        """
        index, f, _ = self._locate(index)
        entry = self.files[f]
        if entry.has_mask:
            return np.asarray(self._handle(f)["mask"][()], dtype=np.float32)
        if self.fixed_masks:
            rng = volume_rng(self.seed, entry.file)
        else:
            rng = np.random.default_rng([self.seed, index, int(epoch)])
        return fastmri_mask(
            entry.kspace_shape[1],
            self.mask_kind,
            self.center_fractions,
            self.accelerations,
            rng,
            entry.acquired,
        )

    def sample(self, index: int, epoch: int = 0) -> Sample:
        """Item ``index`` with the training mask of ``epoch`` (ignored for fixed/stored masks).

        Pure: the result depends only on the cache, the dataset's settings, ``index`` and
        ``epoch``, not on earlier calls, the process or the worker.
        """
        index, f, s = self._locate(index)
        entry = self.files[f]
        handle = self._handle(f)
        kspace = np.asarray(handle["kspace"][s], dtype=np.complex64)
        maps = np.asarray(handle["maps"][s], dtype=np.complex64)
        if entry.has_target:
            rss = np.asarray(handle["target"][s], dtype=np.float32)
        else:
            rss = rss_target(kspace, entry.crop)
        target = np.sum(np.conj(maps) * ifft2c_numpy(kspace), axis=0).astype(np.complex64)
        cols = self.column_mask(index, epoch)
        kspace *= cols
        mask = np.ascontiguousarray(np.broadcast_to(cols, entry.kspace_shape))
        extras: dict[str, Any] = {
            "rss": rss,
            "volume": entry.file,
            "acquired": np.asarray(entry.acquired, dtype=np.int64),
            "max": entry.max,
            "has_target": entry.has_target,
        }
        return Sample(
            target=target,
            kspace=kspace,
            maps=maps,
            mask=mask,
            name=f"{entry.file}:slice:{s:03d}",
            extras=extras,
        )

    def __getitem__(self, index: int) -> Sample:
        return self.sample(index, self.epoch)


class _Shaped(Protocol):
    def __len__(self) -> int: ...

    def kspace_shape(self, index: int) -> tuple[int, ...]: ...


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose items share one k-space shape, reshuffled per epoch.

    Items are grouped by ``dataset.kspace_shape(i)`` (``(C, h, W)``: coils and width vary across
    fastMRI files); each batch holds indices of one group only, so
    :func:`punmri.data.batches.collate` can stack it. With ``shuffle`` the order inside each
    group and the order of the batches come from ``np.random.default_rng([seed, epoch])``; without
    it batches keep dataset order (ordered by their first index). Deterministic: the batches of an
    epoch depend only on the shapes, ``batch_size``, ``shuffle``, ``seed``, ``drop_last`` and the
    epoch (:meth:`set_epoch`).

    Args:
        dataset: anything with ``len()`` and ``kspace_shape(i)``, e.g. a :class:`KSpaceDataset`.
        batch_size: most items per batch.
        shuffle: reshuffle every epoch (training); False for evaluation.
        seed: seed of the shuffles.
        drop_last: drop each group's last incomplete batch (else it is kept, smaller).
    """

    def __init__(
        self,
        dataset: _Shaped,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in range(len(dataset)):
            groups.setdefault(tuple(int(d) for d in dataset.kspace_shape(i)), []).append(i)
        self.shapes = sorted(groups)
        self._groups = [np.asarray(groups[shape], dtype=np.int64) for shape in self.shapes]
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch whose shuffle :meth:`__iter__` yields."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise InputError(f"epoch: expected a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch``, in the order they are served."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        out: list[list[int]] = []
        for group in self._groups:
            order = rng.permutation(group) if self.shuffle else group
            stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
            out += [
                [int(i) for i in order[j : j + self.batch_size]]
                for j in range(0, stop, self.batch_size)
            ]
        if self.shuffle:
            return [out[k] for k in rng.permutation(len(out))]
        return sorted(out, key=lambda batch: batch[0])

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        if self.drop_last:
            return sum(len(g) // self.batch_size for g in self._groups)
        return sum(-(-len(g) // self.batch_size) for g in self._groups)
