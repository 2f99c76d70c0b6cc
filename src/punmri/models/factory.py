"""Build a seeded MoDL network from a :class:`~punmri.config.ModelConfig`."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .denoisers import build_denoiser, init_weights
from .modl import MoDL

#: How ``ModelConfig.depth`` maps to each denoiser's own depth argument.
_DEPTH_ARG = {"resnet": "layers", "unet": "levels", "didn": "blocks"}


def build_denoiser_from_config(cfg: ModelConfig) -> torch.nn.Module:
    """The (un-initialised) denoiser described by ``cfg``."""
    extra = {"batchnorm": cfg.batchnorm} if cfg.denoiser == "resnet" else {}
    return build_denoiser(
        cfg.denoiser, channels=cfg.channels, **{_DEPTH_ARG[cfg.denoiser]: cfg.depth}, **extra
    )


def build_model(
    cfg: ModelConfig, seed: int, cg_tol: float | None = None, precision: str = "fp32"
) -> MoDL:
    """MoDL with weights initialised from ``torch.Generator().manual_seed(seed)``.

    The same ``(cfg, seed)`` always gives bitwise-identical initial weights; pruning at
    initialisation relies on this. ``cfg.checkpoint_unrolls`` and ``cfg.dc_backward`` are passed
    on; ``precision`` (``train.precision``: fp32, bf16, fp16) makes the denoisers autocast on
    every call, so evaluation can compute as training did (the weights are float32 either way).
    """
    generator = torch.Generator().manual_seed(seed)
    if cfg.shared:
        denoiser: torch.nn.Module | list[torch.nn.Module] = build_denoiser_from_config(cfg)
        init_weights(denoiser, generator, cfg.init)
    else:
        denoiser = [build_denoiser_from_config(cfg) for _ in range(cfg.unrolls)]
        for d in denoiser:
            init_weights(d, generator, cfg.init)
    return MoDL(
        denoiser,
        unrolls=cfg.unrolls,
        cg_iterations=cfg.cg_iterations,
        lam=cfg.lam,
        learn_lam=cfg.learn_lam,
        cg_tol=cg_tol,
        precision=precision,
        checkpoint_unrolls=cfg.checkpoint_unrolls,
        dc_backward=cfg.dc_backward,
    )
