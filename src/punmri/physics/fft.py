"""Centered, orthonormal 2D FFTs over the last two dimensions, and RSS coil combination.

``fft2c`` maps an image with its origin in the array centre to k-space with DC in the array centre
(fastMRI's convention: ifftshift -> fft2 -> fftshift, ``norm="ortho"``), so that it is unitary:
``||fft2c(x)|| == ||x||`` and ``ifft2c`` is its exact inverse and adjoint.

The torch functions are the one implementation; the ``*_numpy`` wrappers run them on numpy arrays
for the data pipeline (fastMRI reading, simulation), keeping the input's precision.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
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


def _complex_numpy(fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray) -> np.ndarray:
    """``fn`` applied to ``x`` as a complex tensor (complex64, or complex128 for 64-bit input)."""
    dtype = np.result_type(np.asarray(x).dtype, np.complex64)
    # A writable, contiguous, native-order copy only when needed (torch.from_numpy shares memory).
    array = np.require(x, dtype=dtype, requirements=("C", "W"))
    return fn(torch.from_numpy(array)).numpy()


def fft2c_numpy(x: np.ndarray) -> np.ndarray:
    """:func:`fft2c` of a numpy array ``(..., H, W)``; complex64 out (complex128 for 64-bit in)."""
    return _complex_numpy(fft2c, x)


def ifft2c_numpy(k: np.ndarray) -> np.ndarray:
    """:func:`ifft2c` of a numpy array ``(..., H, W)``; complex64 out (complex128 for 64-bit in)."""
    return _complex_numpy(ifft2c, k)


def rss_numpy(coil_images: np.ndarray, axis: int = 0) -> np.ndarray:
    """:func:`rss` of a numpy array along ``axis``: float32 out (float64 for 64-bit input)."""
    return _complex_numpy(lambda t: rss(t, dim=axis), coil_images)
