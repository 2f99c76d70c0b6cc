"""Iterative Synaptic Flow (Tanaka et al. 2020, "Pruning neural networks without any data by
iteratively conserving synaptic flow").

Deep networks overflow SynFlow's objective: on the absolute-valued network every layer multiplies
a positive signal by about ``fan_in * mean|w|`` (~27 for a 64-channel 3x3 Kaiming layer), so a
MoDL with K unrolls of a ~30-layer DIDN reaches ~1e340, beyond float64. :func:`score` then
repeats the pass with each target's ``|W|`` divided by that per-layer gain
(:func:`layer_constants`).

Why per-layer constants keep the ranking, and when they cannot: if the linearised network is
positively homogeneous of degree ``d_l`` in each target ``W_l`` (every input-output path crosses
layer ``l`` exactly ``d_l`` times: plain chains of bias-free convolutions, ReLUs, pooling,
concatenations of equal-depth branches), then ``R(c_1 W_1, ..., c_L W_L) = prod_l c_l**d_l R(W)``
and the score of a weight ``w`` of layer ``l`` becomes ``c_l w * prod_j c_j**d_j / c_l * dR/dw``:
every score, in every layer, gets the same factor ``prod_j c_j**d_j``, so rankings within and
across layers are exactly those of the unscaled pass. Where paths of different lengths meet (skip
connections, residual adds, biases, MoDL's data consistency, which adds ``A^H y`` to
``lam * D(x)``), no rescaling of the weights keeps the ranking: with ``R = a*b + c`` (a path of
two layers beside a path of one), scaling every layer by ``k`` turns the scores ``(ab, ab, c)``
into ``(k^2 ab, k^2 ab, k c)``, which reorders them once ``k < c / (ab)``; a global constant
changes the ranking just as per-layer ones do. Only exact arithmetic over a wider exponent range
would reproduce the unscaled scores there, so the default (``rescale="auto"``) keeps the unscaled
pass whenever float64 can represent it (its scores are then exactly Tanaka et al.'s) and uses the
per-layer constants only when it cannot, where the unscaled scores do not exist.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning.allocation import check_density, kept_count
from punmri.pruning.model_calls import as_pair, call_model, move_to, reduce_output
from punmri.pruning.selection import select_by_counts, select_top_k
from punmri.pruning.targets import functional_name, stored_weight


def ones_like_inputs(example: Any) -> Any:
    """Ones shaped like every tensor in ``example`` (tensor or nested tuple/list).

    Real floating tensors become float64 and complex ones complex128 (the copy runs in double
    precision); other tensors and non-tensors (e.g. an MRI operator) are passed through unchanged.
    """
    if isinstance(example, torch.Tensor):
        if example.is_complex():
            return torch.ones(example.shape, dtype=torch.complex128, device=example.device)
        if example.is_floating_point():
            return torch.ones(example.shape, dtype=torch.float64, device=example.device)
        return example
    if isinstance(example, tuple):
        return tuple(ones_like_inputs(e) for e in example)
    if isinstance(example, list):
        return [ones_like_inputs(e) for e in example]
    return example


def _example_inputs(
    batches: Iterable[Any] | None,
    input_shape: Sequence[int] | None,
    input_factory: Callable[[], Any] | None,
) -> Any:
    given = [input_shape is not None, input_factory is not None]
    if sum(given) > 1:
        raise InputError("give at most one of input_shape and input_factory to synflow")
    if input_shape is not None:
        if not all(isinstance(s, int) and s > 0 for s in input_shape):
            raise InputError(f"input_shape must be positive ints, got {input_shape!r}")
        return torch.zeros(tuple(input_shape), dtype=torch.float64)
    if input_factory is not None:
        return input_factory()
    if batches is None:
        raise InputError("synflow needs input_shape, input_factory or data to know the input shape")
    for batch in batches:
        return as_pair(batch)[0]
    raise InputError("data yielded no batches (synflow needs one to know the input shape)")


def _linearised_copy(model: nn.Module) -> nn.Module:
    """float64 deep copy with every real floating parameter and buffer replaced by its abs."""
    twin = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in list(twin.parameters()) + list(twin.buffers()):
            if t.is_floating_point():
                t.abs_()
        for p in twin.parameters():
            p.requires_grad_(False)
    return twin


def layer_constants(weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per-target constant ``c = 1 / (fan_in * mean|W|)`` of SynFlow's rescaled pass.

    ``fan_in * mean|W|`` is the factor by which ``|W|`` multiplies a constant positive input
    (each output sums ``fan_in`` products; ``fan_in`` is ``W.shape[1]`` times the kernel size, as
    PyTorch counts it). Scaling ``|W|`` by ``c`` makes every layer of the linearised network pass
    such a signal on at about its own size. A target whose weights are all zero gets ``c = 1``.

    Args:
        weights: target name -> weight tensor (its absolute values are used).

    Returns:
        target name -> positive finite constant.
    """
    out = {}
    for name, w in weights.items():
        fan_in = math.prod(w.shape[1:]) if w.ndim > 1 else 1
        gain = float(w.detach().abs().double().mean()) * fan_in if w.numel() else 0.0
        out[name] = 1.0 / gain if math.isfinite(gain) and gain > 0 else 1.0
    return out


def _round_targets(
    total: int,
    density: float,
    counts: Mapping[str, int] | None,
    numels: Mapping[str, int],
    r: float,
) -> int | dict[str, int]:
    """Kept count(s) after a fraction ``r`` in (0, 1] of the exponential schedule."""
    if counts is None:
        return max(kept_count(total, density), int(round(total * density**r)))
    out = {}
    for n, c in counts.items():
        frac = c / numels[n]
        out[n] = c if frac == 0 else max(c, int(round(numels[n] * frac**r)))
    return out


