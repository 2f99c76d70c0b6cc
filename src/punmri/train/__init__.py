"""Training: losses, checkpoints and the resumable loop."""

from .checkpoint import load_checkpoint, save_checkpoint
from .loop import TrainHooks, TrainResult, load_weights, resolve_device, train, validate
from .losses import LOSSES, get_loss, ssim_torch

__all__ = [
    "LOSSES",
    "TrainHooks",
    "TrainResult",
    "get_loss",
    "load_checkpoint",
    "load_weights",
    "resolve_device",
    "save_checkpoint",
    "ssim_torch",
    "train",
    "validate",
]
