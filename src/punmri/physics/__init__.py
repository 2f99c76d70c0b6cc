"""MRI physics: Fourier transforms, sampling masks, coil maps, the SENSE operator, CG and noise."""

from .cg import conjugate_gradient
from .coils import espirit_maps, simulated_coil_maps
from .fft import fft2c, ifft2c, rss
from .noise import add_noise, noise_std
from .sampling import MASK_KINDS, SamplingMask, sampling_mask
from .sense import SenseOperator

__all__ = [
    "MASK_KINDS",
    "SamplingMask",
    "SenseOperator",
    "add_noise",
    "conjugate_gradient",
    "espirit_maps",
    "fft2c",
    "ifft2c",
    "noise_std",
    "rss",
    "sampling_mask",
    "simulated_coil_maps",
]
