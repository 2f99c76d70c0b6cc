"""MRI physics: Fourier transforms, sampling masks, coil maps, the SENSE operator, CG and noise."""

from .cg import conjugate_gradient
from .coils import espirit_maps, simulated_coil_maps
from .fft import fft2c, fft2c_numpy, ifft2c, ifft2c_numpy, rss, rss_numpy
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
    "fft2c_numpy",
    "ifft2c",
    "ifft2c_numpy",
    "noise_std",
    "rss",
    "rss_numpy",
    "sampling_mask",
    "simulated_coil_maps",
]