def score(
    model: nn.Module,
    targets: Sequence[str],
    batches: Iterable[Any] | None,
    loss_fn: Any,
    generator: torch.Generator | None,
    *,
    density: float = 1.0,
    iterations: int = 100,
    counts: Mapping[str, int] | None = None,
    input_shape: Sequence[int] | None = None,
    input_factory: Callable[[], Any] | None = None,
    rescale: Literal["auto", "layer", "none"] = "auto",
) -> dict[str, torch.Tensor]:
    """Data-free SynFlow scores ``|w ⊙ dR/dw|`` after ``iterations`` rounds of pruning.

    All work happens on a float64 deep copy of ``model`` in eval mode whose floating parameters and
    buffers are replaced by their absolute values; the live model is never touched. The input is
    ones shaped like the inputs of the first batch of ``batches`` (or ``input_shape``, or the
    example returned by ``input_factory()``): every floating/complex tensor becomes
    float64/complex128 ones, anything else (an operator) is passed as is. ``R`` is the sum of the
    output (``sum |z|`` for a complex output). Round ``r = 1..iterations`` keeps
    ``round(total * density**(r/iterations))`` entries (exponential schedule; per layer with
    ``counts``) among the survivors of round ``r - 1``.

    The returned scores are those of the last round with entries pruned in earlier rounds set to
    ``-inf``, so keeping the top ``round(density * total)`` (or ``counts`` per layer) reproduces the
    final round. ``loss_fn`` and ``generator`` are unused.

    ``rescale`` chooses how overflow is handled (see the module docstring): ``"none"`` runs the
    plain pass; ``"layer"`` multiplies each target's ``|W|`` by :func:`layer_constants` in every
    round (same ranking as the plain pass for positively homogeneous networks; the scores are
    those of the rescaled network, i.e. the plain ones times one global factor there);
    ``"auto"`` runs the plain pass and, only if some round's flow or scores are not finite,
    starts again with ``"layer"``.

    For MoDL the data-consistency step (a CG solve with an operator of fixed, non-absolute entries,
    complex arithmetic and ``|z|`` at the output) is not a positive multilinear map, so the
    conservation property of Tanaka et al. holds only approximately.

    Raises:
        InputError: bad ``density``/``iterations``/``rescale``, or scores that are not finite
            even after rescaling (with ``"none"``: not finite at all), naming the fix.
    """
    density = check_density(density)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InputError(f"iterations must be a positive int, got {iterations!r}")
    passes = {"auto": (False, True), "none": (False,), "layer": (True,)}
    if rescale not in passes:
        raise InputError(f"rescale must be one of {list(passes)}, got {rescale!r}")
    example = _example_inputs(batches, input_shape, input_factory)
    twin = _linearised_copy(model)
    device = next(iter(stored_weight(twin, t) for t in targets)).device
    inputs = move_to(ones_like_inputs(example), device)
    base = {t: stored_weight(twin, t).detach() for t in targets}
    for scaled in passes[rescale]:
        constants = layer_constants(base) if scaled else dict.fromkeys(targets, 1.0)
        weights = {t: base[t] * constants[t] for t in targets}
        scores = _iterate(twin, inputs, weights, density, iterations, counts)
        if scores is not None:
            return scores
    hint = "pass rescale='layer' or 'auto'" if rescale == "none" else "use fewer unrolls or layers"
    raise InputError(
        f"SynFlow's scores overflow float64 on this network (rescale={rescale!r}); {hint}"
    )


def _iterate(
    twin: nn.Module,
    inputs: Any,
    base: Mapping[str, torch.Tensor],
    density: float,
    iterations: int,
    counts: Mapping[str, int] | None,
) -> dict[str, torch.Tensor] | None:
    """The ``iterations`` SynFlow rounds on ``twin`` with absolute weights ``base``; ``None`` as
    soon as a round's flow or a surviving entry's score is not finite."""
    targets = list(base)
    numels = {t: w.numel() for t, w in base.items()}
    total = sum(numels.values())
    alive = {t: torch.ones_like(w, dtype=torch.bool) for t, w in base.items()}
    names = {t: functional_name(twin, t) for t in targets}
    scores: dict[str, torch.Tensor] = {}
    for r in range(1, iterations + 1):
        leaves = {t: (base[t] * alive[t]).requires_grad_(True) for t in targets}
        out = call_model(twin, inputs, {names[t]: w for t, w in leaves.items()})
        flow = reduce_output(out)
        if not torch.isfinite(flow).all():
            return None
        grads = torch.autograd.grad(flow, [leaves[t] for t in targets], allow_unused=True)
        scores = {}
        for t, g in zip(targets, grads, strict=True):
            s = torch.zeros_like(base[t]) if g is None else (leaves[t].detach() * g).abs()
            if not torch.isfinite(s[alive[t]]).all():
                return None
            scores[t] = torch.where(alive[t], s, torch.full_like(s, -torch.inf))
        if r == iterations:
            break
        keep = _round_targets(total, density, counts, numels, r / iterations)
        if isinstance(keep, int):
            chosen = select_top_k(scores, keep, current=alive)
        else:
            chosen = select_by_counts(scores, keep, current=alive)
        alive = {t: chosen[t].to(base[t].device) for t in targets}
    return scores
