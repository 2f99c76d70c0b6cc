"""Channel-level (structured) pruning: channel masks, the masked network, compaction, scores and
the PUN channel search.

A channel mask is a :class:`~punmri.pruning.Masks` keyed by slot (``{slot: bool (channels,)}``,
see :mod:`punmri.models.channels`). Three views of the same network:

* the *masked* network (:func:`gated`): the full network with forward hooks that multiply every
  gate's output channel-wise by the mask (0/1, or the soft concrete sample during the search);
* the *compact* network (:func:`compact`): a deep copy in which every per-channel tensor keeps only
  the kept channels' entries: the same modules, physically smaller, no hooks or masks; it computes
  what the masked network computes (tested to 1e-5 for every denoiser);
* a network of given *widths* (:func:`narrow_to`): the compact architecture with the first
  ``w`` channels of each slot, e.g. to load a trained compact checkpoint, or to train
  ``dense-narrow`` at the kept widths from a fresh initialisation.

Scores (:data:`CHANNEL_SCORES`): ``random``, ``norm`` (the L2 norm of the channel's filters at
initialisation, over every layer writing it), ``snip`` (SNIP's ``|w * dL/dw|`` summed over the
channel's filters) and the PUN search (:func:`channel_search`: one Bernoulli logit per slot
channel, learned with the binary concrete relaxation and the KL prior on frozen initial weights).
Selection keeps exact counts: per slot (``uniform``: ``max(1, round(density * channels))``) or by
one global ranking with one channel per slot guaranteed (``global``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from punmri.config import PunSearchConfig
from punmri.errors import InputError
from punmri.models.channels import ChannelGraph, tensor_index
from punmri.pruning.allocation import check_density
from punmri.pruning.masks import Masks
from punmri.pruning.model_calls import (
    LossFn,
    call_model,
    cycle_batches,
    frozen,
    loss_value,
    move_to,
    preserved_state,
    take_batches,
)
from punmri.pruning.pun.gate import default_init_prob, initial_logits
from punmri.pruning.pun.relaxation import bernoulli_kl, sample_concrete
from punmri.pruning.pun.search import search_log
from punmri.pruning.selection import select_by_counts, select_top_k_with_floor

ChannelAllocation = Literal["uniform", "global"]
#: Channel allocations: exact per-slot counts, or one global ranking (one channel per slot kept).
CHANNEL_ALLOCATIONS = ("uniform", "global")


# ----------------------------------------------------------------------------------------------
# counts


def whole_slots(graph: ChannelGraph, targets: Collection[str]) -> frozenset[str]:
    """Slots kept whole because a convolution writing them is not among the prunable ``targets``
    (``prune.include``/``exclude``): as Torch-Pruning's ignored layers, an excluded layer keeps
    all its output channels, while its input channels follow the layers that write them."""
    targets = set(targets)
    return frozenset(
        graph.tensors[name][dim][0].slot
        for name, dim in graph.writes.items()
        if name not in targets
    )


def _prunable_widths(graph: ChannelGraph, whole: Collection[str]) -> dict[str, int]:
    widths = {s: n for s, n in graph.widths().items() if s not in whole}
    if not widths:
        raise InputError(
            "prune.include/exclude keep every channel slot whole: no layer's output channels are "
            "left to prune (patterns match weight names such as 'denoiser.body.0.weight')"
        )
    return widths


def channel_counts(
    graph: ChannelGraph, density: float, whole: Collection[str] = ()
) -> dict[str, int]:
    """Kept channels per slot at ``density`` (``uniform``): ``max(1, round(density * channels))``
    (Python's round, halves to even); every slot keeps at least one channel and the ``whole``
    slots (:func:`whole_slots`) keep all."""
    density = check_density(density)
    widths = graph.widths()
    prunable = _prunable_widths(graph, whole)
    return {s: max(1, round(density * n)) if s in prunable else n for s, n in widths.items()}


def global_kept(graph: ChannelGraph, density: float, whole: Collection[str] = ()) -> int:
    """Kept channels over the slots that are not ``whole`` at ``density`` (``global``):
    ``round(density * their total)``, at least one per slot."""
    widths = _prunable_widths(graph, whole)
    return max(len(widths), round(check_density(density) * sum(widths.values())))


def check_channel_masks(graph: ChannelGraph, masks: Mapping[str, Tensor]) -> None:
    """Raise :class:`InputError` unless ``masks`` names every slot of ``graph`` with a bool
    vector of its size that keeps at least one channel."""
    widths = graph.widths()
    if set(masks) != set(widths):
        missing = sorted(set(widths) - set(masks))[:3]
        extra = sorted(set(masks) - set(widths))[:3]
        raise InputError(
            f"channel mask does not fit the network: missing slots {missing}, unknown slots "
            f"{extra} (was it found for another model.denoiser/channels/depth?)"
        )
    for slot, m in masks.items():
        if tuple(m.shape) != (widths[slot],):
            raise InputError(
                f"channel mask of {slot}: expected shape ({widths[slot]},), got {tuple(m.shape)}"
            )
        if not bool(m.any()):
            raise InputError(f"channel mask of {slot} keeps no channel; every slot needs one")


def kept_indices(masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{slot: sorted indices of the kept channels}``."""
    return {
        s: torch.nonzero(m.to(torch.bool).cpu(), as_tuple=False).flatten() for s, m in masks.items()
    }


def first_channels(widths: Mapping[str, int], graph: ChannelGraph) -> Masks:
    """The channel mask keeping the first ``widths[slot]`` channels of every slot."""
    full = graph.widths()
    out = {}
    for slot, n in full.items():
        m = torch.zeros(n, dtype=torch.bool)
        m[: widths[slot]] = True
        out[slot] = m
    return Masks(out)


# ----------------------------------------------------------------------------------------------
# the masked network


@contextmanager
def gated(
    model: nn.Module, graph: ChannelGraph, values: Mapping[str, Tensor]
) -> Iterator[nn.Module]:
    """Inside the block, every gate's output is multiplied channel-wise by ``values[slot]``
    (read at each call, so a dict updated between calls takes effect): the channel-masked network
    for 0/1 values. The hooks are removed on exit."""
    modules = dict(model.named_modules())
    handles = []

    def hook_for(slot: str, unit: int) -> Callable[..., Tensor]:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
            v = values[slot].to(device=output.device, dtype=output.dtype)
            if unit > 1:
                v = v.repeat_interleave(unit)
            return output * v.view(1, -1, 1, 1)

        return hook

    try:
        for slot, s in graph.slots.items():
            for name, unit in s.gates:
                handles.append(modules[name].register_forward_hook(hook_for(slot, unit)))
        yield model
    finally:
        for h in handles:
            h.remove()


# ----------------------------------------------------------------------------------------------
# compaction


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return model.get_submodule(path), attr


@torch.no_grad()
def compact(model: nn.Module, graph: ChannelGraph, masks: Mapping[str, Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` keeping the channels of ``masks`` (``{slot: bool}``).

    Every per-channel tensor of ``graph`` keeps the entries of the kept channels (in order);
    convolutions' ``in_channels``/``out_channels`` and normalisations' ``num_features`` follow.
    Parameters stay parameters (``requires_grad`` kept), buffers stay buffers. ``model`` is not
    changed.

    Raises:
        InputError: a mask that does not fit ``graph`` or keeps no channel of a slot, or a model
            carrying pruning parametrizations (fold them first).
    """
    check_channel_masks(graph, masks)
    if any("parametrizations" in n for n, _ in model.named_parameters()):
        raise InputError(
            "compact: the model carries weight masks; fold them (pruning.remove) first"
        )
    keep = kept_indices(masks)
    out = copy.deepcopy(model)
    for name, dims in graph.tensors.items():
        module, attr = _owner(out, name)
        tensor = getattr(module, attr)
        if tensor is None:
            continue
        small = tensor.detach()
        for dim, segments in dims.items():
            small = small.index_select(dim, tensor_index(segments, keep).to(small.device))
        small = small.clone()
        if isinstance(tensor, nn.Parameter):
            setattr(module, attr, nn.Parameter(small, requires_grad=tensor.requires_grad))
        else:
            setattr(module, attr, small)
    for name, seg in graph.features.items():
        out.get_submodule(name).num_features = len(keep[seg.slot]) * seg.unit
    for module in out.modules():
        if isinstance(module, nn.ConvTranspose2d):
            module.in_channels = module.weight.shape[0]
            module.out_channels = module.weight.shape[1] * module.groups
        elif isinstance(module, nn.Conv2d):
            module.out_channels = module.weight.shape[0]
            module.in_channels = module.weight.shape[1] * module.groups
    return out


@torch.no_grad()
def expand_into(
    small: nn.Module, full: nn.Module, graph: ChannelGraph, masks: Mapping[str, Tensor]
) -> nn.Module:
    """The inverse of :func:`compact`: copy every tensor of the compact ``small`` into the kept
    channels' entries of ``full`` (in place; other entries untouched) and return ``full``. Gated
    by ``masks`` (:func:`gated`), ``full`` then computes what ``small`` computes."""
    check_channel_masks(graph, masks)
    keep = kept_indices(masks)
    small_state = small.state_dict()
    for name, value in full.state_dict().items():
        source = small_state[name]
        dims = graph.tensors.get(name)
        if not dims:
            value.copy_(source)
            continue
        index = {d: tensor_index(segs, keep).to(value.device) for d, segs in dims.items()}
        order = sorted(index)
        # gather the kept sub-blocks dimension by dimension, fill the innermost, scatter back
        blocks = [value]
        for d in order[:-1]:
            blocks.append(blocks[-1].index_select(d, index[d]))
        inner = blocks[-1].index_copy(order[-1], index[order[-1]], source)
        for d, outer in zip(reversed(order[:-1]), reversed(blocks[:-1]), strict=True):
            inner = outer.index_copy(d, index[d], inner)
        value.copy_(inner)
    return full


def narrow_to(model: nn.Module, graph: ChannelGraph, widths: Mapping[str, int]) -> nn.Module:
    """The compact architecture of ``widths`` (``{slot: channels}``): ``model`` compacted to the
    first ``widths[slot]`` channels of each slot (load trained weights into it, or re-initialise
    it)."""
    unknown = sorted(set(widths) ^ set(graph.widths()))
    if unknown:
        raise InputError(
            f"channel widths do not fit the network (slots {unknown[:3]}); were they written for "
            "another model.denoiser/channels/depth?"
        )
    for slot, w in widths.items():
        if not 1 <= int(w) <= graph.slots[slot].channels:
            raise InputError(
                f"channel width of {slot}: expected 1..{graph.slots[slot].channels}, got {w}"
            )
    return compact(model, graph, first_channels(widths, graph))


# ----------------------------------------------------------------------------------------------
# scores and selection


def per_channel(graph: ChannelGraph, scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Sum elementwise ``scores`` (``{weight name: tensor of its shape}``) over each slot channel's
    filters: the entries of every tensor that *writes* the channel (its output dimension: 0 for
    convolutions, 1 for transposed ones). Tensors not in ``scores`` contribute nothing."""
    out = {s: torch.zeros(n, dtype=torch.float64) for s, n in graph.widths().items()}
    for name, score in scores.items():
        dim = graph.writes.get(name)
        if dim is None:
            continue
        (seg,) = graph.tensors[name][dim]
        moved = score.detach().double().cpu().movedim(dim, 0)
        out[seg.slot] += moved.reshape(seg.channels, seg.unit, -1).sum(dim=(1, 2))
    return out


def select_channels(
    graph: ChannelGraph,
    scores: Mapping[str, Tensor],
    density: float,
    allocation: ChannelAllocation = "uniform",
    whole: Collection[str] = (),
) -> Masks:
    """Channel mask keeping the best-scored channels (higher = keep, deterministic ties) with exact
    counts: :func:`channel_counts` per slot for ``uniform``, :func:`global_kept` over all slots
    (the best channel of every slot always kept) for ``global``; ``whole`` slots keep all (their
    scores, if given, are not read)."""
    ranked = {s: v for s, v in scores.items() if s not in whole}
    if allocation == "uniform":
        counts = channel_counts(graph, density, whole)
        kept = select_by_counts(ranked, {s: counts[s] for s in ranked})
    elif allocation == "global":
        floor = select_by_counts(ranked, dict.fromkeys(ranked, 1))
        kept = select_top_k_with_floor(ranked, global_kept(graph, density, whole), floor)
    else:
        raise InputError(
            f"prune.channel_allocation: expected one of {list(CHANNEL_ALLOCATIONS)}, "
            f"got {allocation!r}"
        )
    full = {s: torch.ones(graph.slots[s].channels, dtype=torch.bool) for s in whole}
    return Masks({**kept, **full})


def random_scores(graph: ChannelGraph, generator: torch.Generator) -> dict[str, Tensor]:
    """Uniform random scores per slot channel (slots in sorted order, from ``generator``)."""
    widths = graph.widths()
    return {
        s: torch.rand(widths[s], generator=generator, dtype=torch.float64) for s in sorted(widths)
    }


# ----------------------------------------------------------------------------------------------
# the PUN channel search


def _loss(model: nn.Module, batch: Any, loss_fn: LossFn, device: torch.device) -> Tensor:
    inputs, target = move_to(batch, device)
    return loss_value(loss_fn, call_model(model, inputs), target)


def channel_search(
    model: nn.Module,
    graph: ChannelGraph,
    data: Iterable[Any],
    loss_fn: LossFn,
    density: float,
    config: PunSearchConfig | None = None,
    allocation: ChannelAllocation = "uniform",
    generator: torch.Generator | None = None,
    whole: Collection[str] = (),
) -> tuple[Masks, list[dict[str, Any]]]:
    """PUN at the channel level: learn one Bernoulli keep-probability per slot channel.

    The weights stay frozen at their values; per step one binary concrete sample ``m`` of every
    slot gates the network (:func:`gated`) and Adam lowers ``loss(f(x; m), y) + beta * KL`` in the
    logits, the KL to ``Bern(p0)`` with ``p0`` the slot's kept fraction (``uniform``) or the global
    one, reduced by ``config.kl_reduction``. The temperature and ``beta`` follow ``config``. The
    mask keeps the channels with the largest logits, with :func:`select_channels`'s exact counts.
    The ``whole`` slots (:func:`whole_slots`) have no logits and stay open.

    Returns:
        ``(masks, history)``; ``history`` has ``step``, ``loss``, ``recon``, ``kl``, ``tau``,
        ``expected_density`` per logged step, ``masks.metadata["pun_channel"]`` the last entry and
        the config.
    """
    config = config or PunSearchConfig()
    generator = generator or torch.Generator().manual_seed(0)
    density = check_density(density)
    widths = _prunable_widths(graph, whole)
    total = sum(widths.values())
    if allocation == "uniform":
        counts = channel_counts(graph, density, whole)
        p0 = {s: counts[s] / widths[s] for s in widths}
    else:
        p0 = dict.fromkeys(widths, global_kept(graph, density, whole) / total)
    device = next(model.parameters()).device
    logits = {
        s: initial_logits(
            torch.Size([widths[s]]),
            config.init_prob
            if config.init_prob is not None
            else default_init_prob(min(p0[s], 0.999)),
            config.init_noise,
            generator,
        )
        .to(device)
        .requires_grad_(True)
        for s in sorted(widths)
    }
    optimizer = torch.optim.Adam(list(logits.values()), lr=config.lr)
    values = {s: torch.ones(graph.slots[s].channels, device=device) for s in whole}
    history: list[dict[str, Any]] = []
    stream = cycle_batches(data)
    with frozen(model), gated(model, graph, values):
        for step in range(config.steps):
            tau, beta = config.tau_at(step), config.beta_at(step)
            for s, lg in logits.items():
                values[s] = sample_concrete(lg, tau, generator)
            recon = _loss(model, next(stream), loss_fn, device)
            kls = torch.cat([bernoulli_kl(lg, p0[s]) for s, lg in logits.items()])
            kl = kls.sum() if config.kl_reduction == "sum" else kls.mean()
            loss = recon + beta * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % config.log_every == 0 or step == config.steps - 1:
                with torch.no_grad():
                    p = torch.cat([torch.sigmoid(lg) for lg in logits.values()])
                entry = search_log(step, loss, recon, kl, beta, tau)
                history.append({**entry, "expected_density": float(p.mean())})
    scores = {s: lg.detach().double().cpu() for s, lg in logits.items()}
    masks = select_channels(graph, scores, density, allocation, whole)
    masks.metadata["pun_channel"] = {
        "last": history[-1],
        "config": dataclasses.asdict(config),
        "allocation": allocation,
    }
    return masks, history


@torch.no_grad()
def masked_loss(
    model: nn.Module,
    graph: ChannelGraph,
    masks: Mapping[str, Tensor],
    data: Iterable[Any],
    loss_fn: LossFn,
) -> float:
    """Mean loss of ``model`` gated by ``masks`` over the batches of ``data`` (its buffers, e.g.
    BatchNorm statistics of a model in train mode, are restored after)."""
    device = next(model.parameters()).device
    values = {s: m.to(torch.float32) for s, m in masks.items()}
    with preserved_state(model), gated(model, graph, values):
        losses = [float(_loss(model, b, loss_fn, device)) for b in take_batches(data)]
    return sum(losses) / len(losses)


__all__ = [
    "CHANNEL_ALLOCATIONS",
    "channel_counts",
    "channel_search",
    "check_channel_masks",
    "compact",
    "expand_into",
    "first_channels",
    "gated",
    "global_kept",
    "kept_indices",
    "masked_loss",
    "narrow_to",
    "per_channel",
    "random_scores",
    "select_channels",
    "whole_slots",
]
