"""Simulated acquisitions from magnitude images: phase, coils, sampling mask, k-space, noise.

A :class:`Sample` is one slice's measurement and reference, as numpy arrays:
``target`` ``(H, W)`` complex64 (the object, max magnitude 1), ``kspace`` ``(C, H, W)`` complex64,
``maps`` ``(C, H, W)`` complex64 and ``mask`` ``(H, W)`` bool. ``simulate`` depends only on its
arguments and the given ``numpy.random.Generator``, so seeding the generator per slice makes test
sets identical across runs and methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage

from ..config import PhysicsConfig
from ..physics import add_noise, fft2c_numpy, sampling_mask, simulated_coil_maps


@dataclass
class Sample:
    """One simulated slice (numpy arrays; see module docstring for shapes)."""

    target: np.ndarray
    kspace: np.ndarray
    maps: np.ndarray
    mask: np.ndarray
    name: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def smooth_phase(shape: tuple[int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random phase map ``(H, W)`` in radians with peak magnitude ``amplitude``.

    Low-pass random field: complex Gaussian coefficients on the central 5x5 k-space points.
    """
    if amplitude == 0:
        return np.zeros(shape, dtype=np.float32)
    h, w = shape
    k = np.zeros(shape, dtype=np.complex128)
    ch, cw = h // 2, w // 2
    k[ch - 2 : ch + 3, cw - 2 : cw + 3] = rng.standard_normal((5, 5)) + 1j * rng.standard_normal(
        (5, 5)
    )
    field_ = np.fft.ifft2(np.fft.ifftshift(k)).real
    field_ /= max(np.abs(field_).max(), 1e-12)
    return (amplitude * field_).astype(np.float32)


def augment_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random left-right flip, rotation within +-5 degrees and intensity scale in [0.85, 1.15]."""
    out = image[:, ::-1] if rng.uniform() < 0.5 else image
    angle = rng.uniform(-5, 5)
    out = scipy.ndimage.rotate(out, angle, reshape=False, order=1, mode="constant")
    out = np.clip(out, 0, None) * rng.uniform(0.85, 1.15)
    return np.ascontiguousarray(out, dtype=np.float32)


def simulate(
    image: np.ndarray,
    physics: PhysicsConfig,
    rng: np.random.Generator,
    name: str = "",
) -> Sample:
    """Simulate a multi-coil undersampled acquisition of a magnitude image ``(H, W)``.

    Steps: smooth random phase -> coil maps (ring geometry jittered by ``physics.coil_jitter``) ->
    sampling mask (seed drawn from ``rng``) -> ``y = M F S x`` -> complex noise at ``snr_db``.
    """
    shape = image.shape
    x = image.astype(np.float32) * np.exp(1j * smooth_phase(shape, physics.phase_amplitude, rng))
    x = x.astype(np.complex64)
    maps = simulated_coil_maps(
        shape, physics.coils, rng, radius=physics.coil_radius, jitter=physics.coil_jitter
    )
    mask = sampling_mask(
        physics.mask_kind,
        shape,
        physics.acceleration,
        center_fraction=physics.center_fraction,
        seed=int(rng.integers(2**31 - 1)),
    ).mask
    kspace = (fft2c_numpy(maps * x[None]) * mask).astype(np.complex64)
    kspace = add_noise(kspace, mask, physics.snr_db, rng)
    return Sample(target=x, kspace=kspace, maps=maps, mask=mask, name=name)
