"""Channel structure of the denoisers: which tensors share which feature channels.

Structured pruning removes whole feature channels, and in these denoisers channels are tied
across layers: a residual addition ``x + branch(x)`` ties the branch's last convolution to every
other writer of ``x``; a concatenation ``cat([a, b])`` makes the next convolution's input the
channels of ``a`` followed by those of ``b``; sub-pixel up-sampling (``PixelShuffle(2)``) turns
4 consecutive convolution outputs into one channel. A :class:`Slot` is one set of tied channels,
kept or removed together; a :class:`ChannelGraph` records, for every per-channel tensor of a
network (convolution weights and biases, normalisation parameters and statistics), which slot's
channels lie along which of its dimensions (:class:`Segment`), and the modules whose outputs carry
each slot's channels (its *gates*: multiplying their outputs channel-wise by a 0/1 mask is the
channel-masked network).

The graphs are written per architecture from the module structure (:func:`denoiser_graph`) rather
than traced: a forward trace sees one of the ``K`` BatchNorm sets of ``batch-per-unroll`` per call,
and the dependency-graph libraries we checked (Torch-Pruning 1.6.1) have no rule for
``PixelShuffle``, which DIDN uses in every down-up block and before its last layer. Every
denoiser's graph is tested by compacting it (:mod:`punmri.pruning.channels`) and comparing the
small network's output with the masked one's.

Fixed channels (the 2 real/imaginary channels of each body's input and output) are never pruned
and have no slot. Names: tensors and modules by their ``named_modules`` path in the network the
graph was built for; slots as ``DENOISER_PATH:LOCAL`` (e.g. ``denoiser:layer0``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from punmri.errors import InputError
from punmri.models.denoisers import (
    ComplexDenoiser,
    DIDNDenoiser,
    PerUnrollBatchNorm,
    ResNetDenoiser,
    UNetDenoiser,
    _DIDNBody,
    _Residual,
    _UNetBody,
)

_NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d, PerUnrollBatchNorm)


@dataclass(frozen=True)
class Segment:
    """``channels`` consecutive channels of ``slot`` along one tensor dimension, each occupying
    ``unit`` consecutive indices (4 for the convolution in front of a ``PixelShuffle(2)``)."""

    slot: str
    channels: int
    unit: int = 1


@dataclass(frozen=True)
class Slot:
    """A set of ``channels`` tied feature channels; ``gates`` lists ``(module, unit)`` pairs whose
    outputs carry them (channel ``c`` at output indices ``c*unit .. c*unit + unit - 1``)."""

    name: str
    channels: int
    gates: tuple[tuple[str, int], ...] = ()


@dataclass
class ChannelGraph:
    """Slots, and where their channels lie in every per-channel tensor and module.

    ``tensors``: ``{tensor name: {dim: segments}}`` (the segments of one dimension cover it
    whole, in order). ``features``: ``{norm module name: segment}`` (its ``num_features``).
    ``writes``: ``{convolution weight name: dim}``, the dimension along which it writes a slot's
    channels (0 for convolutions, 1 for transposed ones; absent for the fixed output layers).
    """

    slots: dict[str, Slot] = field(default_factory=dict)
    tensors: dict[str, dict[int, tuple[Segment, ...]]] = field(default_factory=dict)
    features: dict[str, Segment] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)

    def widths(self) -> dict[str, int]:
        """``{slot: channels}`` of the network the graph describes."""
        return {name: s.channels for name, s in self.slots.items()}

    def prefixed(self, prefix: str) -> ChannelGraph:
        """This graph with every module/tensor name under ``prefix`` (``"denoiser"``) and every
        slot name as ``prefix:slot`` (unchanged for an empty prefix)."""

        def slot(name: str) -> str:
            return f"{prefix}:{name}" if prefix else name

        def seg(s: Segment) -> Segment:
            return Segment(slot(s.slot), s.channels, s.unit)

        def path(name: str) -> str:
            return f"{prefix}.{name}" if prefix else name

        return ChannelGraph(
            slots={
                slot(n): Slot(slot(n), s.channels, tuple((path(m), u) for m, u in s.gates))
                for n, s in self.slots.items()
            },
            tensors={
                path(t): {d: tuple(seg(s) for s in segs) for d, segs in dims.items()}
                for t, dims in self.tensors.items()
            },
            features={path(m): seg(s) for m, s in self.features.items()},
            writes={path(t): d for t, d in self.writes.items()},
        )

    def merged(self, other: ChannelGraph) -> ChannelGraph:
        """The union of two graphs over disjoint names."""
        clash = set(self.slots) & set(other.slots) or set(self.tensors) & set(other.tensors)
        if clash:
            raise InputError(f"channel graphs overlap at {sorted(clash)[:3]}")
        return ChannelGraph(
            {**self.slots, **other.slots},
            {**self.tensors, **other.tensors},
            {**self.features, **other.features},
            {**self.writes, **other.writes},
        )


class _Builder:
    """Collects slots, tensor layouts and gates while walking one denoiser's modules."""

    def __init__(self, root: nn.Module) -> None:
        self.names = {id(m): n for n, m in root.named_modules()}
        self.graph = ChannelGraph()

    def name(self, module: nn.Module) -> str:
        return self.names[id(module)]

    def slot(self, name: str, channels: int) -> Segment:
        if name in self.graph.slots:
            raise InputError(f"channel slot {name!r} defined twice")
        self.graph.slots[name] = Slot(name, channels)
        return Segment(name, channels)

    def gate(self, seg: Segment, module: nn.Module) -> None:
        s = self.graph.slots[seg.slot]
        self.graph.slots[seg.slot] = Slot(
            s.name, s.channels, (*s.gates, (self.name(module), seg.unit))
        )

    def conv(
        self, conv: nn.Module, out: Segment | None, inp: Segment | Sequence[Segment] | None
    ) -> None:
        """Record a convolution's weight (and bias) dims: ``out`` channels, ``inp`` channels (a
        concatenation for a list); ``None`` for the fixed 2 channels."""
        transposed = isinstance(conv, nn.ConvTranspose2d)
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        dims: dict[int, tuple[Segment, ...]] = {}
        if out is not None:
            dims[out_dim] = (out,)
        if inp is not None:
            dims[in_dim] = (inp,) if isinstance(inp, Segment) else tuple(inp)
        name = self.name(conv)
        self.graph.tensors[f"{name}.weight"] = dims
        if out is not None:
            self.graph.writes[f"{name}.weight"] = out_dim
        if getattr(conv, "bias", None) is not None and out is not None:
            self.graph.tensors[f"{name}.bias"] = {0: (out,)}

    def norm(self, norm: nn.Module, seg: Segment) -> None:
        """Record every per-channel tensor of a normalisation module (and its sub-modules)."""
        base = self.name(norm)
        for sub_name, sub in norm.named_modules():
            if isinstance(sub, nn.modules.batchnorm._NormBase):
                full = f"{base}.{sub_name}" if sub_name else base
                self.graph.features[full] = seg
                tensors = [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]
                for t_name, t in tensors:
                    if t is not None and t.ndim == 1:
                        self.graph.tensors[f"{full}.{t_name}"] = {0: (seg,)}

    def produce(self, seg: Segment, conv: nn.Module, inp, norm: nn.Module | None = None) -> None:
        """A convolution (with optional normalisation behind it) writing ``seg``'s channels: record
        both and gate the last of them."""
        self.conv(conv, seg, inp)
        if norm is not None:
            self.norm(norm, seg)
        self.gate(seg, norm if norm is not None else conv)


