"""The learnable-logit mask parametrization shared by the PUN search and PUN-WT training, and the
two things both do with a set of gates: the KL prior term and hardening into a mask set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning.masks import Masks
from punmri.pruning.pun.relaxation import bernoulli_kl, concrete_mask, logistic_noise, logit
from punmri.pruning.selection import select_by_counts, select_top_k

GateMode = Literal["sample", "expected", "hard"]


class LogitGate(nn.Module):
    """Parametrization ``weight -> weight * m`` with a relaxed Bernoulli mask ``m``.

    ``logits`` (a parameter, shape of the weight) define keep probabilities ``p = sigmoid(logits)``.
    In ``"sample"`` mode and training, ``m = sigmoid((logits + noise) / tau)`` (binary concrete,
    see :mod:`punmri.pruning.pun.relaxation`) with ``noise`` held fixed until :meth:`resample_`, so
    a weight read several times in one forward pass (MoDL's shared denoiser) sees one mask sample.
    Otherwise (``"expected"`` mode, or eval) ``m = p``; in ``"hard"`` mode ``m`` is the bool buffer
    ``hard``.
    """

    def __init__(self, logits: torch.Tensor, tau: float = 1.0) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.detach().clone())
        self.register_buffer("noise", torch.zeros_like(self.logits), persistent=False)
        hard = torch.ones_like(self.logits, dtype=torch.bool)
        self.register_buffer("hard", hard, persistent=False)
        self.tau = float(tau)
        self.mode: GateMode = "sample"

    def resample_(self, generator: torch.Generator) -> None:
        """Draw fresh logistic noise (used until the next call)."""
        noise = logistic_noise(self.logits.shape, generator, self.logits.dtype)
        self.noise.copy_(noise.to(self.noise.device))

    def probabilities(self) -> torch.Tensor:
        """Keep probabilities ``sigmoid(logits)``, shape of the weight."""
        return torch.sigmoid(self.logits)

    def mask(self) -> torch.Tensor:
        """The mask the next forward multiplies the weight with (see class docstring)."""
        if self.mode == "hard":
            return self.hard.to(self.logits.dtype)
        if self.mode == "sample" and self.training:
            return concrete_mask(self.logits, self.noise, self.tau)
        if self.mode in ("sample", "expected"):
            return self.probabilities()
        raise InputError(f"gate mode must be 'sample', 'expected' or 'hard', got {self.mode!r}")

    def kl(self, p0: float | torch.Tensor) -> torch.Tensor:
        """Elementwise ``KL(Bern(p) || Bern(p0))``, shape of the weight."""
        return bernoulli_kl(self.logits, p0)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight * mask()``, same shape as ``weight``."""
        return weight * self.mask()


def initial_logits(
    shape: torch.Size, p_init: float, noise_std: float, generator: torch.Generator
) -> torch.Tensor:
    """``logit(p_init) + noise_std * N(0, 1)`` (float32, CPU) from ``generator``."""
    base = torch.full(shape, logit(p_init), dtype=torch.float32)
    if noise_std > 0:
        noise = torch.randn(shape, generator=generator, device=generator.device)
        base = base + noise_std * noise.cpu()
    return base


def default_init_prob(p0: float) -> float:
    """Initial keep probability: the prior ``p0`` itself, kept inside ``[1e-4, 1 - 1e-4]``.

    Starting at the prior keeps the expected density at the target throughout the search (a start
    above it, e.g. ``p0 + 0.1 (1 - p0)``, left the expected density at ~3x the target after 300
    steps on the demo MoDL; docs/BENCHMARKS.md, section "PUN mask search").
    """
    return min(max(p0, 1e-4), 1.0 - 1e-4)


def prior_kl(
    gates: Mapping[str, LogitGate], p0: float | Mapping[str, float], reduction: str = "mean"
) -> torch.Tensor:
    """KL prior term ``reduce_j KL(Bern(p_j) || Bern(p0_j))`` over every entry of ``gates``.

    Args:
        gates: ``{weight name: gate}``; summed in this order.
        p0: the prior keep probability, one for all gates or ``{weight name: p0}``.
        reduction: ``"mean"`` over all entries (``beta`` independent of model size) or ``"sum"``
            (the paper's formula).

    Returns:
        A real scalar tensor, differentiable in the logits.
    """
    if reduction not in ("mean", "sum"):
        raise InputError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    prior = p0 if isinstance(p0, Mapping) else dict.fromkeys(gates, p0)
    total = sum(g.kl(prior[t]).sum() for t, g in gates.items())
    if reduction == "mean":
        total = total / sum(g.logits.numel() for g in gates.values())
    return total


def top_logit_masks(
    gates: Mapping[str, LogitGate], k: int, counts: Mapping[str, int] | None = None
) -> Masks:
    """The entries with the largest logits: the global top ``k``, or exactly ``counts[name]`` per
    layer when ``counts`` is given; ties broken as in :mod:`punmri.pruning.selection`."""
    logits = {t: g.logits.detach() for t, g in gates.items()}
    return select_top_k(logits, k) if counts is None else select_by_counts(logits, counts)
