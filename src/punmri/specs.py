"""Records shared by the run pipeline and the method recipes.

Which network to train (:class:`ModelSpec`), the run's data (:class:`RunData`) and a trained
network (:class:`TrainedModel`).

They live below both :mod:`punmri.pipeline` and :mod:`punmri.methods`, so neither imports the other
for its types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .data.batches import Batch, SliceSource, batches
from .data.sources import ImageSet
from .evaluate.suites import Suite
from .pruning import Masks
from .train import TrainResult


@dataclass(frozen=True)
class ModelSpec:
    """One network to train: the method, the seed, its density (None for dense) and the run's
    headline density (a method at the headline density keeps its plain name)."""

    method: str
    seed: int
    density: float | None = None
    headline: float | None = None

    @property
    def name(self) -> str:
        """Method name as reported (``dense``, ``pun``, ``pun@0.03`` ...)."""
        if self.density is None or self.density == self.headline:
            return self.method
        return f"{self.method}@{self.density:g}"

    def answers_to(self, name: str) -> bool:
        """Whether a user's ``name`` means this network's method and density: its reported
        :attr:`name` (``dense``, ``pun``, ``pun@0.03``) or ``METHOD@DENSITY`` with the headline
        density written out (``pun@0.05`` for ``pun`` when 0.05 is the headline)."""
        if name == self.name:
            return True
        method, at, density = name.partition("@")
        try:
            return bool(at) and method == self.method and float(density) == self.density
        except ValueError:
            return False

    def directory(self, run_dir: Path) -> Path:
        """Where this model's stages write."""
        return run_dir / "models" / self.name / f"seed{self.seed}"


@dataclass
class TrainedModel:
    """A trained network with its training record and costs."""

    spec: ModelSpec
    model: nn.Module
    result: TrainResult
    costs: dict[str, float] = field(default_factory=dict)
    masks: Masks | None = None


@dataclass
class RunData:
    """The run's data: image splits (simulated sources; empty for measured k-space), the fixed
    validation and test sets, and ``train_source(seed)``, the training slices of a seed."""

    splits: dict[str, ImageSet]
    val: Suite
    suites: list[Suite]
    batch_size: int
    train_source: Callable[[int], SliceSource]

    @property
    def val_batches(self) -> list[Batch]:
        """Validation samples in training-size batches."""
        return batches(self.val.samples, self.batch_size)


__all__ = ["ModelSpec", "RunData", "TrainedModel"]
