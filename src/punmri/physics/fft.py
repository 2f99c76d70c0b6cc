"""Centered, orthonormal 2D Fourier transforms over the last two dimensions.

``fft2c`` maps an image with its origin in the array centre to k-space with DC in the array centre
(fastMRI's convention: ifftshift -> fft2 -> fftshift, ``norm="ortho"``), so that it is unitary:
``||fft2c(x)|| == ||x||`` and ``ifft2c`` is its exact inverse and adjoint.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2D FFT of a complex tensor ``(..., H, W)``."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(x, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal inverse 2D FFT of a complex tensor ``(..., H, W)``."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(k, dim=_DIMS, norm="ortho"), dim=_DIMS)


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares coil combination: ``(..., C, H, W)`` complex -> ``(..., H, W)`` real."""
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=dim))
