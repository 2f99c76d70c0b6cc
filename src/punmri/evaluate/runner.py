"""Reconstruct suites with trained models and baselines, and score every slice."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.batches import batches
from ..errors import InputError
from .baselines import cs_l1_wavelet, zero_filled
from .metrics import roi_metrics, slice_metrics
from .suites import Suite
from .tables import SliceRecord

#: A reconstruction: batch tensors (kspace, maps, mask) -> complex images (B, H, W).
ReconFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def model_recon(model: nn.Module, device: torch.device, cg_tol: float = 0.0) -> ReconFn:
    """Wrap a ``model(y, op)`` network as a :data:`ReconFn` (eval mode, no autograd).

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
        return model(kspace.to(device), op).cpu()

    return recon


def baseline_recon(name: str, cs_lamda: float, cs_iterations: int) -> ReconFn:
    """The classical reconstruction ``name`` (``zero-filled`` or ``cs-l1``) as a ReconFn."""
    if name == "zero-filled":
        return zero_filled
    if name == "cs-l1":
        return lambda k, s, m: cs_l1_wavelet(k, s, m, lamda=cs_lamda, iterations=cs_iterations)
    raise InputError(f"evaluate.baselines: unknown baseline {name!r}; use zero-filled or cs-l1")


def reconstruct(recon: ReconFn, suite: Suite, batch_size: int = 8) -> np.ndarray:
    """Reconstruct every slice of ``suite``: complex64 ``(N, H, W)``."""
    out = [recon(b.kspace, b.maps, b.mask) for b in batches(suite.samples, batch_size)]
    return torch.cat(out).numpy()


def score(method: str, suite: Suite, images: np.ndarray) -> list[SliceRecord]:
    """Per-slice PSNR/SSIM/NMSE of reconstructions ``(N, H, W)`` against the suite's targets.

    A sample whose ``extras`` hold a ``"roi"`` mask ``(H, W)`` bool (a lesion suite) also gets
    ``roi_psnr``, ``roi_ssim`` and ``lesion_contrast_error`` (:func:`roi_metrics`) in the
    record's ``extra``.
    """
    records = []
    for sample, image in zip(suite.samples, images, strict=True):
        m = slice_metrics(sample.target, image, name=sample.name)
        extra: dict[str, float] = {}
        if "roi" in sample.extras:
            roi = roi_metrics(sample.target, image, sample.extras["roi"], name=sample.name)
            extra = {
                "roi_psnr": roi["psnr"],
                "roi_ssim": roi["ssim"],
                "lesion_contrast_error": roi["contrast_error"],
            }
        records.append(
            SliceRecord(
                method, suite.name, sample.name, m["psnr"], m["ssim"], m["nmse"], extra=extra
            )
        )
    return records


def evaluate_methods(
    recons: dict[str, ReconFn],
    suites: Sequence[Suite],
    progress: bool = True,
    keep_images: int = 0,
) -> tuple[list[SliceRecord], dict[tuple[str, str], np.ndarray]]:
    """Score every method on every suite.

    Returns:
        the slice records and, for figures, the first ``keep_images`` reconstructions of each
        ``(method, suite)``.
    """
    records: list[SliceRecord] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    jobs = [(m, s) for m in recons for s in suites]
    for method, suite in tqdm(jobs, desc="evaluate", disable=not progress, leave=False):
        images = reconstruct(recons[method], suite)
        records.extend(score(method, suite, images))
        if keep_images:
            kept[(method, suite.name)] = images[:keep_images]
    return records, kept
