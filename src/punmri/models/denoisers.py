"""CNN denoisers for complex MRI images, plus seeded weight initialisation.

Every denoiser maps complex images ``(B, H, W)`` to complex images of the same shape and dtype
(``complex64`` for the default float32 weights). The complex/real boundary lives in
:mod:`punmri.models.complex`: :class:`ComplexDenoiser` turns the image into 2 real channels,
runs its real 2->2 channel ``body`` network (padding to a size multiple first if the body
down-samples) and adds the result to the input (global residual)::

    D(x) = x + channels_to_complex(body(complex_to_channels(x)))

Available denoisers (see :data:`DENOISERS` and :func:`build_denoiser`):

* ``"resnet"`` -- :class:`ResNetDenoiser`, the plain CNN of MoDL (Aggarwal et al. 2019).
* ``"unet"`` -- :class:`UNetDenoiser`, a fastMRI-style U-Net.
* ``"didn"`` -- :class:`DIDNDenoiser`, a Deep Iterative Down-up Network (Yu et al. 2019).

Normalisation (``norm``, see :data:`NORMS`): ``"none"``, ``"batch"`` (BatchNorm2d),
``"batch-per-unroll"`` (:class:`PerUnrollBatchNorm`: one BatchNorm2d per MoDL unroll behind the
shared convolutions; the unroll is chosen by ``denoiser(x, unroll=k)``) or ``"instance"``.
Which denoiser accepts which is stated in each class.

No module draws random numbers from the global RNG on purpose: construct a denoiser, then call
:func:`init_weights` with an explicit :class:`torch.Generator` so that the same seed gives
bit-identical weights (pruning at initialisation relies on this). :func:`init_weights` also
scales the last convolution of every residual branch (:meth:`ComplexDenoiser.init_gains`) so
that deep residual denoisers start close to the identity map.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from punmri.errors import InputError
from punmri.models.complex import channels_to_complex, complex_to_channels

PadMode = Literal["reflect", "zeros"]
InitScheme = Literal["kaiming_normal", "kaiming_uniform", "xavier_normal"]

NormKind = Literal["none", "batch", "batch-per-unroll", "instance"]

_PAD_MODES = ("reflect", "zeros")
_INIT_SCHEMES = ("kaiming_normal", "kaiming_uniform", "xavier_normal")
#: The normalisation choices (``model.norm``); each denoiser documents the ones it accepts.
NORMS: tuple[str, ...] = ("none", "batch", "batch-per-unroll", "instance")


# ----------------------------------------------------------------------------------------------
# argument checks


def _require_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _require_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`InputError`."""
    if value not in choices:
        raise InputError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return str(value)


def _require_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise :class:`InputError`."""
    if not isinstance(value, bool):
        raise InputError(f"{name}: expected True or False, got {value!r}")
    return value


def _conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution with 'same' zero padding (spatial size preserved)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


# ----------------------------------------------------------------------------------------------
# normalisation


class PerUnrollBatchNorm(nn.Module):
    """One ``nn.BatchNorm2d`` per MoDL unroll behind convolutions shared by all unrolls.

    MoDL's shared denoiser sees inputs whose statistics change from unroll to unroll (the image
    gets cleaner); a single BatchNorm averages them into one set of running statistics. This
    layer keeps ``unrolls`` BatchNorm2d layers (their own affine parameters and running
    statistics) and normalises with the one of the active unroll, which
    :meth:`ComplexDenoiser.forward` sets from its ``unroll`` argument. The convolutions around
    it stay shared, so the prunable weights are those of the plain network.

    Args:
        channels: feature channels ``C`` of the ``(B, C, H, W)`` input.
        unrolls: number of BatchNorm2d layers (>= 1), one per unroll.
    """

    def __init__(self, channels: int, unrolls: int) -> None:
        super().__init__()
        _require_int("unrolls", unrolls, 1)
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(unrolls))
        #: Index of the BatchNorm2d used by the next forward call (0-based unroll).
        self.active = 0

    def forward(self, x: Tensor) -> Tensor:
        """``x``: float ``(B, C, H, W)`` -> normalised by the active unroll's BatchNorm2d."""
        return self.norms[self.active](x)


