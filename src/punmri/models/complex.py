"""Conversion between complex images and the 2-channel real tensors that real CNNs consume.

This module is the single place where complex MRI images meet real-valued networks: every
denoiser converts with :func:`complex_to_channels` on the way in and :func:`channels_to_complex`
on the way out, so the channel convention (channel 0 = real part, channel 1 = imaginary part)
is defined exactly once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from punmri.errors import InputError

_COMPLEX_TO_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}
_REAL_TO_COMPLEX = {real: cplx for cplx, real in _COMPLEX_TO_REAL.items()}


def complex_to_channels(x: Tensor) -> Tensor:
    """Split a batch of complex images into real and imaginary channels.

    Args:
        x: complex images, shape ``(B, H, W)``, dtype ``complex64`` (or ``complex128``).

    Returns:
        Real tensor of shape ``(B, 2, H, W)``, dtype ``float32`` (``float64`` for
        ``complex128`` input); channel 0 is the real part, channel 1 the imaginary part.
        The result is a view of ``x`` in channels-last memory layout (no copy): convolutions
        keep that layout, which is markedly faster on CPU (oneDNN) than NCHW; gradients flow.

    Raises:
        InputError: if ``x`` is not a complex tensor with 3 dimensions.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _COMPLEX_TO_REAL:
        raise InputError(
            f"x: expected a complex64/complex128 tensor of shape (B, H, W), "
            f"got dtype {x.dtype} with shape {tuple(x.shape)}"
        )
    if x.ndim != 3:
        raise InputError(
            f"x: expected a complex tensor of shape (B, H, W) (3 dims), got shape {tuple(x.shape)}"
        )
    # view_as_real refuses tensors with a pending conjugation bit; resolve it first.
    return torch.view_as_real(x.resolve_conj()).permute(0, 3, 1, 2)


def channels_to_complex(t: Tensor) -> Tensor:
    """Merge real and imaginary channels back into complex images.

    Inverse of :func:`complex_to_channels` (the round trip is bit-exact).

    Args:
        t: real tensor of shape ``(B, 2, H, W)``, dtype ``float32`` (or ``float64``);
            channel 0 is the real part, channel 1 the imaginary part.

    Returns:
        Complex tensor of shape ``(B, H, W)``, dtype ``complex64`` (``complex128`` for
        ``float64`` input).

    Raises:
        InputError: if ``t`` is not a float32/float64 tensor of shape ``(B, 2, H, W)``.
    """
    if not isinstance(t, Tensor):
        raise InputError(f"t: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _REAL_TO_COMPLEX:
        raise InputError(
            f"t: expected a float32/float64 tensor of shape (B, 2, H, W), "
            f"got dtype {t.dtype} with shape {tuple(t.shape)}"
        )
    if t.ndim != 4 or t.shape[1] != 2:
        raise InputError(
            f"t: expected a real tensor of shape (B, 2, H, W) (4 dims, 2 channels), "
            f"got shape {tuple(t.shape)}"
        )
    # Zero-copy for channels-last input (what the convolutions return for channels-last input).
    return torch.view_as_complex(t.permute(0, 2, 3, 1).contiguous())
