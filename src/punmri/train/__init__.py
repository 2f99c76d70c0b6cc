"""Training: losses, checkpoints and the resumable loop."""

from .checkpoint import load_checkpoint, save_checkpoint
from .device import device_label, resolve_device
from .loop import TrainHooks, TrainResult, load_weights, train, validate
from .losses import LOSSES, get_loss, ssim_torch

__all__ = [
    "LOSSES",
    "TrainHooks",
    "TrainResult",
    "get_loss",
    "load_checkpoint",
    "load_weights",
    "device_label",
    "resolve_device",
    "save_checkpoint",
    "ssim_torch",
    "train",
    "validate",
]