def _norm_layer(norm: str, channels: int, unrolls: int) -> nn.Module | None:
    """The normalisation layer of kind ``norm`` for ``channels`` features (``None`` for none)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "batch-per-unroll":
        return PerUnrollBatchNorm(channels, unrolls)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return None


def _resolve_norm(norm: object, batchnorm: object) -> str:
    """``norm`` if given, else ``"batch"``/``"none"`` from the older ``batchnorm`` switch."""
    if norm is None:
        return "batch" if _require_bool("batchnorm", batchnorm) else "none"
    return _require_choice("norm", norm, NORMS)


# ----------------------------------------------------------------------------------------------
# base class


class ComplexDenoiser(nn.Module):
    """Residual denoiser of complex images built around a real 2->2 channel network.

    Subclasses call ``super().__init__(...)`` and then assign ``self.body``: a real network
    mapping ``(B, 2, H', W')`` float tensors to ``(B, 2, H', W')`` where ``H'``, ``W'`` are
    multiples of ``size_multiple``. The forward pass pads the 2-channel image up to such a
    multiple (split evenly between both sides), runs the body, crops back and adds the result
    to the input.

    A body with :class:`PerUnrollBatchNorm` layers normalises with the statistics of the unroll
    passed to :meth:`forward`; :attr:`norm_unrolls` says how many unrolls it has (1: none, every
    call is normalised alike).

    Args:
        size_multiple: the body needs ``H`` and ``W`` divisible by this (``2**levels`` for
            networks that down-sample ``levels`` times; 1 for none).
        pad_mode: ``"reflect"`` (falls back to zeros when the image is too small to reflect)
            or ``"zeros"``.
    """

    body: nn.Module

    def __init__(self, size_multiple: int = 1, pad_mode: PadMode = "reflect") -> None:
        super().__init__()
        self.size_multiple = _require_int("size_multiple", size_multiple, 1)
        self.pad_mode = _require_choice("pad_mode", pad_mode, _PAD_MODES)

    @property
    def norm_unrolls(self) -> int:
        """Per-unroll normalisation sets of the body (1 without :class:`PerUnrollBatchNorm`)."""
        counts = {len(m.norms) for m in self.modules() if isinstance(m, PerUnrollBatchNorm)}
        return max(counts, default=1)

    def forward(self, x: Tensor, unroll: int = 0) -> Tensor:
        """Denoise complex images.

        Args:
            x: complex images, shape ``(B, H, W)``, dtype matching the weights
                (``complex64`` for float32 weights).
            unroll: 0-based MoDL unroll whose :class:`PerUnrollBatchNorm` statistics to use;
                ignored by bodies without them.

        Returns:
            ``x + residual``, same shape and dtype as ``x``.

        Raises:
            InputError: ``unroll`` outside ``0 .. norm_unrolls - 1`` for a body with per-unroll
                normalisation.
        """
        self._select_unroll(unroll)
        t = complex_to_channels(x)
        height, width = t.shape[-2:]
        padded, (top, left) = self._pad(t)
        out = self.body(padded)[..., top : top + height, left : left + width]
        return x + channels_to_complex(out)

    def output_layer(self) -> nn.Conv2d:
        """The body's final convolution (the last ``nn.Conv2d`` registered in ``body``).

        Zeroing its weight and bias turns the denoiser into the identity map.
        """
        convs = [m for m in self.body.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise InputError("body: expected a network containing at least one nn.Conv2d")
        return convs[-1]

    def init_gains(self) -> list[tuple[nn.Module, float]]:
        """``(layer, factor)`` pairs: :func:`init_weights` multiplies each layer's freshly drawn
        weight by ``factor``.

        Subclasses list the last convolution of every residual branch inside the body here
        (see :class:`DIDNDenoiser`); the base class has none. The body's output layer (the
        branch of the global residual) is scaled separately, by ``init_weights``'s
        ``output_gain``.
        """
        return []

    def _select_unroll(self, unroll: int) -> None:
        """Make every :class:`PerUnrollBatchNorm` of the body use unroll ``unroll``."""
        norms = [m for m in self.modules() if isinstance(m, PerUnrollBatchNorm)]
        if not norms:
            return
        if isinstance(unroll, bool) or not isinstance(unroll, int):
            raise InputError(f"unroll: expected an integer, got {unroll!r}")
        for m in norms:
            if not 0 <= unroll < len(m.norms):
                raise InputError(
                    f"unroll: expected 0 <= unroll < {len(m.norms)} (the denoiser has one "
                    f"normalisation per unroll), got {unroll}; build it with unrolls=K"
                )
            m.active = unroll

    def _pad(self, t: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Pad ``t`` (B, C, H, W) so H and W are multiples of ``size_multiple``.

        Returns the padded tensor and the (top, left) offsets of the original image in it.
        """
        m = self.size_multiple
        height, width = t.shape[-2:]
        pad_h = (-height) % m
        pad_w = (-width) % m
        if pad_h == 0 and pad_w == 0:
            return t, (0, 0)
        top, left = pad_h // 2, pad_w // 2
        pads = (left, pad_w - left, top, pad_h - top)
        reflectable = max(left, pad_w - left) < width and max(top, pad_h - top) < height
        if self.pad_mode == "reflect" and reflectable:
            return F.pad(t, pads, mode="reflect"), (top, left)
        return F.pad(t, pads, mode="constant", value=0.0), (top, left)


