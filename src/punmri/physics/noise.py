"""Complex Gaussian measurement noise at a prescribed SNR."""

from __future__ import annotations

import numpy as np


def noise_std(kspace: np.ndarray, mask: np.ndarray, snr_db: float) -> float:
    """Per-component std giving ``snr_db`` = 10 log10(mean |y|^2 / E|n|^2) over sampled points.

    Args:
        kspace: noiseless k-space ``(C, H, W)``.
        mask: sampling mask ``(H, W)`` (nonzero = sampled).
    """
    sampled = np.abs(kspace[:, mask.astype(bool)]) ** 2
    power = float(sampled.mean()) if sampled.size else 0.0
    return float(np.sqrt(power / 10 ** (snr_db / 10) / 2))


def add_noise(
    kspace: np.ndarray, mask: np.ndarray, snr_db: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Add complex white Gaussian noise to the sampled entries of ``kspace`` ``(C, H, W)``.

    ``snr_db = None`` (or infinite) returns the input unchanged. Unsampled entries stay zero.
    """
    if snr_db is None or not np.isfinite(snr_db):
        return kspace
    sigma = noise_std(kspace, mask, snr_db)
    noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    return (kspace + sigma * noise * mask.astype(bool)).astype(np.complex64)
