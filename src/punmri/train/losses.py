"""Training losses on complex images ``(B, H, W)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import InputError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean complex modulus of the error."""
    return (pred - target).abs().mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared complex error."""
    return (pred - target).abs().square().mean()


def ssim_torch(pred: torch.Tensor, target: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Differentiable SSIM of magnitude images ``(B, H, W)`` (uniform window, fastMRI constants,
    ``data_range`` = per-image target max). Returns the batch mean."""
    x = pred.abs().unsqueeze(1)
    y = target.abs().unsqueeze(1)
    data_range = y.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    kernel = torch.ones(1, 1, window, window, dtype=x.dtype, device=x.device) / window**2
    n = window**2
    cov_norm = n / (n - 1)
    ux, uy = F.conv2d(x, kernel), F.conv2d(y, kernel)
    vx = cov_norm * (F.conv2d(x * x, kernel) - ux * ux)
    vy = cov_norm * (F.conv2d(y * y, kernel) - uy * uy)
    vxy = cov_norm * (F.conv2d(x * y, kernel) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean()


def ssim_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.84 (1 - SSIM) + 0.16 L1`` (Zhao et al. 2017 mix) on magnitude / complex images."""
    return 0.84 * (1 - ssim_torch(pred, target)) + 0.16 * l1_loss(pred, target)


LOSSES: dict[str, LossFn] = {"l1": l1_loss, "mse": mse_loss, "ssim-l1": ssim_l1_loss}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name``."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