# ----------------------------------------------------------------------------------------------
# MoDL ResNet


class ResNetDenoiser(ComplexDenoiser):
    """MoDL's CNN denoiser: a stack of 3x3 convolutions with a global residual.

    Layers: ``2 -> C``, ``(layers - 2)`` times ``C -> C``, ``C -> 2``; every layer but the last
    is followed by a normalisation (``norm``, optional) and ReLU. Convolutions followed by a
    normalisation have no bias (its shift replaces it). Works for any ``H``, ``W``.

    Convolution ``i`` is ``body.{3i}`` with any normalisation (``body.{3i+1}`` being its norm,
    which for ``"batch-per-unroll"`` holds ``unrolls`` BatchNorm2d layers ``body.{3i+1}.norms.k``)
    and ``body.{2i}`` without, as before normalisation choices existed; the convolutions and
    their seeded initial weights are the same for every ``norm``.

    Args:
        channels: feature channels ``C`` of the hidden layers (>= 1).
        layers: number of convolution layers (>= 2); MoDL uses 5.
        batchnorm: the older switch, used only when ``norm`` is ``None``: ``True`` is
            ``"batch"``, ``False`` is ``"none"``.
        norm: ``"none"``, ``"batch"`` (``nn.BatchNorm2d``, as in MoDL), ``"batch-per-unroll"``
            (:class:`PerUnrollBatchNorm`) or ``"instance"`` (``nn.InstanceNorm2d`` with affine
            parameters); overrides ``batchnorm``.
        unrolls: number of per-unroll BatchNorm sets for ``"batch-per-unroll"`` (>= 1); the
            other choices ignore it.
    """

    def __init__(
        self,
        channels: int = 64,
        layers: int = 5,
        batchnorm: bool = True,
        norm: NormKind | None = None,
        unrolls: int = 1,
    ) -> None:
        super().__init__(size_multiple=1)
        _require_int("channels", channels, 1)
        _require_int("layers", layers, 2)
        _require_int("unrolls", unrolls, 1)
        self.norm = _resolve_norm(norm, batchnorm)
        modules: list[nn.Module] = []
        in_channels = 2
        for _ in range(layers - 1):
            layer = _norm_layer(self.norm, channels, unrolls)
            modules.append(_conv3x3(in_channels, channels, bias=layer is None))
            if layer is not None:
                modules.append(layer)
            modules.append(nn.ReLU())
            in_channels = channels
        modules.append(_conv3x3(in_channels, 2))
        self.body = nn.Sequential(*modules)


# ----------------------------------------------------------------------------------------------
# U-Net


def _unet_norm(norm: str, channels: int, unrolls: int) -> nn.Module | None:
    """The U-Net's normalisation: fastMRI's InstanceNorm2d (no affine parameters) for
    ``"instance"``, else as :func:`_norm_layer`."""
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    return _norm_layer(norm, channels, unrolls)


def _conv_norm_act(conv: nn.Module, norm: nn.Module | None, act: nn.Module) -> list[nn.Module]:
    """``[conv, norm, act]`` without the norm when it is ``None``."""
    return [conv, act] if norm is None else [conv, norm, act]


class _UNetConvBlock(nn.Sequential):
    """Two (3x3 conv -> norm -> LeakyReLU) layers; ``(B, Cin, H, W) -> (B, Cout, H, W)``."""

    def __init__(
        self, in_channels: int, out_channels: int, negative_slope: float, norm: str, unrolls: int
    ) -> None:
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layer = _unet_norm(norm, out_channels, unrolls)
            conv = _conv3x3(cin, out_channels, bias=layer is None)
            layers += _conv_norm_act(conv, layer, nn.LeakyReLU(negative_slope))
        super().__init__(*layers)


