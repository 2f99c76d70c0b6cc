"""MoDL: model-based deep learning with a CNN denoiser and conjugate-gradient data consistency.

Aggarwal, Mani & Jacob, "MoDL: Model-Based Deep Learning Architecture for Inverse Problems",
IEEE TMI 2019. With ``A`` the SENSE operator and ``y`` the measured k-space::

    x_0 = A^H y
    z_k = D(x_{k-1})
    x_k = (A^H A + lam I)^{-1} (A^H y + lam z_k)       k = 1..K   (CG, warm-started at z_k)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from ..physics import SenseOperator, conjugate_gradient


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


class MoDL(nn.Module):
    """Unrolled MoDL network called as ``model(y, op)``.

    Args:
        denoiser: module mapping complex ``(B, H, W)`` images to complex ``(B, H, W)`` images; or a
            list of ``unrolls`` such modules (one per unroll, no sharing).
        unrolls: number of iterations K.
        cg_iterations: CG steps per data-consistency block (gradients flow through all of them).
        lam: initial data-consistency weight (> 0).
        learn_lam: learn ``lam`` (parametrised by its logarithm, so it stays positive).
        cg_tol: optional relative-residual tolerance for early CG exit, used only without autograd.
    """

    def __init__(
        self,
        denoiser: nn.Module | list[nn.Module],
        unrolls: int = 5,
        cg_iterations: int = 8,
        lam: float = 0.05,
        learn_lam: bool = True,
        cg_tol: float | None = None,
    ) -> None:
        super().__init__()
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
            self.denoisers = nn.ModuleList(denoiser)
            self.denoiser = None
        else:
            self.denoiser = denoiser
            self.denoisers = None
        self.unrolls = unrolls
        self.cg_iterations = cg_iterations
        self.cg_tol = cg_tol
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

    def data_consistency(
        self, op: SenseOperator, rhs0: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """:func:`data_consistency` with this model's ``lam`` and CG settings."""
        return data_consistency(op, rhs0, z, self.lam, self.cg_iterations, self.cg_tol)

    def forward(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        """Reconstruct complex images ``(B, H, W)`` from k-space ``y`` ``(B, C, H, W)``.

        complex64 throughout; after ``model.double()``, complex128 ``y`` and operator give
        complex128 images (used for gradient checks).
        """
        if y.shape != op.maps.shape:
            raise InputError(
                f"k-space shape {tuple(y.shape)} does not match the operator's coil maps "
                f"{tuple(op.maps.shape)}"
            )
        rhs0 = op.adjoint(y)
        x = rhs0
        for k in range(self.unrolls):
            z = self.denoiser_at(k)(x)
            x = self.data_consistency(op, rhs0, z)
        return x
