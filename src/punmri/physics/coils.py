"""Coil sensitivity maps: smooth simulated maps and ESPIRiT estimates from k-space."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def simulated_coil_maps(
    shape: tuple[int, int],
    n_coils: int,
    rng: np.random.Generator | None = None,
    radius: float = 1.5,
    jitter: float = 0.0,
) -> np.ndarray:
    """Birdcage-like sensitivities of ``n_coils`` loops on a circle around the image.

    Each coil ``c`` sits at angle ``2 pi c / C`` (plus a random rotation when ``jitter > 0``) at
    ``radius`` (in units of the half field of view, randomly scaled by ``1 +- jitter``); its
    complex sensitivity decays with distance and carries the loop's angular phase. The maps are
    normalised so that ``sum_c |S_c|^2 = 1`` at every pixel (a SENSE-style normalisation that keeps
    the coil-combined image equal to the object).

    Returns:
        complex64 array ``(C, H, W)``; ``n_coils = 1`` gives a single map of ones.
    """
    if n_coils < 1:
        raise InputError(f"number of coils must be >= 1, got {n_coils}")
    h, w = shape
    if n_coils == 1:
        return np.ones((1, h, w), dtype=np.complex64)
    rotation, scale = 0.0, 1.0
    if jitter > 0:
        if rng is None:
            raise InputError("simulated_coil_maps: jitter > 0 needs an rng")
        rotation = rng.uniform(0, 2 * np.pi)
        scale = 1 + rng.uniform(-jitter, jitter)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = np.empty((n_coils, h, w), dtype=np.complex128)
    for c in range(n_coils):
        theta = 2 * np.pi * c / n_coils + rotation
        cy, cx = radius * scale * np.sin(theta), radius * scale * np.cos(theta)
        dist = np.hypot(yy - cy, xx - cx)
        phase = np.arctan2(yy - cy, xx - cx) - theta
        maps[c] = np.exp(1j * phase) / dist**2
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    return maps.astype(np.complex64)


def espirit_maps(kspace: np.ndarray, calib_width: int = 24, threshold: float = 0.02) -> np.ndarray:
    """ESPIRiT sensitivity estimates (sigpy) from fully or partially sampled k-space ``(C, H, W)``.

    Returns complex64 maps ``(C, H, W)``; a single-coil input returns ones.
    """
    if kspace.ndim != 3:
        raise InputError(f"ESPIRiT needs multi-coil k-space (C, H, W); got shape {kspace.shape}")
    if kspace.shape[0] == 1:
        return np.ones(kspace.shape, dtype=np.complex64)
    import sigpy.mri.app

    width = int(min(calib_width, kspace.shape[1], kspace.shape[2]))
    maps = sigpy.mri.app.EspiritCalib(
        kspace.astype(np.complex64), calib_width=width, thresh=threshold, show_pbar=False
    ).run()
    return np.asarray(maps, dtype=np.complex64)
