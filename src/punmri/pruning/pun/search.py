"""PUN mask search: learn Bernoulli keep-probabilities over frozen initial weights (PAPER.md).

Objective per step, for one batch ``(x, y)`` and one binary concrete mask sample ``m``::

    loss(f(x; w0 * m), y) + beta_t * KL,   KL = reduce_j KL(Bern(p_j) || Bern(p0_j))

``loss`` is the user's ``loss_fn`` (a batch mean, e.g. MSE); ``reduce`` is the mean over all
prunable entries (``kl_reduction="mean"``, default: ``beta`` does not scale with the model size)
or their sum (``"sum"``, the paper's formula). ``p0`` is the target density (per layer when an
allocation fixes per-layer counts). ``beta`` sets the balance against the scale of the loss: watch
``expected_density`` in the history (it should settle near ``p0``). Adam updates the logits only;
the temperature decays exponentially from ``tau0`` to ``tau1``; ``beta`` optionally ramps up
linearly over ``beta_warmup`` steps. The final mask keeps the top ``round(density * total)``
entries by logit (equivalently by ``p``, without the ties that saturated float probabilities would
create), ties broken as in :mod:`punmri.pruning.selection`.

Two guards keep a global ranking from pruning a layer away (at initialisation it empties the
denoiser's output layer here, docs/BENCHMARKS.md): ``dense`` layers are not searched and kept
whole, and ``channel_min`` keeps the best-ranked entries of every output channel; both count in
the ``round(density * total)`` kept entries, so the other entries share what is left.

PUN-IT is this search on freshly initialised weights, PUN-AT the same call on trained weights;
PUN-WT (weights learned jointly) uses :mod:`punmri.pruning.pun.joint`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from punmri.config import PunSearchConfig
from punmri.errors import InputError
from punmri.pruning.allocation import check_density, kept_count
from punmri.pruning.masks import Masks
from punmri.pruning.model_calls import LossFn, batch_loss, cycle_batches, frozen, take_batches
from punmri.pruning.pun.gate import (
    LogitGate,
    default_init_prob,
    initial_logits,
    prior_kl,
    top_logit_masks,
)
from punmri.pruning.selection import select_top_k_channel_min
from punmri.pruning.targets import stored_weight, validate_targets


def _priors(
    numels: Mapping[str, int], density: float, counts: Mapping[str, int] | None
) -> dict[str, float]:
    if counts is None:
        p0 = kept_count(sum(numels.values()), density) / sum(numels.values())
        return {t: p0 for t in numels}
    return {t: counts[t] / numels[t] for t in numels}


def pun_search(
    model: nn.Module,
    targets: Sequence[str],
    data: Iterable[Any],
    loss_fn: LossFn,
    density: float,
    config: PunSearchConfig | None = None,
    generator: torch.Generator | None = None,
    counts: Mapping[str, int] | None = None,
    dense: Sequence[str] = (),
    channel_min: int = 0,
    channel_dims: Mapping[str, int] | None = None,
) -> tuple[Masks, list[dict[str, Any]]]:
    """Search a mask keeping ``round(density * total)`` entries of ``targets`` (PUN, PAPER.md).

    Args:
        model: the network; its weights are read (frozen ``w0``) and never changed; its buffers,
            train/eval flags and grads are restored on exit. It runs in its current mode.
        targets: names of the prunable weights.
        data: re-iterable of ``(inputs, target)`` batches, cycled for ``config.steps`` steps.
        loss_fn: ``loss_fn(output, target) -> scalar``, a mean over the batch.
        density: kept fraction in (0, 1].
        config: search settings (defaults: :class:`PunSearchConfig`).
        generator: source of the initial-logit noise and of every concrete sample.
        counts: optional exact per-layer kept counts (uniform/ERK allocation).
        dense: targets kept whole and not searched (no logits, no KL term); they count in the
            kept entries, and the prior of the others is what remains over their number.
        channel_min: with the global ranking, keep at least this many entries (the largest
            logits) in every output channel of every searched target; counted in the kept
            entries.
        channel_dims: ``{target: output-channel dim}`` (required with ``channel_min``; see
            :func:`~punmri.pruning.targets.output_channel_dim`).

    Returns:
        ``(masks, history)``. ``history`` has one dict per logged step: ``step``, ``loss``,
        ``recon``, ``kl``, ``beta``, ``tau``, ``expected_density`` (mean ``p`` over all entries),
        ``hamming`` (entries that differ from the previous logged hard mask; None at the first) and
        ``eval_loss`` when ``eval_batches > 0``. ``masks.metadata["pun"]`` holds the last entry and
        the config.
    """
    config = PunSearchConfig() if config is None else config
    if not isinstance(config, PunSearchConfig):
        raise InputError("config must be a PunSearchConfig")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    density = check_density(density)
    targets = validate_targets(model, targets)
    if data is None or loss_fn is None:
        raise InputError("the pun search needs data (batches) and loss_fn")
    dense = _check_guards(targets, counts, dense, channel_min, channel_dims)
    w0 = {t: stored_weight(model, t).detach().clone() for t in targets}
    numels = {t: w.numel() for t, w in w0.items()}
    total = sum(numels.values())
    k = kept_count(total, density)
    n_dense = sum(numels[t] for t in dense)
    if n_dense > k:
        raise InputError(
            f"the layers kept dense ({', '.join(dense)}) hold {n_dense} weights, more than the "
            f"{k} that density {density} keeps of {total}; use a larger density or no dense layers"
        )
    searched = [t for t in targets if t not in dense]
    if counts is None:
        n_searched = total - n_dense
        p0 = {t: (k - n_dense) / n_searched for t in searched} if n_searched else {}
    else:
        p0 = _priors(numels, density, counts)

    def harden() -> Masks:
        return _hardened(gates, k - n_dense, counts, channel_min, channel_dims, w0, dense)

    gates: dict[str, LogitGate] = {}
    for t in sorted(searched):
        p_init = config.init_prob if config.init_prob is not None else default_init_prob(p0[t])
        logits = initial_logits(w0[t].shape, p_init, config.init_noise, generator)
        gates[t] = LogitGate(logits.to(device=w0[t].device, dtype=_real_dtype(w0[t])))
    eval_set = take_batches(data, config.eval_batches) if config.eval_batches else []
    optimizer = torch.optim.Adam([g.logits for g in gates.values()], lr=config.lr)
    history: list[dict[str, Any]] = []
    previous: Masks | None = None
    stream = cycle_batches(data)
    with frozen(model):
        for step in range(config.steps):
            tau, beta = config.tau_at(step), config.beta_at(step)
            for t in sorted(gates):
                gates[t].tau = tau
                gates[t].resample_(generator)
            recon = batch_loss(model, {t: gates[t](w0[t]) for t in gates}, next(stream), loss_fn)
            kl = prior_kl(gates, p0, config.kl_reduction)
            loss = recon + beta * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % config.log_every == 0 or step == config.steps - 1:
                hard = harden()
                entry = {
                    **search_log(step, loss, recon, kl, beta, tau),
                    "expected_density": _expected_density(gates, n_dense),
                    "hamming": None if previous is None else _hamming(previous, hard),
                }
                if eval_set:
                    entry["eval_loss"] = _eval_hard(model, w0, hard, eval_set, loss_fn)
                history.append(entry)
                previous = hard
    masks = harden()
    masks.metadata["pun"] = {
        "last": history[-1],
        "config": dataclasses.asdict(config),
        "dense": list(dense),
        "channel_min": channel_min,
        "probability_histogram": _probability_histogram(gates),
    }
    return masks, history


def search_log(
    step: int,
    loss: torch.Tensor,
    recon: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    tau: float,
) -> dict[str, Any]:
    """The common fields of a mask search's history entry (plain floats)."""
    return {
        "step": step,
        "loss": float(loss.detach()),
        "recon": float(recon.detach()),
        "kl": float(kl.detach()),
        "beta": beta,
        "tau": tau,
    }