class _UNetUp(nn.Sequential):
    """2x up-sampling: transposed conv (k=2, s=2) -> norm -> LeakyReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, negative_slope: float, norm: str, unrolls: int
    ) -> None:
        layer = _unet_norm(norm, out_channels, unrolls)
        conv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=2, stride=2, bias=layer is None
        )
        super().__init__(*_conv_norm_act(conv, layer, nn.LeakyReLU(negative_slope)))


class _UNetBody(nn.Module):
    """Real U-Net ``(B, 2, H, W) -> (B, 2, H, W)``; ``H``, ``W`` must be multiples of 2**levels.

    Encoder level ``i`` has ``C * 2**i`` channels, the bottleneck ``C * 2**levels``.
    """

    def __init__(
        self,
        channels: int,
        levels: int,
        pool: str,
        negative_slope: float,
        norm: str = "instance",
        unrolls: int = 1,
    ) -> None:
        super().__init__()
        self.levels = levels
        widths = [channels * 2**i for i in range(levels + 1)]
        self.pool: nn.Module = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        extra = (negative_slope, norm, unrolls)
        self.encoders = nn.ModuleList(
            _UNetConvBlock(2 if i == 0 else widths[i - 1], widths[i], *extra) for i in range(levels)
        )
        self.bottom = _UNetConvBlock(widths[levels - 1], widths[levels], *extra)
        # ups[i] / decoders[i] bring level i+1 back to level i (used from deepest to shallowest).
        self.ups = nn.ModuleList(_UNetUp(widths[i + 1], widths[i], *extra) for i in range(levels))
        self.decoders = nn.ModuleList(
            _UNetConvBlock(2 * widths[i], widths[i], *extra) for i in range(levels)
        )
        self.out = nn.Conv2d(channels, 2, kernel_size=1)

    def forward(self, t: Tensor) -> Tensor:
        """``t``: float ``(B, 2, H, W)`` -> float ``(B, 2, H, W)``."""
        height, width = t.shape[-2:]
        if (height >> self.levels) * (width >> self.levels) < 2:
            raise InputError(
                f"x: image of size {height}x{width} (after padding) is too small for a U-Net "
                f"with {self.levels} levels; the bottleneck needs more than one pixel, "
                f"so use an image larger than {2**self.levels} pixels along some side"
            )
        skips: list[Tensor] = []
        h = t
        for encoder in self.encoders:
            h = encoder(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for i in reversed(range(self.levels)):
            h = self.ups[i](h)
            h = self.decoders[i](torch.cat([h, skips[i]], dim=1))
        return self.out(h)


class UNetDenoiser(ComplexDenoiser):
    """fastMRI-style U-Net denoiser with a global residual.

    Each block is two (3x3 conv -> InstanceNorm -> LeakyReLU) layers; the encoder halves the
    resolution ``levels`` times with max- or average-pooling and doubles the channels; the decoder
    up-samples with a 2x2 transposed convolution, concatenates the skip connection and applies a
    block; a final 1x1 convolution maps ``C -> 2`` channels. Images whose sides are not multiples
    of ``2**levels`` are padded and cropped back.

    Args:
        channels: channels ``C`` of the first level (>= 1); level ``i`` has ``C * 2**i``.
        levels: number of down-samplings (>= 1).
        pool: ``"avg"`` (as in fastMRI) or ``"max"``.
        pad_mode: ``"reflect"`` or ``"zeros"`` padding up to a multiple of ``2**levels``.
        negative_slope: LeakyReLU slope for negative inputs (>= 0).
        norm: the normalisation after each convolution: ``"instance"`` (default, fastMRI's
            ``nn.InstanceNorm2d`` *without* affine parameters, as published), ``"none"``,
            ``"batch"`` or ``"batch-per-unroll"`` (as in :class:`ResNetDenoiser`). Convolutions
            have a bias only without normalisation.
        unrolls: number of per-unroll BatchNorm sets for ``"batch-per-unroll"`` (>= 1).
    """

    def __init__(
        self,
        channels: int = 32,
        levels: int = 3,
        pool: Literal["avg", "max"] = "avg",
        pad_mode: PadMode = "reflect",
        negative_slope: float = 0.2,
        norm: NormKind = "instance",
        unrolls: int = 1,
    ) -> None:
        _require_int("levels", levels, 1)
        super().__init__(size_multiple=2**levels, pad_mode=pad_mode)
        _require_int("channels", channels, 1)
        _require_choice("pool", pool, ("avg", "max"))
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise InputError(f"negative_slope: expected a number >= 0, got {negative_slope!r}")
        if not negative_slope >= 0:
            raise InputError(f"negative_slope: expected a number >= 0, got {negative_slope!r}")
        _require_int("unrolls", unrolls, 1)
        self.norm = _require_choice("norm", norm, NORMS)
        self.body = _UNetBody(channels, levels, pool, float(negative_slope), self.norm, unrolls)


# ----------------------------------------------------------------------------------------------
# DIDN


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free convolution with 'same' padding (DIDN's layers have no bias)."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )


class _Residual(nn.Module):
    """``x + branch(x)`` for a branch of (3x3 conv -> PReLU) pairs, ``(B, C, H, W)`` in and out."""

    def __init__(self, channels: int, convs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [_conv(channels, channels, 3), nn.PReLU()]
        self.branch = nn.Sequential(*layers)

    def last_conv(self) -> nn.Conv2d:
        """The branch's final convolution (its output scale at initialisation)."""
        return self.branch[-2]

    def forward(self, x: Tensor) -> Tensor:
        """``x``: float ``(B, C, H, W)`` -> ``x + branch(x)``."""
        return x + self.branch(x)


