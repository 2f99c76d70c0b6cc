"""Evaluation suites: named, seeded, fixed test sets.

A suite is a list of simulated :class:`~punmri.data.simulate.Sample` objects built from images and
simulation settings with generators seeded by ``(evaluate.test_seed, suite name, slice index)``,
so every method and every run sees exactly the same measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import PhysicsConfig
from ..data.batches import fixed_samples
from ..data.simulate import Sample
from ..data.sources import ImageSet


@dataclass
class Suite:
    """A fixed test set: ``name``, its samples and the simulation settings that made them;
    ``in_distribution`` when they are the training distribution's (the ``id`` suite, or a
    suite whose settings differ from training in nothing: a replicate, not a shift)."""

    name: str
    samples: list[Sample]
    physics: PhysicsConfig
    description: str = ""
    in_distribution: bool = False

    def __len__(self) -> int:
        return len(self.samples)


def simulated_suite(
    name: str, images: ImageSet, physics: PhysicsConfig, test_seed: int, description: str = ""
) -> Suite:
    """Simulate a fixed suite from magnitude images."""
    samples = fixed_samples(images.images, images.names, physics, test_seed, name)
    return Suite(name, samples, physics, description or images.source)


def path_suite_name(path: str | Path) -> str:
    """Suite name of a user-given source: its file or folder name without extensions."""
    name = Path(path).name
    for ext in (".gz", ".nii", ".npz", ".npy", ".png", ".tiff", ".tif", ".h5", ".dcm"):
        name = name.removesuffix(ext)
    return name or "data"
