"""The SENSE forward model ``A = M F S`` as an operator object.

Shapes: image ``x`` is ``(B, H, W)`` complex64, coil maps ``S`` are ``(B, C, H, W)`` complex64, the
sampling mask ``M`` is ``(B, H, W)`` (bool or 0/1 real; ``(H, W)``, ``(1, H, W)`` and a
:class:`~punmri.physics.SamplingMask` are broadcast over the batch) and k-space ``y`` is
``(B, C, H, W)`` complex64. Complex128 maps give a complex128 operator (used by gradient checks).
Single-coil imaging is the case ``C = 1`` with maps of ones.

Speed: for even ``H`` and ``W`` the centring shifts of the FFT are folded into the operator. With
the checkerboard ``c[h, w] = (-1)^(h + w)`` and ``s = (-1)^(H/2 + W/2)``, the centred transforms are
``fft2c(u) = s c * fft2(c * u)`` and ``ifft2c(k) = s c * ifft2(c * k)`` exactly, so the operator
keeps the modulated maps ``c S`` and mask ``s c M`` (entries 0 and +-1) and calls plain FFTs:
``A x = (s c M) * fft2((c S) x)``, and ``A^H A x`` needs neither shifts nor signs. Results equal
the shifted form up to float rounding; odd sizes use the shifted form.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .fft import fft2c, ifft2c
from .sampling import SamplingMask

_DIMS = (-2, -1)


def _fft2(u: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2D FFT over the last two dims, no shifts (the folded operator's transform)."""
    return torch.fft.fft2(u, dim=_DIMS, norm="ortho")


def _ifft2(k: torch.Tensor) -> torch.Tensor:
    """Orthonormal inverse 2D FFT over the last two dims, no shifts."""
    return torch.fft.ifft2(k, dim=_DIMS, norm="ortho")


def checkerboard(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """``(-1)^(h + w)`` as a float32 ``(H, W)`` tensor."""
    rows = 1 - 2 * (torch.arange(height, device=device) % 2)
    cols = 1 - 2 * (torch.arange(width, device=device) % 2)
    return (rows[:, None] * cols[None, :]).to(torch.float32)


def _batched_mask(
    mask: torch.Tensor | np.ndarray | SamplingMask, maps_shape: torch.Size
) -> torch.Tensor:
    """``mask`` as a ``(B, H, W)`` tensor for coil maps of shape ``(B, C, H, W)``.

    ``(H, W)`` and ``(1, H, W)`` masks are broadcast (without copying) over the batch.
    """
    if isinstance(mask, SamplingMask):
        mask = mask.mask
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise InputError(
            f"sampling mask: expected a torch.Tensor, numpy array or SamplingMask, got "
            f"{type(mask).__name__}"
        )
    b, _, h, w = maps_shape
    if mask.ndim in (2, 3) and tuple(mask.shape[-2:]) == (h, w):
        batched = mask if mask.ndim == 3 else mask.unsqueeze(0)
        if batched.shape[0] in (1, b):
            return batched.expand(b, h, w)
    raise InputError(
        f"sampling mask shape {tuple(mask.shape)} does not match coil maps {tuple(maps_shape)}: "
        f"expected (B, H, W) = ({b}, {h}, {w}), (1, {h}, {w}) or ({h}, {w})"
    )


class SenseOperator:
    """Multi-coil Cartesian MRI forward operator ``A x = M F (S x)``.

    Args:
        maps: coil sensitivities ``(B, C, H, W)`` complex.
        mask: sampling mask, nonzero = sampled: a tensor or array ``(B, H, W)``, or ``(1, H, W)``
            or ``(H, W)`` shared by the batch, or a :class:`SamplingMask` (``(H, W)``, shared).
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor | np.ndarray | SamplingMask) -> None:
        if maps.ndim != 4 or not maps.is_complex():
            raise InputError(
                f"coil maps must be a complex tensor (B, C, H, W); got {tuple(maps.shape)} "
                f"{maps.dtype}"
            )
        mask = _batched_mask(mask, maps.shape)
        self.maps = maps
        # 0/1 (nonzero = sampled), so that M M = M and normal() may apply it once
        self.mask = (mask != 0).to(device=maps.device, dtype=maps.real.dtype)
        self._coil_mask = self.mask.unsqueeze(1)
        # What the three products below use: the maps, the k-space mask and the transform pair,
        # with the centring shifts folded into maps and mask for even sizes (module docstring).
        height, width = maps.shape[-2:]
        if height % 2 == 0 and width % 2 == 0:
            c = checkerboard(height, width, maps.device).to(maps.real.dtype)
            sign = -1.0 if (height // 2 + width // 2) % 2 else 1.0
            self._op_maps = maps * c
            self._out_mask = self._coil_mask * (sign * c)
            self._fft, self._ifft = _fft2, _ifft2
        else:
            self._op_maps, self._out_mask = maps, self._coil_mask
            self._fft, self._ifft = fft2c, ifft2c

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(B, H, W)`` of the images this operator acts on."""
        b, _, h, w = self.maps.shape
        return (b, h, w)

    @property
    def acceleration(self) -> torch.Tensor:
        """Achieved acceleration ``H*W / sampled`` per batch item, shape ``(B,)``."""
        return self.mask[0].numel() / self.mask.flatten(1).sum(1).clamp_min(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` image -> ``(B, C, H, W)`` sampled k-space."""
        return self._out_mask * self._fft(self._op_maps * x.unsqueeze(1))

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` coil-combined image ``A^H y``."""
        return (self._op_maps.conj() * self._ifft(self._out_mask * y)).sum(dim=1)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for ``(B, H, W)`` images (the mask is idempotent and its signs cancel:
        applied once, unsigned)."""
        k = self._coil_mask * self._fft(self._op_maps * x.unsqueeze(1))
        return (self._op_maps.conj() * self._ifft(k)).sum(dim=1)

    def to(self, device: torch.device | str) -> SenseOperator:
        """The same operator with its tensors on ``device``."""
        return SenseOperator(self.maps.to(device), self.mask.to(device))

    def adjointness_error(self, generator: torch.Generator | None = None) -> float:
        """Relative mismatch ``|<Ax, y> - <x, A^H y>| / (|<Ax, y>|)`` on random complex x, y."""
        b, c, h, w = self.maps.shape
        dtype, device = self.maps.dtype, self.maps.device
        x = torch.randn((b, h, w), generator=generator, dtype=dtype).to(device)
        y = torch.randn((b, c, h, w), generator=generator, dtype=dtype).to(device)
        lhs = torch.vdot(self.forward(x).flatten(), y.flatten())
        rhs = torch.vdot(x.flatten(), self.adjoint(y).flatten())
        return float((lhs - rhs).abs() / lhs.abs().clamp_min(1e-30))
