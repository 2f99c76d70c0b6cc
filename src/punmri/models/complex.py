"""Conversion between complex images and the 2-channel real tensors that real CNNs consume.

This module is the single place where complex MRI images meet real-valued networks: every
denoiser converts with :func:`complex_to_channels` on the way in and :func:`channels_to_complex`
on the way out, so the channel convention (channel 0 = real part, channel 1 = imaginary part)
is defined exactly once.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

from punmri.errors import InputError

_COMPLEX_TO_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}
_REAL_TO_COMPLEX = {real: cplx for cplx, real in _COMPLEX_TO_REAL.items()}
#: Half precisions a denoiser body returns under autocast; cast to float32 before going complex.
_HALF = (torch.bfloat16, torch.float16)


def _check(
    value: object, name: str, dtypes: Collection[torch.dtype], shape: tuple[str | int, ...]
) -> None:
    """Raise :class:`InputError` unless ``value`` is a tensor of one of ``dtypes`` shaped ``shape``.

    ``shape`` lists one entry per dimension: a name (any size) or an int (that exact size).
    """
    if not isinstance(value, Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    fits = value.ndim == len(shape) and all(
        isinstance(want, str) or got == want for got, want in zip(value.shape, shape, strict=True)
    )
    if value.dtype not in dtypes or not fits:
        kinds = "/".join(str(d).removeprefix("torch.") for d in dtypes)
        layout = "(" + ", ".join(str(s) for s in shape) + ")"
        raise InputError(
            f"{name}: expected a {kinds} tensor of shape {layout}, "
            f"got dtype {value.dtype} with shape {tuple(value.shape)}"
        )


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
        InputError: if ``x`` is not a complex64/complex128 tensor of shape ``(B, H, W)``.
    """
    _check(x, "x", _COMPLEX_TO_REAL, ("B", "H", "W"))
    # view_as_real refuses tensors with a pending conjugation bit; resolve it first.
    return torch.view_as_real(x.resolve_conj()).permute(0, 3, 1, 2)


def channels_to_complex(t: Tensor) -> Tensor:
    """Merge real and imaginary channels back into complex images.

    Inverse of :func:`complex_to_channels` (the round trip is bit-exact).

    Args:
        t: real tensor of shape ``(B, 2, H, W)``, dtype ``float32`` (or ``float64``);
            channel 0 is the real part, channel 1 the imaginary part. ``bfloat16``/``float16``
            (a denoiser body run under autocast) is cast to ``float32`` first, so the physics
            (FFTs, SENSE, CG) always receives complex64.

    Returns:
        Complex tensor of shape ``(B, H, W)``, dtype ``complex64`` (``complex128`` for
        ``float64`` input).

    Raises:
        InputError: if ``t`` is not a float32/float64/bfloat16/float16 tensor of shape
            ``(B, 2, H, W)``.
    """
    _check(t, "t", (*_REAL_TO_COMPLEX, *_HALF), ("B", 2, "H", "W"))
    if t.dtype in _HALF:
        t = t.float()
    # Zero-copy for channels-last input (what the convolutions return for channels-last input).
    return torch.view_as_complex(t.permute(0, 2, 3, 1).contiguous())