def _check_guards(
    targets: Sequence[str],
    counts: Mapping[str, int] | None,
    dense: Sequence[str],
    channel_min: int,
    channel_dims: Mapping[str, int] | None,
) -> list[str]:
    """Validate the ``dense`` and ``channel_min`` guards; returns ``dense`` as a sorted list."""
    if isinstance(dense, str):
        raise InputError("dense must be a sequence of target names, not one string")
    dense = sorted(set(dense))
    outside = [t for t in dense if t not in targets]
    if outside:
        raise InputError(f"dense layers {outside} are not among the targets")
    if len(dense) == len(targets):
        raise InputError("dense names every target: there is nothing left to search")
    if isinstance(channel_min, bool) or not isinstance(channel_min, int) or channel_min < 0:
        raise InputError(f"channel_min must be an int >= 0, got {channel_min!r}")
    if counts is not None and (dense or channel_min):
        raise InputError(
            "dense layers and channel_min guard the global ranking; a per-layer allocation "
            "(counts) already fixes every layer's count: use one or the other"
        )
    if channel_min and (channel_dims is None or set(targets) - set(channel_dims)):
        raise InputError("channel_min needs channel_dims for every target")
    return dense


def _hardened(
    gates: Mapping[str, LogitGate],
    k: int,
    counts: Mapping[str, int] | None,
    channel_min: int,
    channel_dims: Mapping[str, int] | None,
    w0: Mapping[str, torch.Tensor],
    dense: Sequence[str],
) -> Masks:
    """The hard mask: ``k`` searched entries by logit (globally, per layer with ``counts``, or
    above a per-channel floor) plus every entry of the ``dense`` targets."""
    if channel_min:
        logits = {t: g.logits.detach() for t, g in gates.items()}
        masks = select_top_k_channel_min(
            logits, k, channel_min, {t: channel_dims[t] for t in gates}
        )
    else:
        masks = top_logit_masks(gates, k, counts)
    if not dense:
        return masks
    kept_whole = {t: torch.ones(w0[t].shape, dtype=torch.bool) for t in dense}
    return Masks({**dict(masks), **kept_whole})


