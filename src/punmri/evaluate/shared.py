"""Evaluation divided between the processes of a distributed run (``torchrun``).

Each suite is cut into contiguous parts (whole volumes of measured suites, else multiples of the
evaluation batch, so every batch and every score is the one a single process computes); every
process evaluates its part and the records are gathered back in single-process order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..train.distributed import gather, is_main, rank, world_size
from .runner import EVAL_BATCH, ReconFn, evaluate_methods
from .suites import Suite
from .tables import SliceRecord


class _Part(Sequence):
    """Slices ``start .. stop - 1`` of a suite's samples, read on access (lazy suites stay lazy)."""

    def __init__(self, samples: Sequence, start: int, stop: int) -> None:
        self.samples, self.positions = samples, range(start, stop)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.samples[j] for j in self.positions[i]]
        return self.samples[self.positions[i]]

    def __iter__(self):
        return (self.samples[j] for j in self.positions)


def cut_points(samples: Sequence) -> list[int]:
    """Positions where a suite may be divided between processes: where a volume starts in a
    measured suite (per-volume metrics need whole volumes; a lazy suite's volumes are found from
    its index without reading k-space), else every
    :data:`~punmri.evaluate.runner.EVAL_BATCH`-th slice."""
    dataset, indices = getattr(samples, "dataset", None), getattr(samples, "indices", None)
    if dataset is not None and indices is not None and hasattr(dataset, "entry"):
        entries = [dataset.entry(i) for i in indices]
        return [i for i in range(len(entries)) if i == 0 or entries[i] is not entries[i - 1]]
    volumes = [s.extras.get("volume") for s in samples]
    if any(v is not None for v in volumes):
        return [i for i in range(len(volumes)) if i == 0 or volumes[i] != volumes[i - 1]]
    return list(range(0, len(samples), EVAL_BATCH))


def share_of(cuts: Sequence[int], n: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)``: the contiguous slices of ``n`` that process ``rank`` of ``world``
    evaluates: the pieces between ``cuts`` whose middle lies in its equal share ``[rank * n /
    world, (rank + 1) * n / world)``, so the shares, concatenated in rank order, are the suite in
    order (a process may get none)."""
    bounds = [*cuts, n]
    middles = [bounds[k] + bounds[k + 1] for k in range(len(cuts))]  # twice the middle
    mine = [k for k, m in enumerate(middles) if (m - 1) * world // (2 * n) == rank]  # ties: lower
    if not mine:
        return 0, 0
    return bounds[mine[0]], bounds[mine[-1] + 1]


def evaluate_shared(
    recons: dict[str, ReconFn],
    suites: Sequence[Suite],
    progress: bool = True,
    keep_images: int = 0,
) -> tuple[list[SliceRecord], dict[tuple[str, str], np.ndarray], list[SliceRecord]]:
    """:func:`~punmri.evaluate.runner.evaluate_methods` with the slices of every suite divided
    between the processes of a distributed run (:func:`share_of`, whole volumes of measured
    suites); every process gets all records, in the order of a single process."""
    world = world_size()
    if world == 1:
        return evaluate_methods(recons, suites, progress, keep_images)
    mine = []
    for suite in suites:
        start, stop = share_of(cut_points(suite.samples), len(suite), rank(), world)
        mine.append(dataclasses.replace(suite, samples=_Part(suite.samples, start, stop)))
    shares = gather(evaluate_methods(recons, mine, progress and is_main(), keep_images))
    jobs = [(m, s.name) for m in recons for s in suites]

    def in_order(records: list[SliceRecord]) -> list[SliceRecord]:
        by_job: dict[tuple[str, str], list[SliceRecord]] = {}
        for r in records:
            by_job.setdefault((r.method, r.suite), []).append(r)
        return [r for job in jobs for r in by_job.get(job, [])]

    records = in_order([r for share in shares for r in share[0]])
    volumes = in_order([r for share in shares for r in share[2]])
    images = {}
    for job in jobs:
        parts = [share[1][job] for share in shares if job in share[1]]
        if parts and len({part.shape[1:] for part in parts}) == 1:
            images[job] = np.concatenate(parts)[:keep_images]
    return records, images, volumes


__all__ = ["cut_points", "evaluate_shared", "share_of"]
