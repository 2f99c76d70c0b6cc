"""MoDL: model-based deep learning with a CNN denoiser and conjugate-gradient data consistency.

Aggarwal, Mani & Jacob, "MoDL: Model-Based Deep Learning Architecture for Inverse Problems",
IEEE TMI 2019. With ``A`` the SENSE operator and ``y`` the measured k-space::

    x_0 = A^H y
    z_k = D(x_{k-1})
    x_k = (A^H A + lam I)^{-1} (A^H y + lam z_k)       k = 1..K   (CG, warm-started at z_k)

Compute at scale (all off by default, so the plain network is unchanged):

* mixed precision: the denoisers may run under ``torch.autocast`` (bf16/fp16); the physics never
  does. FFTs, the SENSE operator and CG stay complex64 (half-precision FFTs are unsupported for
  most sizes): autocast is switched off around every data-consistency block, and the complex
  boundary (:func:`~punmri.models.complex.channels_to_complex`) casts the denoiser output back
  to float32.
* activation checkpointing: each unroll (denoiser + data consistency) is recomputed in backward.
* implicit data-consistency gradients: the CG solve is differentiated through the normal
  equations instead of through its iterates, so no CG iterate is stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from ..physics import SenseOperator, conjugate_gradient

#: ``train.precision`` -> autocast dtype of the denoisers (``None``: plain float32).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: How gradients pass through the data-consistency solve (``model.dc_backward``).
DC_BACKWARDS = ("unrolled", "implicit")


def precision_autocast(precision: str, device: torch.device | str) -> torch.autocast:
    """The autocast context of ``precision`` on ``device`` (disabled for fp32): training,
    validation and evaluation all run the denoiser under it; MoDL keeps its physics complex64."""
    dtype = autocast_dtype(precision, device)
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``) on ``device``.

    Returns:
        ``torch.bfloat16``/``torch.float16``, or ``None`` for fp32 (no autocast).

    Raises:
        InputError: for an unknown name, and for fp16 off CUDA (CPU autocast and gradient
            scaling are not reliable in float16; bf16 needs no scaler and works on CPU).
    """
    if precision not in PRECISIONS:
        raise InputError(f"train.precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise InputError("train.precision fp16 needs CUDA; use bf16 on CPU")
    return PRECISIONS[precision]


def data_consistency(
    op: SenseOperator,
    rhs0: torch.Tensor,
    z: torch.Tensor,
    lam: torch.Tensor | float,
    iterations: int,
    tol: float | None = None,
) -> torch.Tensor:
    """Solve ``(A^H A + lam I) x = A^H y + lam z`` by ``iterations`` CG steps from ``x = z``.

    Args:
        op: the SENSE operator ``A``.
        rhs0: ``A^H y``, complex ``(B, H, W)``.
        z: the denoiser's output, complex ``(B, H, W)``; also the CG starting point.
        lam: data-consistency weight ``> 0``, a real scalar (a tensor to differentiate w.r.t. it).
        iterations: CG steps (all differentiated through while autograd is on).
        tol: optional relative-residual tolerance for an early exit, honoured only without autograd.

    Returns:
        ``x``, complex ``(B, H, W)``, in the dtype of ``z`` (complex64 or complex128).
    """
    lam = torch.as_tensor(lam).to(dtype=z.real.dtype, device=z.device)
    return conjugate_gradient(
        lambda v: op.normal(v) + lam * v, rhs0 + lam * z, x0=z, iterations=iterations, tol=tol
    )


def _regularised_normal(
    op: SenseOperator, lam: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (A^H A + lam I) v``, the Hermitian positive-definite system of the DC step."""
    return lambda v: op.normal(v) + lam * v


class _ImplicitSolve(torch.autograd.Function):
    """``x = (A^H A + lam I)^{-1} b`` by CG, differentiated through the normal equations.

    With ``M = (A^H A + lam I)^{-1}`` (Hermitian), the vector-Jacobian products are
    ``grad_b = M grad_x`` and, from ``dx/dlam = -M x``,
    ``grad_lam = Re <dx/dlam, grad_x> = -Re <M grad_x, x> = -Re <grad_b, x>``, summed down to
    ``lam``'s shape. ``M grad_x`` is one more CG solve; the forward solve keeps only ``x``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        b: torch.Tensor,
        lam: torch.Tensor,
        x0: torch.Tensor | None,
        op: SenseOperator,
        iterations: int,
        tol: float | None,
    ) -> torch.Tensor:
        # autograd is off inside Function.forward: no iterate is stored and ``tol`` is honoured
        x = conjugate_gradient(
            _regularised_normal(op, lam), b, x0=x0, iterations=iterations, tol=tol
        )
        ctx.save_for_backward(x, lam)
        ctx.op, ctx.iterations, ctx.tol = op, iterations, tol
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, lam = ctx.saved_tensors
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return None, None, None, None, None, None
        g = conjugate_gradient(
            _regularised_normal(ctx.op, lam), grad_x, iterations=ctx.iterations, tol=ctx.tol
        )
        grad_lam = None
        if ctx.needs_input_grad[1]:
            grad_lam = -(g.conj() * x).real.sum_to_size(lam.shape)
        return g if ctx.needs_input_grad[0] else None, grad_lam, None, None, None, None


def implicit_solve(
    op: SenseOperator,
    b: torch.Tensor,
    lam: torch.Tensor,
    iterations: int,
    tol: float | None = None,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x = (A^H A + lam I)^{-1} b`` by CG with implicit (normal-equation) gradients.

    The backward pass solves ``(A^H A + lam I) g = grad_x`` by CG with the same ``iterations``
    and ``tol`` and returns ``grad_b = g``, ``grad_lam = -Re <g, x>``. Exact when CG has
    converged; with too few iterations it is the gradient of the exact solve, not of the
    truncated one. ``x0`` (warm start) receives no gradient, and neither does the operator.

    Args:
        op: the SENSE operator ``A`` (data: its maps and mask get no gradient).
        b: right-hand side, complex ``(B, H, W)``.
        lam: weight ``> 0``, a real tensor broadcastable against ``b`` (usually a scalar).
        iterations: CG steps of each solve (forward and backward).
        tol: optional relative-residual tolerance for an early exit, honoured in both solves
            (the graph never depends on the iterates, so it is safe in training too).
        x0: optional CG starting point shaped like ``b``.

    Returns:
        ``x``, complex ``(B, H, W)``, dtype of ``b``.
    """
    if torch.is_grad_enabled() and op.maps.requires_grad:
        raise InputError(
            "model.dc_backward implicit does not differentiate w.r.t. the coil maps; detach "
            "them or use model.dc_backward=unrolled"
        )
    return _ImplicitSolve.apply(b, lam, None if x0 is None else x0.detach(), op, iterations, tol)


def implicit_data_consistency(
    op: SenseOperator,
    rhs0: torch.Tensor,
    z: torch.Tensor,
    lam: torch.Tensor | float,
    iterations: int,
    tol: float | None = None,
) -> torch.Tensor:
    """:func:`data_consistency` with implicit gradients (:func:`implicit_solve`).

    The right-hand side ``b = A^H y + lam z`` is formed under autograd, so gradients reach
    ``z``, ``rhs0`` and ``lam`` through it as well as through the solve. CG starts at ``z``
    (no gradient through the starting point: the exact solution does not depend on it).

    Args and returns as :func:`data_consistency`, except that ``tol`` is honoured with autograd
    on as well.
    """
    lam = torch.as_tensor(lam).to(dtype=z.real.dtype, device=z.device)
    return implicit_solve(op, rhs0 + lam * z, lam, iterations, tol, x0=z)


def _norm_unrolls(denoiser: nn.Module) -> int:
    """Per-unroll normalisation sets of ``denoiser`` (1 for any denoiser without them)."""
    count = getattr(denoiser, "norm_unrolls", 1)
    return count if isinstance(count, int) else 1


@contextmanager
def _batchnorm_stats_kept(module: nn.Module) -> Iterator[None]:
    """Restore the running statistics of every BatchNorm in ``module`` on exit.

    Used around the recomputation of a checkpointed unroll, which would otherwise update them a
    second time per step (the recomputed outputs use batch statistics in training mode, so they
    are unaffected either way).
    """
    saved = [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, _BatchNorm) and m.training
        for buf in m.buffers()
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class MoDL(nn.Module):
    """Unrolled MoDL network called as ``model(y, op)``.

    Args:
        denoiser: module mapping complex ``(B, H, W)`` images to complex ``(B, H, W)`` images; or a
            list of ``unrolls`` such modules (one per unroll, no sharing).
        unrolls: number of iterations K.
        cg_iterations: CG steps per data-consistency block (gradients flow through all of them).
        lam: initial data-consistency weight (> 0).
        learn_lam: learn ``lam`` (parametrised by its logarithm, so it stays positive).
        cg_tol: optional relative-residual tolerance for early CG exit; the unrolled backward
            honours it only without autograd, the implicit one always.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only): autocast dtype of the
            denoisers on every call (training, validation, evaluation). With ``"fp32"`` the
            denoisers follow an autocast the caller opened. Data consistency always runs in
            complex64 with autocast off. Parameters stay float32. A plain attribute: set
            ``model.precision`` to change it.
        checkpoint_unrolls: recompute each unroll (denoiser + data consistency) in backward
            instead of storing its activations (:func:`torch.utils.checkpoint.checkpoint`,
            non-reentrant); gradients are unchanged and BatchNorm statistics are updated once.
        dc_backward: ``"unrolled"`` (backpropagate through every CG iterate) or ``"implicit"``
            (:func:`implicit_data_consistency`: one more CG solve in backward, no stored
            iterates).
    """

    def __init__(
        self,
        denoiser: nn.Module | list[nn.Module],
        unrolls: int = 5,
        cg_iterations: int = 8,
        lam: float = 0.05,
        learn_lam: bool = True,
        cg_tol: float | None = None,
        precision: str = "fp32",
        checkpoint_unrolls: bool = False,
        dc_backward: str = "unrolled",
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise InputError(f"MoDL precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if dc_backward not in DC_BACKWARDS:
            raise InputError(
                f"MoDL dc_backward must be one of {list(DC_BACKWARDS)}, got {dc_backward!r}"
            )
        if unrolls < 1:
            raise InputError(f"MoDL unrolls must be >= 1, got {unrolls}")
        if cg_iterations < 1:
            raise InputError(f"MoDL cg_iterations must be >= 1, got {cg_iterations}")
        if not lam > 0:
            raise InputError(f"MoDL lam must be > 0, got {lam}")
        if isinstance(denoiser, (list, tuple, nn.ModuleList)):
            if len(denoiser) != unrolls:
                raise InputError(
                    f"MoDL got {len(denoiser)} denoisers for {unrolls} unrolls; pass one shared "
                    "denoiser or exactly one per unroll"
                )
            if any(_norm_unrolls(d) > 1 for d in denoiser):
                raise InputError(
                    "MoDL got one denoiser per unroll with per-unroll normalisation; each unroll's "
                    "own denoiser already normalises alone, so build them with one BatchNorm set"
                )
            self.denoisers = nn.ModuleList(denoiser)
            self.denoiser = None
        else:
            if _norm_unrolls(denoiser) not in (1, unrolls):
                raise InputError(
                    f"MoDL has {unrolls} unrolls but its denoiser has {_norm_unrolls(denoiser)} "
                    "per-unroll normalisation sets; build the denoiser with unrolls="
                    f"{unrolls}"
                )
            self.denoiser = denoiser
            self.denoisers = None
        self.unrolls = unrolls
        self.cg_iterations = cg_iterations
        self.cg_tol = cg_tol
        self.precision = precision
        self.checkpoint_unrolls = bool(checkpoint_unrolls)
        self.dc_backward = dc_backward
        log_lam = torch.tensor(math.log(lam), dtype=torch.float32)
        if learn_lam:
            self.log_lam = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_lam", log_lam)

    @property
    def lam(self) -> torch.Tensor:
        """The (positive) data-consistency weight."""
        return self.log_lam.exp()

    def denoiser_at(self, k: int) -> nn.Module:
        """The denoiser used in unroll ``k`` (0-based)."""
        return self.denoiser if self.denoisers is None else self.denoisers[k]

    def denoise(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """``D_k(x)``: the denoiser of unroll ``k`` (0-based) on complex ``(B, H, W)`` images;
        a shared denoiser with per-unroll normalisation is told which unroll it serves."""
        denoiser = self.denoiser_at(k)
        if _norm_unrolls(denoiser) > 1:
            return denoiser(x, unroll=k)
        return denoiser(x)

    def data_consistency(
        self, op: SenseOperator, rhs0: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """:func:`data_consistency` (or :func:`implicit_data_consistency`, by ``dc_backward``)
        with this model's ``lam`` and CG settings."""
        solve = implicit_data_consistency if self.dc_backward == "implicit" else data_consistency
        return solve(op, rhs0, z, self.lam, self.cg_iterations, self.cg_tol)

    def _denoiser_autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        """Autocast for the denoisers at ``self.precision`` (fp32: leave the caller's as is)."""
        dtype = autocast_dtype(self.precision, device)
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    def unroll(
        self, k: int, x: torch.Tensor, rhs0: torch.Tensor, op: SenseOperator
    ) -> torch.Tensor:
        """Unroll ``k`` (0-based): ``z = D_k(x)``, then data consistency.

        The denoiser runs under this model's autocast; data consistency with autocast off, on
        complex64 ``z`` (complex ``(B, H, W)`` in and out, dtype of ``x``).
        """
        with self._denoiser_autocast(x.device):
            z = self.denoise(k, x)
        with torch.autocast(x.device.type, enabled=False):
            return self.data_consistency(op, rhs0, z)

    def _checkpoint_contexts(self) -> tuple[AbstractContextManager[Any], ...]:
        """``context_fn`` of the checkpointed unrolls: BatchNorm statistics kept on recompute."""
        return nullcontext(), _batchnorm_stats_kept(self)

    def forward(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        """Reconstruct complex images ``(B, H, W)`` from k-space ``y`` ``(B, C, H, W)``.

        complex64 throughout (the denoisers may compute in bf16/fp16, see ``precision``); after
        ``model.double()``, complex128 ``y`` and operator give complex128 images (used for
        gradient checks).
        """
        if y.shape != op.maps.shape:
            raise InputError(
                f"k-space shape {tuple(y.shape)} does not match the operator's coil maps "
                f"{tuple(op.maps.shape)}"
            )
        with torch.autocast(y.device.type, enabled=False):
            rhs0 = op.adjoint(y)
        x = rhs0
        recompute = self.checkpoint_unrolls and torch.is_grad_enabled()
        for k in range(self.unrolls):
            if recompute:
                x = checkpoint(
                    self.unroll,
                    k,
                    x,
                    rhs0,
                    op,
                    use_reentrant=False,
                    context_fn=self._checkpoint_contexts,
                )
            else:
                x = self.unroll(k, x, rhs0, op)
        return x