class _DownUpBlock(nn.Module):
    """DIDN down-up block (DUB) ``(B, C, H, W) -> (B, C, H, W)``; H, W multiples of 2**levels.

    As in Yu et al.'s code, generalised from 2 to ``levels`` down-samplings: a residual pair of
    3x3 conv + PReLU at full resolution; ``levels`` times a stride-2 3x3 conv + PReLU that halves
    the resolution and doubles the channels, followed by a residual 3x3 conv + PReLU; back up,
    level by level, with sub-pixel convolution (1x1 conv to 4x the target channels +
    PixelShuffle(2)), concatenation with the same-resolution encoder features, a 1x1 fusion conv
    and a residual (one 3x3 conv + PReLU; two at full resolution); a final 3x3 conv added to the
    block's input (local residual). Every residual adds ``x + branch(x)``.
    """

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        widths = [channels * 2**i for i in range(levels + 1)]
        self.pre = _Residual(channels, 2)
        self.downs = nn.ModuleList(
            nn.Sequential(
                _conv(widths[i], widths[i + 1], 3, stride=2),
                nn.PReLU(),
                _Residual(widths[i + 1], 1),
            )
            for i in range(levels)
        )
        # ups[i] / fuses[i] bring level i+1 back to level i (used from deepest to shallowest).
        self.ups = nn.ModuleList(
            nn.Sequential(_conv(widths[i + 1], 4 * widths[i], 1), nn.PixelShuffle(2))
            for i in range(levels)
        )
        self.fuses = nn.ModuleList(
            nn.Sequential(
                _conv(2 * widths[i], widths[i], 1), _Residual(widths[i], 2 if i == 0 else 1)
            )
            for i in range(levels)
        )
        self.out = _conv(channels, channels, 3)

    def residuals(self) -> list[_Residual]:
        """The block's inner residual branches, in the order the signal passes them."""
        downs = [d[-1] for d in self.downs]
        fuses = [f[-1] for f in reversed(self.fuses)]
        return [self.pre, *downs, *fuses]

    def forward(self, x: Tensor) -> Tensor:
        """``x``: float ``(B, C, H, W)`` -> float ``(B, C, H, W)``."""
        h = self.pre(x)
        skips: list[Tensor] = []
        for down in self.downs:
            skips.append(h)
            h = down(h)
        for i in reversed(range(len(self.ups))):
            h = self.ups[i](h)
            h = self.fuses[i](torch.cat([h, skips[i]], dim=1))
        return x + self.out(h)


