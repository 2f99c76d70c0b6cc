"""Batches of simulated slices as torch tensors, and the deterministic training stream.

The training stream is a pure function of ``(seed, step)``: the slice order is a fresh permutation
per epoch and every sample's physics and augmentation come from generators seeded with
``(seed, slice, epoch)``. Resuming at step ``s`` therefore reproduces exactly the batches an
uninterrupted run would have seen, with no data-loader state to save.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import PhysicsConfig
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


def batches(samples: Sequence[Sample], batch_size: int) -> list[Batch]:
    """Consecutive batches of a fixed sample list (the last may be smaller)."""
    return [collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]


class TrainingStream:
    """Deterministic stream of training batches from magnitude images ``(N, H, W)``.

    Args:
        images: training slices, float32 in [0, 1].
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

    def sample(self, index: int, epoch: int) -> Sample:
        """Training sample of slice ``index`` at ``epoch``."""
        image = self.images[index]
        if self.augment:
            image = augment_image(image, np.random.default_rng([self.seed, 1, index, epoch]))
        draw = epoch if self.physics.fresh else 0
        rng = np.random.default_rng([self.seed, 2, index, draw])
        return simulate(image, self.physics, rng, name=self.names[index])

    def batch(self, step: int, batch_size: int) -> Batch:
        """The batch of optimizer step ``step`` (0-based)."""
        n = len(self.images)
        orders: dict[int, np.ndarray] = {}  # one permutation per epoch touched by this batch
        samples = []
        for pos in range(step * batch_size, (step + 1) * batch_size):
            epoch, offset = divmod(pos, n)
            if epoch not in orders:
                orders[epoch] = np.random.default_rng([self.seed, 3, epoch]).permutation(n)
            samples.append(self.sample(int(orders[epoch][offset]), epoch))
        return collate(samples)
