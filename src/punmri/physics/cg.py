"""Batched conjugate gradient for Hermitian positive-definite systems on complex images."""

from __future__ import annotations

from collections.abc import Callable

import torch


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-batch-item real inner product ``Re <a, b>`` over all but the first dim, shape (B,)."""
    return (a.conj() * b).real.flatten(1).sum(1)


def conjugate_gradient(
    apply_a: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    iterations: int = 10,
    tol: float | None = None,
) -> torch.Tensor:
    """Solve ``A x = b`` for every batch item by ``iterations`` CG steps.

    Args:
        apply_a: Hermitian positive-definite operator on tensors shaped like ``b``.
        b: right-hand side ``(B, ...)``, complex or real.
        x0: initial guess (default zeros).
        iterations: number of CG steps. With gradients enabled exactly this many steps are run and
            differentiated through (the graph never depends on the data).
        tol: optional relative residual ``||r|| / ||b||`` at which to stop early; honoured only
            when autograd is off (inference), so training gradients stay exact.

    Returns:
        the approximate solution, shaped like ``b``.
    """
    x = torch.zeros_like(b) if x0 is None else x0
    r = b - apply_a(x) if x0 is not None else b.clone()
    p = r
    rs = _dot(r, r)
    shape = (-1,) + (1,) * (b.ndim - 1)
    stop_early = tol is not None and not torch.is_grad_enabled()
    b_norm2 = _dot(b, b) if stop_early else None
    tiny = torch.finfo(rs.dtype).tiny
    for _ in range(iterations):
        if stop_early and bool((rs <= (tol**2) * b_norm2).all()):
            break
        ap = apply_a(p)
        pap = _dot(p, ap)
        # A converged item has rs == 0 and p == 0: its step size is 0, never 0/0.
        alpha = torch.where(pap > tiny, rs / pap.clamp_min(tiny), torch.zeros_like(rs))
        x = x + alpha.view(shape) * p
        r = r - alpha.view(shape) * ap
        rs_new = _dot(r, r)
        beta = torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + beta.view(shape) * p
        rs = rs_new
    return x
