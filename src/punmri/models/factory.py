"""Build a seeded MoDL network from a :class:`~punmri.config.ModelConfig`."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .denoisers import build_denoiser, init_weights
from .modl import MoDL

#: How ``ModelConfig.depth`` maps to each denoiser's own depth argument.
_DEPTH_ARG = {"resnet": "layers", "unet": "levels", "didn": "blocks"}


def build_denoiser_from_config(cfg: ModelConfig) -> torch.nn.Module:
    """The (un-initialised) denoiser described by ``cfg``.

    ``cfg.norm`` is already resolved (see :class:`~punmri.config.ModelConfig`); with
    ``"batch-per-unroll"`` the denoiser holds ``cfg.unrolls`` BatchNorm sets.
    """
    extra: dict[str, object] = {"norm": cfg.norm}
    if cfg.norm == "batch-per-unroll":
        extra["unrolls"] = cfg.unrolls
    return build_denoiser(
        cfg.denoiser, channels=cfg.channels, **{_DEPTH_ARG[cfg.denoiser]: cfg.depth}, **extra
    )


def build_model(
    cfg: ModelConfig, seed: int, cg_tol: float | None = None, precision: str = "fp32"
) -> MoDL:
    """MoDL with weights initialised from ``torch.Generator().manual_seed(seed)``.

    The same ``(cfg, seed)`` always gives bitwise-identical initial weights; pruning at
    initialisation relies on this. :func:`~punmri.models.denoisers.init_weights` draws them with
    ``cfg.init``, scales each denoiser's inner residual branches (DIDN) and its output layer by
    ``cfg.init_output_gain`` (0, the default: ``1 / cfg.unrolls``), so that the untrained
    network's output stays within a small factor of the zero-filled input's norm for any number
    of unrolls (the K denoisers act in series).
    ``cfg.checkpoint_unrolls`` and ``cfg.dc_backward`` are passed on; ``precision``
    (``train.precision``: fp32, bf16, fp16) makes the denoisers autocast on every call, so
    evaluation can compute as training did (the weights are float32 either way).
    """
    if cfg.shared:
        denoiser: torch.nn.Module | list[torch.nn.Module] = build_denoiser_from_config(cfg)
    else:
        denoiser = [build_denoiser_from_config(cfg) for _ in range(cfg.unrolls)]
    model = MoDL(
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
    initialise(model, cfg, seed)
    return model


def initialise(model: MoDL, cfg: ModelConfig, seed: int) -> MoDL:
    """Draw the denoiser weights of ``model`` from ``torch.Generator().manual_seed(seed)`` as
    :func:`build_model` does (also for a narrowed copy of its network: the draws follow the
    tensors' shapes); ``lam`` is left alone. Returns ``model``."""
    generator = torch.Generator().manual_seed(seed)
    gain = cfg.init_output_gain or 1.0 / cfg.unrolls
    denoisers = [model.denoiser] if model.denoiser is not None else list(model.denoisers)
    for d in denoisers:
        init_weights(d, generator, cfg.init, output_gain=gain)
    return model