def _conv_norm_pairs(seq: Iterable[nn.Module]) -> list[tuple[nn.Module, nn.Module | None]]:
    """``(conv, norm or None)`` for each convolution of a ``[conv, norm?, act]*`` sequence."""
    mods = list(seq)
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            out.append((m, nxt if isinstance(nxt, _NORM_TYPES) else None))
    return out


def _chain(b: _Builder, seq: nn.Module, prefix: str, inp) -> Segment:
    """Slots ``prefix.k`` for the convolutions of a ``[conv, norm?, act]*`` sequence fed by ``inp``;
    returns the last one's segment."""
    for k, (conv, norm) in enumerate(_conv_norm_pairs(seq)):
        channels = conv.out_channels
        seg = b.slot(f"{prefix}.{k}", channels)
        b.produce(seg, conv, inp, norm)
        inp = seg
    return cast(Segment, inp)


def _resnet_graph(d: ResNetDenoiser) -> ChannelGraph:
    b = _Builder(d)
    pairs = _conv_norm_pairs(d.body)
    inp: Segment | None = None
    for k, (conv, norm) in enumerate(pairs[:-1]):
        seg = b.slot(f"layer{k}", conv.out_channels)
        b.produce(seg, conv, inp, norm)
        inp = seg
    b.conv(pairs[-1][0], None, inp)
    return b.graph


def _unet_graph(d: UNetDenoiser) -> ChannelGraph:
    body = cast(_UNetBody, d.body)
    b = _Builder(d)
    inp: Segment | None = None
    skips: list[Segment] = []
    for i, enc in enumerate(body.encoders):
        inp = _chain(b, enc, f"enc{i}", inp)
        skips.append(inp)
    inp = _chain(b, body.bottom, "bottom", inp)
    for i in reversed(range(body.levels)):
        up = _chain(b, body.ups[i], f"up{i}", inp)
        inp = _chain(b, body.decoders[i], f"dec{i}", [up, skips[i]])
    b.conv(body.out, None, inp)
    return b.graph


