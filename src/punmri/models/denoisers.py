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

No module draws random numbers from the global RNG on purpose: construct a denoiser, then call
:func:`init_weights` with an explicit :class:`torch.Generator` so that the same seed gives
bit-identical weights (pruning at initialisation relies on this).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from punmri.errors import InputError
from punmri.models.complex import channels_to_complex, complex_to_channels

PadMode = Literal["reflect", "zeros"]
InitScheme = Literal["kaiming_normal", "kaiming_uniform", "xavier_normal"]

_PAD_MODES = ("reflect", "zeros")
_INIT_SCHEMES = ("kaiming_normal", "kaiming_uniform", "xavier_normal")


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
# base class


class ComplexDenoiser(nn.Module):
    """Residual denoiser of complex images built around a real 2->2 channel network.

    Subclasses call ``super().__init__(...)`` and then assign ``self.body``: a real network
    mapping ``(B, 2, H', W')`` float tensors to ``(B, 2, H', W')`` where ``H'``, ``W'`` are
    multiples of ``size_multiple``. The forward pass pads the 2-channel image up to such a
    multiple (split evenly between both sides), runs the body, crops back and adds the result
    to the input.

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

    def forward(self, x: Tensor) -> Tensor:
        """Denoise complex images.

        Args:
            x: complex images, shape ``(B, H, W)``, dtype matching the weights
                (``complex64`` for float32 weights).

        Returns:
            ``x + residual``, same shape and dtype as ``x``.
        """
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
    is followed by BatchNorm (optional) and ReLU. Convolutions followed by BatchNorm have no bias
    (BatchNorm's shift replaces it). Works for any ``H``, ``W``.

    Args:
        channels: feature channels ``C`` of the hidden layers (>= 1).
        layers: number of convolution layers (>= 2); MoDL uses 5.
        batchnorm: insert ``nn.BatchNorm2d`` before each ReLU.
    """

    def __init__(self, channels: int = 64, layers: int = 5, batchnorm: bool = True) -> None:
        super().__init__(size_multiple=1)
        _require_int("channels", channels, 1)
        _require_int("layers", layers, 2)
        _require_bool("batchnorm", batchnorm)
        modules: list[nn.Module] = []
        in_channels = 2
        for _ in range(layers - 1):
            modules.append(_conv3x3(in_channels, channels, bias=not batchnorm))
            if batchnorm:
                modules.append(nn.BatchNorm2d(channels))
            modules.append(nn.ReLU())
            in_channels = channels
        modules.append(_conv3x3(in_channels, 2))
        self.body = nn.Sequential(*modules)


# ----------------------------------------------------------------------------------------------
# U-Net


class _UNetConvBlock(nn.Sequential):
    """Two (3x3 conv -> InstanceNorm -> LeakyReLU) layers; ``(B, Cin, H, W) -> (B, Cout, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float) -> None:
        super().__init__(
            _conv3x3(in_channels, out_channels, bias=False),
            nn.InstanceNorm2d(out_channels),
            nn.LeakyReLU(negative_slope),
            _conv3x3(out_channels, out_channels, bias=False),
            nn.InstanceNorm2d(out_channels),
            nn.LeakyReLU(negative_slope),
        )


class _UNetUp(nn.Sequential):
    """2x up-sampling: transposed conv (k=2, s=2) -> InstanceNorm -> LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_channels),
            nn.LeakyReLU(negative_slope),
        )


