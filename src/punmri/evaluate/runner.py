"""Reconstruct suites with trained models and baselines, and score every slice."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.batches import collate, sample_groups
from ..data.simulate import Sample
from ..data.volumes import fit_to_shape
from ..errors import InputError
from ..models.modl import precision_autocast
from .baselines import cs_l1_wavelet, zero_filled
from .metrics import roi_metrics, slice_metrics, volume_metrics
from .suites import Suite
from .tables import SliceRecord

#: Slices reconstructed together (the evaluation batch); a distributed evaluation cuts simulated
#: suites at multiples of it (:mod:`punmri.evaluate.shared`).
EVAL_BATCH = 8

#: A reconstruction: batch tensors (kspace, maps, mask) -> complex images (B, H, W).
ReconFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def model_recon(
    model: nn.Module, device: torch.device, cg_tol: float = 0.0, precision: str = "fp32"
) -> ReconFn:
    """Wrap a ``model(y, op)`` network as a :data:`ReconFn` (eval mode, no autograd; the
    denoiser under the autocast of ``precision``, as it was trained).

    ``cg_tol > 0`` lets the model's CG solves stop once the relative residual is below it (the
    model's ``cg_tol`` attribute, :class:`~punmri.models.MoDL`); 0 keeps the fixed step count.
    """
    from ..physics import SenseOperator

    if cg_tol < 0:
        raise InputError(f"evaluate.cg_tol must be >= 0, got {cg_tol}")
    if hasattr(model, "cg_tol"):
        model.cg_tol = cg_tol if cg_tol > 0 else None
    model.eval().to(device)

    @torch.no_grad()
    def recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        op = SenseOperator(maps.to(device), mask.to(device))
        with precision_autocast(precision, device):
            return model(kspace.to(device), op).cpu()

    return recon


def baseline_recon(name: str, cs_lamda: float, cs_iterations: int) -> ReconFn:
    """The classical reconstruction ``name`` (``zero-filled`` or ``cs-l1``) as a ReconFn."""
    if name == "zero-filled":
        return zero_filled
    if name == "cs-l1":
        return lambda k, s, m: cs_l1_wavelet(k, s, m, lamda=cs_lamda, iterations=cs_iterations)
    raise InputError(f"evaluate.baselines: unknown baseline {name!r}; use zero-filled or cs-l1")


def _reference(sample: Sample, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
    """``(target, prediction, data range)`` magnitudes a slice is scored on.

    Simulated slices: the target image and the whole reconstruction (data range: the target's
    max). Measured slices (``extras["rss"]``, fastMRI): the stored RSS reconstruction against the
    reconstruction's magnitude centre-cropped to its size (and brought back to the reference's
    units by ``extras["scale"]``), with the volume's maximum (``extras["max"]``) as data range, as
    fastMRI's evaluation does.
    """
    if "rss" not in sample.extras:
        return sample.target, image, None
    rss = np.asarray(sample.extras["rss"])
    crop = fit_to_shape(np.abs(image), rss.shape) * float(sample.extras.get("scale", 1.0))
    vmax = sample.extras.get("max")
    return rss, crop, None if vmax is None else float(vmax)


def score_slice(method: str, suite: str, sample: Sample, image: np.ndarray) -> SliceRecord:
    """PSNR/SSIM/NMSE of one reconstruction ``(H, W)`` (complex) of ``sample``.

    A sample whose ``extras`` hold a ``"roi"`` mask ``(H, W)`` bool (a lesion suite) also gets
    ``roi_psnr``, ``roi_ssim`` and ``lesion_contrast_error`` (:func:`roi_metrics`) in the
    record's ``extra``.
    """
    target, pred, data_range = _reference(sample, image)
    m = slice_metrics(target, pred, data_range, name=sample.name)
    extra: dict[str, float] = {}
    if "roi" in sample.extras:
        roi = roi_metrics(sample.target, image, sample.extras["roi"], name=sample.name)
        extra = {
            "roi_psnr": roi["psnr"],
            "roi_ssim": roi["ssim"],
            "lesion_contrast_error": roi["contrast_error"],
        }
    return SliceRecord(method, suite, sample.name, m["psnr"], m["ssim"], m["nmse"], extra=extra)


class _VolumeScorer:
    """Collects the cropped magnitudes of one measured volume at a time (memory: one volume) and
    scores each finished volume with fastMRI's per-volume metrics (as a :class:`SliceRecord`
    whose ``slice_name`` is the volume's name)."""

    def __init__(self, method: str, suite: str) -> None:
        self.method, self.suite = method, suite
        self.volume: str | None = None
        self.targets: list[np.ndarray] = []
        self.preds: list[np.ndarray] = []
        self.data_range: float | None = None
        self.records: list[SliceRecord] = []

    def add(self, sample: Sample, image: np.ndarray) -> None:
        volume = sample.extras.get("volume")
        if volume is None or "rss" not in sample.extras:
            return
        if volume != self.volume:
            self.finish()
            self.volume = str(volume)
        target, pred, self.data_range = _reference(sample, image)
        self.targets.append(target)
        self.preds.append(pred)

    def finish(self) -> list[SliceRecord]:
        if self.volume is not None and self.targets:
            m = volume_metrics(
                np.stack(self.targets), np.stack(self.preds), self.data_range, name=self.volume
            )
            self.records.append(SliceRecord(self.method, self.suite, self.volume, **m))
        self.volume, self.targets, self.preds = None, [], []
        return self.records


def evaluate_suite(
    method: str, recon: ReconFn, suite: Suite, keep_images: int = 0, batch_size: int = EVAL_BATCH
) -> tuple[list[SliceRecord], list[SliceRecord], np.ndarray | None]:
    """Reconstruct and score every slice of ``suite`` with ``recon``, streaming batches (slices
    are read, reconstructed and scored a batch at a time; a batch never mixes shapes).

    Returns:
        the slice records, the per-volume records of measured suites (else empty), and the first
        ``keep_images`` reconstructions (complex ``(k, H, W)``, or None).
    """
    records: list[SliceRecord] = []
    volumes = _VolumeScorer(method, suite.name)
    kept: list[np.ndarray] = []
    for group in sample_groups(suite.samples, batch_size):
        batch = collate(group)
        images = recon(batch.kspace, batch.maps, batch.mask).numpy()
        for sample, image in zip(group, images, strict=True):
            records.append(score_slice(method, suite.name, sample, image))
            volumes.add(sample, image)
            if len(kept) < keep_images:
                kept.append(image)
    stacked = np.stack(kept) if kept and len({k.shape for k in kept}) == 1 else None
    return records, volumes.finish(), stacked


def evaluate_methods(
    recons: dict[str, ReconFn],
    suites: Sequence[Suite],
    progress: bool = True,
    keep_images: int = 0,
) -> tuple[list[SliceRecord], dict[tuple[str, str], np.ndarray], list[SliceRecord]]:
    """Score every method on every suite.

    Returns:
        the slice records, for figures the first ``keep_images`` reconstructions of each
        ``(method, suite)``, and the per-volume records of measured suites.
    """
    records: list[SliceRecord] = []
    volume_records: list[SliceRecord] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    jobs = [(m, s) for m in recons for s in suites]
    for method, suite in tqdm(jobs, desc="evaluate", disable=not progress, leave=False):
        slices, volumes, images = evaluate_suite(method, recons[method], suite, keep_images)
        records += slices
        volume_records += volumes
        if images is not None:
            kept[(method, suite.name)] = images
    return records, kept, volume_records