@torch.no_grad()
def _probability_histogram(gates: Mapping[str, LogitGate], bins: int = 20) -> dict[str, list]:
    """Histogram of the final keep probabilities over all entries (20 bins on [0, 1])."""
    p = torch.cat([g.probabilities().flatten().float().cpu() for g in gates.values()])
    counts = torch.histc(p, bins=bins, min=0.0, max=1.0)
    edges = torch.linspace(0.0, 1.0, bins + 1)
    return {"edges": edges.tolist(), "counts": [int(c) for c in counts]}


def _real_dtype(w: torch.Tensor) -> torch.dtype:
    return w.real.dtype if w.is_complex() else w.dtype


@torch.no_grad()
def _expected_density(gates: Mapping[str, LogitGate], n_dense: int = 0) -> float:
    """Mean keep probability over all targets (entries of dense targets count as kept)."""
    kept = sum(float(g.probabilities().sum()) for g in gates.values()) + n_dense
    return kept / (sum(g.logits.numel() for g in gates.values()) + n_dense)


def _hamming(a: Masks, b: Masks) -> int:
    return int(sum(int((a[n] != b[n]).sum()) for n in a))


@torch.no_grad()
def _eval_hard(
    model: nn.Module,
    w0: Mapping[str, torch.Tensor],
    hard: Masks,
    batches: Sequence[tuple[Any, Any]],
    loss_fn: LossFn,
) -> float:
    weights = {t: w0[t] * hard[t].to(w0[t].device) for t in w0}
    losses = [float(batch_loss(model, weights, b, loss_fn)) for b in batches]
    return sum(losses) / len(losses)