class _ReconBlock(nn.Module):
    """DIDN reconstruction block ``(B, C, H, W) -> (B, C, H, W)``: four residual pairs of
    3x3 conv + PReLU, a 3x3 conv, and the block's input added back."""

    def __init__(self, channels: int, pairs: int = 4) -> None:
        super().__init__()
        self.pairs = nn.Sequential(*(_Residual(channels, 2) for _ in range(pairs)))
        self.out = _conv(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: float ``(B, C, H, W)`` -> float ``(B, C, H, W)``."""
        return x + self.out(self.pairs(x))


class _DIDNBody(nn.Module):
    """Real DIDN ``(B, 2, H, W) -> (B, 2, H, W)``; ``H``, ``W`` multiples of 2**(levels + 1)."""

    def __init__(self, channels: int, blocks: int, levels: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            _conv(2, channels, 3), nn.PReLU(), _conv(channels, channels, 3, stride=2), nn.PReLU()
        )
        self.blocks = nn.ModuleList(_DownUpBlock(channels, levels) for _ in range(blocks))
        self.recon = _ReconBlock(channels)
        self.fusion = nn.Sequential(
            _conv(blocks * channels, channels, 1), nn.PReLU(), _Residual(channels, 1)
        )
        self.up = nn.PixelShuffle(2)
        self.tail = _conv(channels // 4, 2, 3)

    def forward(self, t: Tensor) -> Tensor:
        """``t``: float ``(B, 2, H, W)`` -> float ``(B, 2, H, W)``."""
        h = self.head(t)
        outputs: list[Tensor] = []
        for block in self.blocks:
            h = block(h)
            outputs.append(self.recon(h))
        return self.tail(self.up(self.fusion(torch.cat(outputs, dim=1))))


class DIDNDenoiser(ComplexDenoiser):
    """Deep Iterative Down-up Network (Yu et al., CVPRW 2019) with a global residual.

    As published (the authors' code, generalised in width, depth and levels): a 3x3 conv +
    PReLU lifts ``2 -> C`` channels and a stride-2 3x3 conv + PReLU halves the resolution;
    ``blocks`` down-up blocks (:class:`_DownUpBlock`: strided-conv down-sampling, sub-pixel
    up-sampling, skip concatenations, residual convolutions and a local residual) are applied in
    sequence; every block's output passes through one reconstruction block shared by all blocks
    (:class:`_ReconBlock`, four residual conv pairs and a residual); the reconstructions are
    concatenated and fused by a 1x1 conv + PReLU and a residual 3x3 conv + PReLU; PixelShuffle(2)
    restores the resolution (``C -> C/4`` channels) and a last 3x3 conv maps ``C/4 -> 2``; the
    input is added back (global residual). No layer has a bias and there is no normalisation.
    Images whose sides are not multiples of ``2**(levels + 1)`` are padded and cropped back.

    The residual branches make an unnormalised deep network whose output scale grows with every
    residual addition; :meth:`init_gains` lists the scaling :func:`init_weights` applies to keep
    the untrained network close to the identity.

    Args:
        channels: feature channels ``C`` (a multiple of 4, for the final PixelShuffle); the
            original uses 256, the PUN setting 64.
        blocks: number of down-up blocks (>= 1); the original uses 6.
        levels: down-samplings inside each block (>= 1); the original uses 2.
        pad_mode: ``"reflect"`` or ``"zeros"`` padding up to a multiple of ``2**(levels + 1)``.
        norm: only ``"none"`` (the published DIDN has no normalisation layers).
    """

    def __init__(
        self,
        channels: int = 64,
        blocks: int = 3,
        levels: int = 2,
        pad_mode: PadMode = "reflect",
        norm: NormKind = "none",
    ) -> None:
        _require_int("levels", levels, 1)
        super().__init__(size_multiple=2 ** (levels + 1), pad_mode=pad_mode)
        _require_int("channels", channels, 4)
        if channels % 4:
            raise InputError(
                f"channels: expected a multiple of 4 (DIDN's last PixelShuffle(2) turns C "
                f"channels into C/4), got {channels}"
            )
        _require_int("blocks", blocks, 1)
        if norm != "none":
            raise InputError(
                f"norm: expected 'none' (the published DIDN has no normalisation layers), "
                f"got {norm!r}"
            )
        self.norm = norm
        self.body = _DIDNBody(channels, blocks, levels)

    def init_gains(self) -> list[tuple[nn.Module, float]]:
        """Scale of the last convolution of each residual branch at initialisation.

        Without normalisation, every addition ``x + branch(x)`` of a branch as large as its input
        doubles the signal's variance, and DIDN has dozens in series (3 blocks of 64 channels
        made the untrained denoiser's residual ~10x its input, and MoDL with 8 unrolls ~1e7x).
        Following Fixup (Zhang et al., ICLR 2019), the last convolution of each branch is
        scaled so that the ``n`` branches of a chain together add at most a factor
        ``(1 + 1/n)**n < e`` to the variance: ``1/sqrt(n)`` for the inner residuals of a
        down-up block (``n = 2 * levels + 1`` in series), for the reconstruction block's pairs
        (``n = 4``) and for the blocks' local residuals (``n = blocks``). Convolutions whose
        output is not rectified (each branch's last conv, the sub-pixel and 1x1 fusion convs)
        also lose the ReLU gain ``sqrt(2)`` of the Kaiming draw.
        """
        body = cast(_DIDNBody, self.body)
        linear = 1.0 / _RELU_GAIN
        blocks = list(body.blocks)
        out: list[tuple[nn.Module, float]] = []
        for block in blocks:
            inner = block.residuals()
            out += [(r.last_conv(), 1.0 / len(inner)) for r in inner]
            out += [(up[0], linear) for up in block.ups]
            out += [(fuse[0], linear) for fuse in block.fuses]
            out.append((block.out, linear / len(blocks)))
        pairs = list(body.recon.pairs)
        out += [(r.last_conv(), 1.0 / len(pairs)) for r in pairs]
        out.append((body.recon.out, linear))
        return out


# ----------------------------------------------------------------------------------------------
# initialisation

#: Layers whose weight is drawn from its fan-in and whose bias is zeroed: the conv and linear
#: types (also the layers whose weights :mod:`punmri.pruning` prunes by default).
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
)
_RELU_GAIN = math.sqrt(2.0)


def _raw_param(module: nn.Module, name: str) -> Tensor | None:
    """The stored tensor behind ``module.<name>``, seeing through pruning re-parametrisations.

    ``torch.nn.utils.prune`` keeps the trainable tensor as ``<name>_orig`` and
    ``torch.nn.utils.parametrize`` as ``parametrizations.<name>.original``.
    """
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    orig = getattr(module, f"{name}_orig", None)
    if isinstance(orig, Tensor):
        return orig
    value = getattr(module, name, None)
    return value if isinstance(value, Tensor) else None


def _fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) with PyTorch's convention: dims 1 and 0 times the kernel size."""
    receptive = math.prod(weight.shape[2:]) if weight.ndim > 2 else 1
    fan_in = weight.shape[1] * receptive if weight.ndim > 1 else weight.shape[0]
    fan_out = weight.shape[0] * receptive
    return fan_in, fan_out


def _draw(weight: Tensor, generator: torch.Generator, scheme: str) -> Tensor:
    """Fresh values for ``weight`` drawn from ``generator`` (on the generator's device)."""
    fan_in, fan_out = _fans(weight)
    dtype = weight.dtype if weight.is_floating_point() else torch.float32
    shape = tuple(weight.shape)
    if scheme == "kaiming_normal":
        std = _RELU_GAIN / math.sqrt(fan_in)
        return torch.randn(shape, generator=generator, dtype=dtype, device=generator.device) * std
    if scheme == "kaiming_uniform":
        bound = _RELU_GAIN * math.sqrt(3.0 / fan_in)
        u = torch.rand(shape, generator=generator, dtype=dtype, device=generator.device)
        return (2.0 * u - 1.0) * bound
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(shape, generator=generator, dtype=dtype, device=generator.device) * std


def init_weights(
    module: nn.Module,
    generator: torch.Generator,
    scheme: InitScheme = "kaiming_normal",
    output_gain: float = 1.0,
) -> None:
    """Re-initialise ``module`` in place, drawing every random number from ``generator``.

    * Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear weights: drawn with ``scheme`` --
      ``"kaiming_normal"`` (std ``sqrt(2 / fan_in)``), ``"kaiming_uniform"``
      (``U(-b, b)``, ``b = sqrt(6 / fan_in)``) or ``"xavier_normal"``
      (std ``sqrt(2 / (fan_in + fan_out))``); fans follow PyTorch's convention
      (``weight.shape[1] * kernel size`` in, ``weight.shape[0] * kernel size`` out, also for
      transposed convolutions). Their biases are set to 0.
    * BatchNorm/InstanceNorm/GroupNorm/LayerNorm: weight 1, bias 0, running statistics reset.
    * PReLU: weight 0.25.
    * Any other parameter is left unchanged.
    * Then, in every :class:`ComplexDenoiser` inside ``module``: the weight of each layer listed
      by its :meth:`~ComplexDenoiser.init_gains` (the last convolution of each inner residual
      branch) is multiplied by the listed factor, and the weight of its
      :meth:`~ComplexDenoiser.output_layer` by ``output_gain``.

    Modules are visited in registration order, so the same generator state gives bit-identical
    weights. Weights wrapped by ``torch.nn.utils.prune`` / ``parametrize`` are re-initialised
    through their stored original tensor. The global RNG is never used.

    Args:
        module: network to re-initialise (any device/dtype; values are drawn on the
            generator's device and copied over).
        generator: source of randomness, e.g. ``torch.Generator().manual_seed(0)``.
        scheme: weight distribution, see above.
        output_gain: factor (> 0) on each denoiser's output layer, i.e. on its residual
            ``D(x) - x``. MoDL applies the denoiser K times in series, so
            :func:`punmri.models.build_model` passes ``1 / K``: a residual of relative size
            ``1 / K`` per unroll grows the image by at most ``(1 + 1/K)**K < e`` over all unrolls.

    Raises:
        InputError: if ``generator`` is not a ``torch.Generator``, ``scheme`` is unknown or
            ``output_gain`` is not a positive number.
    """
    if not isinstance(module, nn.Module):
        raise InputError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(generator, torch.Generator):
        raise InputError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    _require_choice("scheme", scheme, _INIT_SCHEMES)
    ok = isinstance(output_gain, (int, float)) and not isinstance(output_gain, bool)
    if not (ok and math.isfinite(output_gain) and output_gain > 0):
        raise InputError(f"output_gain: expected a finite number > 0, got {output_gain!r}")
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, WEIGHTED_LAYERS):
                weight = _raw_param(m, "weight")
                if weight is not None and weight.numel() > 0:
                    weight.copy_(_draw(weight, generator, scheme))
                bias = _raw_param(m, "bias")
                if bias is not None:
                    bias.zero_()
            elif isinstance(m, _NORMS):
                weight, bias = _raw_param(m, "weight"), _raw_param(m, "bias")
                if weight is not None:
                    weight.fill_(1.0)
                if bias is not None:
                    bias.zero_()
                reset = getattr(m, "reset_running_stats", None)
                if callable(reset) and getattr(m, "track_running_stats", False):
                    reset()
            elif isinstance(m, nn.PReLU):
                weight = _raw_param(m, "weight")
                if weight is not None:
                    weight.fill_(0.25)
        for m in module.modules():
            if isinstance(m, ComplexDenoiser):
                gains = [*m.init_gains(), (m.output_layer(), float(output_gain))]
                for layer, factor in gains:
                    weight = _raw_param(layer, "weight")
                    if weight is not None and factor != 1.0:
                        weight.mul_(factor)


# ----------------------------------------------------------------------------------------------
# registry and helpers

#: Read-only mapping from denoiser name to class, used by :func:`build_denoiser`.
DENOISERS: Mapping[str, type[ComplexDenoiser]] = MappingProxyType(
    {"resnet": ResNetDenoiser, "unet": UNetDenoiser, "didn": DIDNDenoiser}
)


def _accepted_kwargs(cls: type[ComplexDenoiser]) -> list[str]:
    """Names of the keyword arguments accepted by ``cls``'s constructor."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds]


def build_denoiser(name: Literal["resnet", "unet", "didn"], **kwargs: object) -> ComplexDenoiser:
    """Construct a denoiser by name.

    Args:
        name: one of the keys of :data:`DENOISERS` (``"resnet"``, ``"unet"``, ``"didn"``).
        **kwargs: constructor arguments of that class (e.g. ``channels=8``).

    Returns:
        The denoiser, with PyTorch's default initialisation (call :func:`init_weights` for a
        seeded one).

    Raises:
        InputError: unknown ``name``, unknown keyword argument, or invalid argument value.
    """
    cls = DENOISERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InputError(f"name: unknown denoiser {name!r}; expected one of {sorted(DENOISERS)}")
    accepted = _accepted_kwargs(cls)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        raise InputError(
            f"{name} denoiser: unknown argument {unknown[0]!r}; accepted arguments: {accepted}"
        )
    return cls(**kwargs)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter elements of ``module``.

    Counts stored elements, so pruned (masked) weights still count; count non-zeros separately.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
