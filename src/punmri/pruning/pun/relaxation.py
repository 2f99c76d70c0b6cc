"""Binary concrete (Gumbel-softmax) relaxation of Bernoulli masks and the Bernoulli KL prior.

With ``G1, G2 ~ Gumbel(0, 1)`` the binary concrete sample (Maddison et al. 2017, Jang et al. 2017)
used by PUN, ``exp((log p + G1)/tau) / (exp((log p + G1)/tau) + exp((log(1 - p) + G2)/tau))``,
equals ``sigmoid((logit(p) + G1 - G2) / tau)``, and ``G1 - G2`` is standard logistic noise
``log U - log(1 - U)`` with ``U ~ U(0, 1)``. That form is computed here: it never exponentiates,
so it stays finite for any finite logit and any temperature ``tau > 0``.
"""

from __future__ import annotations

import math

import torch

from punmri.errors import InputError


def logit(p: float) -> float:
    """``log(p / (1 - p))`` for ``p`` in (0, 1)."""
    if not 0.0 < p < 1.0:
        raise InputError(f"probability must lie in (0, 1) to take its logit, got {p}")
    return math.log(p) - math.log1p(-p)


def logistic_noise(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``log U - log(1 - U)`` with ``U ~ U(0, 1)`` from ``generator`` (on its device), clamped to
    ``[eps, 1 - eps]`` (``eps`` = machine epsilon of ``dtype``) so the noise is finite."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=generator.device)
    eps = torch.finfo(dtype).eps
    u = u.clamp(eps, 1.0 - eps)
    return torch.log(u) - torch.log1p(-u)


def concrete_mask(logits: torch.Tensor, noise: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft mask ``sigmoid((logits + noise) / tau)`` in [0, 1], shape of ``logits``."""
    if not tau > 0:
        raise InputError(f"temperature tau must be > 0, got {tau}")
    return torch.sigmoid((logits + noise) / tau)


def sample_concrete(logits: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """One binary concrete sample per entry of ``logits`` (differentiable in ``logits``)."""
    noise = logistic_noise(logits.shape, generator, logits.dtype).to(logits.device)
    return concrete_mask(logits, noise, tau)


def bernoulli_kl(logits: torch.Tensor, p0: float | torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(Bern(sigmoid(logits)) || Bern(p0))`` in nats, shape of ``logits``.

    Uses ``log p = logsigmoid(l)``, ``log(1 - p) = logsigmoid(-l)``, finite for any finite logit;
    ``p0`` is clamped to ``[1e-6, 1 - 1e-6]`` (a prior of exactly 0 or 1 has infinite KL).
    """
    p0 = torch.as_tensor(p0, dtype=logits.dtype, device=logits.device).clamp(1e-6, 1 - 1e-6)
    p = torch.sigmoid(logits)
    log_p = torch.nn.functional.logsigmoid(logits)
    log_q = torch.nn.functional.logsigmoid(-logits)
    return p * (log_p - torch.log(p0)) + (1 - p) * (log_q - torch.log1p(-p0))