class _UNetBody(nn.Module):
    """Real U-Net ``(B, 2, H, W) -> (B, 2, H, W)``; ``H``, ``W`` must be multiples of 2**levels.

    Encoder level ``i`` has ``C * 2**i`` channels, the bottleneck ``C * 2**levels``.
    """

    def __init__(self, channels: int, levels: int, pool: str, negative_slope: float) -> None:
        super().__init__()
        self.levels = levels
        widths = [channels * 2**i for i in range(levels + 1)]
        self.pool: nn.Module = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.encoders = nn.ModuleList(
            _UNetConvBlock(2 if i == 0 else widths[i - 1], widths[i], negative_slope)
            for i in range(levels)
        )
        self.bottom = _UNetConvBlock(widths[levels - 1], widths[levels], negative_slope)
        # ups[i] / decoders[i] bring level i+1 back to level i (used from deepest to shallowest).
        self.ups = nn.ModuleList(
            _UNetUp(widths[i + 1], widths[i], negative_slope) for i in range(levels)
        )
        self.decoders = nn.ModuleList(
            _UNetConvBlock(2 * widths[i], widths[i], negative_slope) for i in range(levels)
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
    """

    def __init__(
        self,
        channels: int = 32,
        levels: int = 3,
        pool: Literal["avg", "max"] = "avg",
        pad_mode: PadMode = "reflect",
        negative_slope: float = 0.2,
    ) -> None:
        _require_int("levels", levels, 1)
        super().__init__(size_multiple=2**levels, pad_mode=pad_mode)
        _require_int("channels", channels, 1)
        _require_choice("pool", pool, ("avg", "max"))
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise InputError(f"negative_slope: expected a number >= 0, got {negative_slope!r}")
        if not negative_slope >= 0:
            raise InputError(f"negative_slope: expected a number >= 0, got {negative_slope!r}")
        self.body = _UNetBody(channels, levels, pool, float(negative_slope))


# ----------------------------------------------------------------------------------------------
# DIDN


class _DownUpBlock(nn.Module):
    """DIDN down-up block ``(B, C, H, W) -> (B, C, H, W)``; H, W multiples of 2**levels.

    Two 3x3 conv + PReLU at full resolution; ``levels`` times a stride-2 3x3 conv that halves the
    resolution and doubles the channels, followed by a 3x3 conv (each with PReLU); back up with
    sub-pixel convolution (1x1 conv + PixelShuffle(2)), concatenation with the same-resolution
    features, a 1x1 fusion conv and a 3x3 conv (PReLUs after each); a final 3x3 conv and a local
    residual connection.
    """

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        widths = [channels * 2**i for i in range(levels + 1)]
        self.pre = nn.Sequential(
            _conv3x3(channels, channels), nn.PReLU(), _conv3x3(channels, channels), nn.PReLU()
        )
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, stride=2, padding=1),
                nn.PReLU(),
                _conv3x3(widths[i + 1], widths[i + 1]),
                nn.PReLU(),
            )
            for i in range(levels)
        )
        # ups[i] / fuses[i] bring level i+1 back to level i (used from deepest to shallowest).
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i + 1], 4 * widths[i], kernel_size=1),
                nn.PixelShuffle(2),
                nn.PReLU(),
            )
            for i in range(levels)
        )
        self.fuses = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(2 * widths[i], widths[i], kernel_size=1),
                nn.PReLU(),
                _conv3x3(widths[i], widths[i]),
                nn.PReLU(),
            )
            for i in range(levels)
        )
        self.out = _conv3x3(channels, channels)

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


class _DIDNBody(nn.Module):
    """Real DIDN ``(B, 2, H, W) -> (B, 2, H, W)``; ``H``, ``W`` multiples of 2**levels."""

    def __init__(self, channels: int, blocks: int, levels: int) -> None:
        super().__init__()
        self.head = nn.Sequential(_conv3x3(2, channels), nn.PReLU())
        self.blocks = nn.ModuleList(_DownUpBlock(channels, levels) for _ in range(blocks))
        self.fusion = nn.Sequential(
            nn.Conv2d(blocks * channels, channels, kernel_size=1),
            nn.PReLU(),
            _conv3x3(channels, channels),
            nn.PReLU(),
        )
        self.tail = _conv3x3(channels, 2)

    def forward(self, t: Tensor) -> Tensor:
        """``t``: float ``(B, 2, H, W)`` -> float ``(B, 2, H, W)``."""
        h = self.head(t)
        outputs: list[Tensor] = []
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        return self.tail(self.fusion(torch.cat(outputs, dim=1)))


class DIDNDenoiser(ComplexDenoiser):
    """Deep Iterative Down-up Network (Yu et al., CVPRW 2019) with a global residual.

    A 3x3 conv + PReLU lifts ``2 -> C`` channels; ``blocks`` down-up blocks (each down-sampling
    ``levels`` times with strided convolutions and up-sampling with sub-pixel convolution, with
    skip concatenations and a local residual) are applied in sequence; the outputs of all blocks
    are concatenated and fused by a 1x1 conv (the DIDN "reconstruction" fusion), refined by a
    3x3 conv and mapped ``C -> 2`` by a last 3x3 conv. Images whose sides are not multiples of
    ``2**levels`` are padded and cropped back. Unlike the original DIDN, the head does not
    down-sample (the network runs at full resolution).

    Args:
        channels: feature channels ``C`` (>= 1); the original uses 256, the PUN setting 64.
        blocks: number of down-up blocks (>= 1).
        levels: down-samplings inside each block (>= 1); the original uses 2.
        pad_mode: ``"reflect"`` or ``"zeros"`` padding up to a multiple of ``2**levels``.
    """

    def __init__(
        self,
        channels: int = 64,
        blocks: int = 3,
        levels: int = 2,
        pad_mode: PadMode = "reflect",
    ) -> None:
        _require_int("levels", levels, 1)
        super().__init__(size_multiple=2**levels, pad_mode=pad_mode)
        _require_int("channels", channels, 1)
        _require_int("blocks", blocks, 1)
        self.body = _DIDNBody(channels, blocks, levels)


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

    Modules are visited in registration order, so the same generator state gives bit-identical
    weights. Weights wrapped by ``torch.nn.utils.prune`` / ``parametrize`` are re-initialised
    through their stored original tensor. The global RNG is never used.

    Args:
        module: network to re-initialise (any device/dtype; values are drawn on the
            generator's device and copied over).
        generator: source of randomness, e.g. ``torch.Generator().manual_seed(0)``.
        scheme: weight distribution, see above.

    Raises:
        InputError: if ``generator`` is not a ``torch.Generator`` or ``scheme`` is unknown.
    """
    if not isinstance(module, nn.Module):
        raise InputError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(generator, torch.Generator):
        raise InputError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    _require_choice("scheme", scheme, _INIT_SCHEMES)
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
