"""Batches of simulated slices as torch tensors, and the deterministic training stream.

The training stream is a pure function of ``(seed, step)``: the slice order is a fresh permutation
per epoch and every sample's physics and augmentation come from generators seeded with
``(seed, slice, epoch)``. Resuming at step ``s`` therefore reproduces exactly the batches an
uninterrupted run would have seen, with no data-loader state to save, DataLoader workers
(``train.workers``) prepare the same batches ahead of the training loop, and the processes of a
distributed run each take their equal share of the same global batch (:func:`rank_share`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..config import PhysicsConfig
from ..errors import InputError
from ..physics import SenseOperator
from .simulate import Sample, augment_image, simulate


@dataclass
class Batch:
    """A batch: ``kspace``/``maps`` ``(B, C, H, W)`` complex64, ``mask`` ``(B, H, W)`` float32,
    ``target`` ``(B, H, W)`` complex64, ``names`` (B,)."""

    kspace: torch.Tensor
    maps: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    names: list[str]

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``."""
        return Batch(
            self.kspace.to(device),
            self.maps.to(device),
            self.mask.to(device),
            self.target.to(device),
            self.names,
        )

    def operator(self) -> SenseOperator:
        """The SENSE operator of this batch's acquisitions."""
        return SenseOperator(self.maps, self.mask)

    def __len__(self) -> int:
        return len(self.names)


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples of equal size into a :class:`Batch`."""
    return Batch(
        kspace=torch.from_numpy(np.stack([s.kspace for s in samples])),
        maps=torch.from_numpy(np.stack([s.maps for s in samples])),
        mask=torch.from_numpy(np.stack([s.mask for s in samples]).astype(np.float32)),
        target=torch.from_numpy(np.stack([s.target for s in samples])),
        names=[s.name for s in samples],
    )


def suite_seed(name: str) -> int:
    """Stable integer for a suite name (independent of Python's hash randomisation)."""
    return zlib.crc32(name.encode())


def fixed_samples(
    images: np.ndarray,
    names: Sequence[str],
    physics: PhysicsConfig,
    seed: int,
    suite: str,
) -> list[Sample]:
    """Simulate a fixed evaluation set: slice ``i`` uses generator ``(seed, suite, i)``."""
    return [
        simulate(img, physics, np.random.default_rng([seed, suite_seed(suite), i]), name=n)
        for i, (img, n) in enumerate(zip(images, names, strict=True))
    ]


def sample_groups(samples: Iterable[Sample], batch_size: int) -> Iterator[list[Sample]]:
    """Consecutive groups of at most ``batch_size`` samples, read lazily; a group never mixes
    k-space shapes (measured volumes differ in width): it ends early where the shape changes."""
    group: list[Sample] = []
    for sample in samples:
        if group and (len(group) == batch_size or sample.kspace.shape != group[0].kspace.shape):
            yield group
            group = []
        group.append(sample)
    if group:
        yield group


def batches(samples: Sequence[Sample], batch_size: int) -> list[Batch]:
    """The :func:`sample_groups` of a fixed sample list, collated (the last batch of a shape may
    be smaller)."""
    return [collate(group) for group in sample_groups(samples, batch_size)]


def rank_share(batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """``(first, stop)``: the entries of a global batch of ``batch_size`` slices that process
    ``rank`` of ``world`` computes (equal contiguous shares, rank order).

    Raises:
        InputError: when ``batch_size`` does not divide by ``world`` (unequal shares would weight
            the slices of the smaller shares more in the averaged gradient).
    """
    if not 0 <= rank < world:
        raise InputError(f"process rank {rank} is outside a world of {world} processes")
    if batch_size % world:
        fits = sorted({d for d in range(1, batch_size + 1) if batch_size % d == 0})
        raise InputError(
            f"train.batch_size={batch_size} is the global batch of a step, split over {world} "
            f"processes, and does not divide by {world}: set train.batch_size to a multiple of "
            f"{world} (e.g. {world * -(-batch_size // world)}) or start a number of processes "
            f"that divides it ({', '.join(map(str, fits))})"
        )
    share = batch_size // world
    return rank * share, (rank + 1) * share


class SliceSource(Protocol):
    """Training slices that can be drawn as samples: ``sample(index, epoch)`` is a pure function
    of its arguments (so any worker or process draws the same sample)."""

    names: list[str]

    def __len__(self) -> int: ...

    def sample(self, index: int, epoch: int) -> Sample: ...


class SimulatedSlices:
    """Magnitude images ``(N, H, W)`` simulated into samples on demand.

    Args:
        images: training slices, float32 in [0, 1].
        names: one name per slice.
        physics: simulation settings; ``physics.fresh`` False draws mask, phase, coils and noise
            once per slice (the same at every epoch), True redraws them for every sample.
        seed: run seed.
        augment: apply :func:`augment_image` (redrawn every epoch).
    """

    def __init__(
        self,
        images: np.ndarray,
        names: Sequence[str],
        physics: PhysicsConfig,
        seed: int,
        augment: bool,
    ) -> None:
        self.images = images
        self.names = list(names)
        self.physics = physics
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, epoch: int) -> Sample:
        """Training sample of slice ``index`` at ``epoch``."""
        image = self.images[index]
        if self.augment:
            image = augment_image(image, np.random.default_rng([self.seed, 1, index, epoch]))
        draw = epoch if self.physics.fresh else 0
        rng = np.random.default_rng([self.seed, 2, index, draw])
        return simulate(image, self.physics, rng, name=self.names[index])


class TrainingStream:
    """Deterministic stream of training batches: the batch of a step is a pure function of
    ``(seed, step, batch_size)`` (slices in a seeded permutation per epoch), so a resumed run and
    any number of DataLoader workers see the same batches.

    Args:
        source: the training slices (:class:`SimulatedSlices`, or a dataset of measured k-space
            with a ``sample(index, epoch)`` method).
        seed: run seed (orders the slices of each epoch).
    """

    def __init__(self, source: SliceSource, seed: int) -> None:
        if len(source) == 0:
            raise InputError("the training set is empty: no slices to train on")
        self.source = source
        self.seed = seed

    @classmethod
    def simulated(
        cls,
        images: np.ndarray,
        names: Sequence[str],
        physics: PhysicsConfig,
        seed: int,
        augment: bool,
    ) -> TrainingStream:
        """The stream of :class:`SimulatedSlices` of ``images`` (arguments as there)."""
        return cls(SimulatedSlices(images, names, physics, seed, augment), seed)

    def sample(self, index: int, epoch: int) -> Sample:
        """Training sample of slice ``index`` at ``epoch``."""
        return self.source.sample(index, epoch)

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> Batch:
        """The batch of optimizer step ``step`` (0-based), or with ``world > 1`` the share of
        process ``rank``: entries ``[rank * B / world, (rank + 1) * B / world)`` of the global batch
        of ``B = batch_size`` slices (:func:`rank_share`), so the step's global batch is the same
        whatever the number of processes."""
        n = len(self.source)
        orders: dict[int, np.ndarray] = {}  # one permutation per epoch touched by this batch
        samples = []
        first, stop = rank_share(batch_size, rank, world)
        for pos in range(step * batch_size + first, step * batch_size + stop):
            epoch, offset = divmod(pos, n)
            if epoch not in orders:
                orders[epoch] = np.random.default_rng([self.seed, 3, epoch]).permutation(n)
            samples.append(self.sample(int(orders[epoch][offset]), epoch))
        return collate(samples)

    def loader(
        self,
        start: int,
        stop: int,
        batch_size: int,
        workers: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[Batch]:
        """The batches of steps ``start .. stop - 1`` in order (process ``rank``'s share of each
        when ``world > 1``, as in :meth:`batch`); with ``workers > 0`` they are prepared ahead in
        that many DataLoader worker processes (same batches either way)."""
        rank_share(batch_size, rank, world)  # a batch that does not split fails here, at once
        if workers <= 0:
            return (self.batch(step, batch_size, rank, world) for step in range(start, stop))
        steps = _StepBatches(self, start, stop, batch_size, rank, world)
        return iter(
            torch.utils.data.DataLoader(
                steps,
                batch_size=None,
                num_workers=workers,
                collate_fn=_as_is,
                worker_init_fn=_one_thread,
                persistent_workers=False,
            )
        )


class _StepBatches(torch.utils.data.Dataset):
    """Item ``i``: the batch of step ``start + i`` of a stream."""

    def __init__(
        self,
        stream: TrainingStream,
        start: int,
        stop: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.stream, self.start, self.stop, self.batch_size = stream, start, stop, batch_size
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> Batch:
        return self.stream.batch(self.start + i, self.batch_size, self.rank, self.world)


def _as_is(batch: Batch) -> Batch:
    return batch


def _one_thread(worker_id: int) -> None:
    """Workers simulate with numpy; one torch thread each keeps them off the trainer's cores."""
    torch.set_num_threads(1)
