"""Classical reconstructions used as baselines: zero-filled SENSE and L1-wavelet compressed sensing.

Every baseline takes a batch ``kspace (B, C, H, W)`` complex64 (zeros where not sampled),
``maps (B, C, H, W)`` complex64 and ``mask (B, H, W)`` (or ``(H, W)``, shared; nonzero = sampled)
and returns complex64 images ``(B, H, W)`` on the device of ``kspace``.

FFT conventions: sigpy's ``fft`` (``center=True, norm="ortho"``) is the same centered orthonormal
transform as :func:`punmri.physics.fft2c` (ifftshift -> FFT -> fftshift), and
``sigpy.mri.linop.Sense(maps, weights=mask)`` applies ``sqrt(weights) = mask`` for a binary mask,
so it equals :class:`punmri.physics.SenseOperator` exactly; no shift or scale conversion is needed
(checked by ``tests/test_baselines.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..physics import SenseOperator
from .metrics import psnr

#: Default L1-wavelet weight for images normalised to a maximum magnitude of about 1.
CS_LAMBDA = 1e-3
#: Default number of (Nesterov-accelerated) proximal-gradient iterations.
CS_ITERATIONS = 100

Baseline = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _check_batch(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Validate shapes; return the mask expanded to ``(B, H, W)``."""
    if kspace.ndim != 4 or not kspace.is_complex():
        raise InputError(
            "kspace must be a complex tensor (B, C, H, W); "
            f"got {tuple(kspace.shape)} {kspace.dtype}"
        )
    if maps.shape != kspace.shape:
        raise InputError(
            f"coil maps shape {tuple(maps.shape)} does not match kspace shape {tuple(kspace.shape)}"
        )
    if mask.ndim == 2:
        mask = mask.unsqueeze(0).expand(kspace.shape[0], -1, -1)
    b, _, h, w = kspace.shape
    if tuple(mask.shape) != (b, h, w):
        raise InputError(
            f"sampling mask shape {tuple(mask.shape)} does not match kspace {tuple(kspace.shape)}: "
            f"expected (B, H, W) = ({b}, {h}, {w}) or (H, W)"
        )
    return mask


def zero_filled(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero-filled SENSE coil combination ``A^H y = sum_c conj(S_c) ifft2c(M y_c)``.

    With maps normalised to ``sum_c |S_c|^2 = 1`` and full sampling this is the exact image.

    Returns:
        complex64 images ``(B, H, W)``.
    """
    mask = _check_batch(kspace, maps, mask)
    with torch.no_grad():
        op = SenseOperator(maps.to(torch.complex64), mask.to(kspace.device))
        return op.adjoint(kspace.to(torch.complex64))


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def cs_l1_wavelet(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lamda: float = CS_LAMBDA,
    iterations: int = CS_ITERATIONS,
    wavelet: str = "db4",
) -> torch.Tensor:
    """L1-wavelet compressed-sensing SENSE reconstruction, slice by slice with sigpy on the CPU.

    Solves ``min_x 1/2 ||M F S x - y||^2 + lamda ||W x||_1`` with sigpy's
    ``mri.app.L1WaveletRecon`` (FISTA). The step size is ``1 / max_pixel(sum_c |S_c|^2)``, an
    upper bound on ``||A||^2`` for a binary mask, so no (random) power iteration is run and the
    result is deterministic.

    Args:
        kspace: ``(B, C, H, W)`` complex k-space (zeros where not sampled).
        maps: ``(B, C, H, W)`` complex coil sensitivities.
        mask: ``(B, H, W)`` or ``(H, W)`` sampling mask.
        lamda: L1 weight, in units of image intensity (default suits images scaled to max |x| ~ 1).
        iterations: number of FISTA iterations.
        wavelet: PyWavelets wavelet name.

    Returns:
        complex64 images ``(B, H, W)`` on the device of ``kspace``.
    """
    mask = _check_batch(kspace, maps, mask)
    if not lamda >= 0:
        raise InputError(f"CS lamda must be >= 0, got {lamda}")
    if iterations < 1:
        raise InputError(f"CS iterations must be >= 1, got {iterations}")
    import sigpy.mri.app

    ksp_np = _to_numpy(kspace).astype(np.complex64)
    maps_np = _to_numpy(maps).astype(np.complex64)
    mask_np = _to_numpy(mask).astype(bool)
    out = np.empty((kspace.shape[0],) + tuple(kspace.shape[-2:]), dtype=np.complex64)
    for i in range(kspace.shape[0]):
        weights = mask_np[i].astype(np.float32)
        max_sens = float((np.abs(maps_np[i]) ** 2).sum(0).max())
        if max_sens <= 0:
            raise InputError(f"coil maps of batch item {i} are all zero")
        app = sigpy.mri.app.L1WaveletRecon(
            ksp_np[i] * weights,
            maps_np[i],
            float(lamda),
            weights=weights,
            wave_name=wavelet,
            max_iter=int(iterations),
            alpha=1.0 / max_sens,
            show_pbar=False,
        )
        out[i] = np.asarray(app.run(), dtype=np.complex64)
    return torch.from_numpy(out).to(kspace.device)


def tune_cs_lambda(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    target: Any,
    grid: Sequence[float],
    iterations: int = CS_ITERATIONS,
    wavelet: str = "db4",
) -> tuple[float, dict[float, float]]:
    """Pick the CS-L1 ``lamda`` with the best mean PSNR on validation slices (never the test set).

    Args:
        kspace, maps, mask: a small validation batch, as for :func:`cs_l1_wavelet`.
        target: ground-truth images ``(B, H, W)`` (complex or magnitude; numpy or torch).
        grid: candidate ``lamda`` values.
        iterations, wavelet: passed to :func:`cs_l1_wavelet`.

    Returns:
        ``(best_lamda, {lamda: mean PSNR in dB})``; diverged (``nan``) slices are ignored in the
        mean, and a candidate whose every slice is ``nan`` scores ``-inf``.
    """
    if len(grid) == 0:
        raise InputError("tune_cs_lambda: the lamda grid is empty; give at least one value")
    tgt = target.detach().cpu().numpy() if hasattr(target, "detach") else np.asarray(target)
    if tgt.shape != (kspace.shape[0],) + tuple(kspace.shape[-2:]):
        raise InputError(
            f"tune_cs_lambda: target shape {tgt.shape} does not match kspace "
            f"{tuple(kspace.shape)}: expected (B, H, W)"
        )
    scores: dict[float, float] = {}
    for lamda in grid:
        recon = cs_l1_wavelet(kspace, maps, mask, float(lamda), iterations, wavelet)
        values = [
            psnr(tgt[i], _to_numpy(recon[i]), name=f"validation slice {i}")
            for i in range(tgt.shape[0])
        ]
        finite = [v for v in values if not np.isnan(v)]
        scores[float(lamda)] = float(np.mean(finite)) if finite else float("-inf")
    best = max(scores, key=lambda k: scores[k])
    return best, scores


BASELINES: dict[str, Baseline] = {"zero-filled": zero_filled, "cs-l1": cs_l1_wavelet}