def _residual(b: _Builder, res: _Residual, prefix: str, stream: Segment) -> None:
    """``x + branch(x)`` on ``stream``: inner convolutions get slots, the last writes ``stream``."""
    convs = [m for m in res.branch if isinstance(m, nn.Conv2d)]
    inp = stream
    for k, conv in enumerate(convs[:-1]):
        seg = b.slot(f"{prefix}.{k}", conv.out_channels)
        b.produce(seg, conv, inp)
        inp = seg
    b.produce(stream, convs[-1], inp)


def _didn_graph(d: DIDNDenoiser) -> ChannelGraph:
    body = cast(_DIDNBody, d.body)
    b = _Builder(d)
    head0, head2 = body.head[0], body.head[2]
    head = b.slot("head", head0.out_channels)
    b.produce(head, head0, None)
    trunk = b.slot("trunk", head2.out_channels)
    b.produce(trunk, head2, head)
    for j, block in enumerate(body.blocks):
        p = f"block{j}"
        _residual(b, block.pre, f"{p}.pre", trunk)
        levels = [trunk]
        for i, down in enumerate(block.downs):
            seg = b.slot(f"{p}.level{i + 1}", down[0].out_channels)
            b.produce(seg, down[0], levels[-1])
            _residual(b, down[2], f"{p}.level{i + 1}.res", seg)
            levels.append(seg)
        inp = levels[-1]
        for i in reversed(range(len(block.ups))):
            conv = block.ups[i][0]
            up = b.slot(f"{p}.up{i}", conv.out_channels // 4)
            b.produce(Segment(up.slot, up.channels, 4), conv, inp)
            fuse_conv, fuse_res = block.fuses[i][0], block.fuses[i][1]
            fuse = b.slot(f"{p}.fuse{i}", fuse_conv.out_channels)
            b.produce(fuse, fuse_conv, [up, levels[i]])
            _residual(b, fuse_res, f"{p}.fuse{i}.res", fuse)
            inp = fuse
        b.produce(trunk, block.out, inp)
    for k, pair in enumerate(body.recon.pairs):
        _residual(b, pair, f"recon.pair{k}", trunk)
    b.produce(trunk, body.recon.out, trunk)
    fusion_conv = body.fusion[0]
    fusion = b.slot("fusion", fusion_conv.out_channels // 4)
    fusion4 = Segment(fusion.slot, fusion.channels, 4)
    b.produce(fusion4, fusion_conv, [trunk] * len(body.blocks))
    _residual(b, body.fusion[2], "fusion.res", fusion4)
    b.conv(body.tail, None, fusion)
    return b.graph


def denoiser_graph(denoiser: nn.Module) -> ChannelGraph:
    """The :class:`ChannelGraph` of one denoiser (names relative to it).

    Raises:
        InputError: for a network that is not a ResNet, U-Net or DIDN denoiser.
    """
    if isinstance(denoiser, ResNetDenoiser):
        return _resnet_graph(denoiser)
    if isinstance(denoiser, UNetDenoiser):
        return _unet_graph(denoiser)
    if isinstance(denoiser, DIDNDenoiser):
        return _didn_graph(denoiser)
    raise InputError(
        f"channel pruning knows the resnet, unet and didn denoisers, not {type(denoiser).__name__}"
    )


def channel_graph(model: nn.Module) -> ChannelGraph:
    """The :class:`ChannelGraph` of every denoiser inside ``model`` (a MoDL or a bare denoiser),
    slots named ``DENOISER_PATH:SLOT`` (``denoiser:layer0``; ``denoisers.3:layer0`` unshared)."""
    graph = ChannelGraph()
    found = False
    for path, module in model.named_modules():
        if isinstance(module, ComplexDenoiser):
            graph = graph.merged(denoiser_graph(module).prefixed(path))
            found = True
    if not found:
        raise InputError(f"{type(model).__name__} holds no denoiser to prune channels of")
    return graph


def tensor_index(segments: Sequence[Segment], keep: Mapping[str, Tensor]) -> Tensor:
    """Indices along one dimension of the channels kept by ``keep`` (``{slot: sorted kept channel
    indices}``), for a dimension made of ``segments``."""
    parts, offset = [], 0
    for s in segments:
        kept = keep[s.slot].to(torch.long)
        idx = (kept[:, None] * s.unit + torch.arange(s.unit)[None, :]).reshape(-1)
        parts.append(idx + offset)
        offset += s.channels * s.unit
    return torch.cat(parts)


__all__ = [
    "ChannelGraph",
    "Segment",
    "Slot",
    "channel_graph",
    "denoiser_graph",
    "tensor_index",
]
