"""Reconstruction networks: MoDL and its complex-image denoisers."""

from .complex import channels_to_complex, complex_to_channels
from .denoisers import (
    DENOISERS,
    ComplexDenoiser,
    DIDNDenoiser,
    ResNetDenoiser,
    UNetDenoiser,
    build_denoiser,
    count_parameters,
    init_weights,
)
from .factory import build_model, initialise
from .modl import MoDL

__all__ = [
    "DENOISERS",
    "ComplexDenoiser",
    "DIDNDenoiser",
    "MoDL",
    "ResNetDenoiser",
    "UNetDenoiser",
    "build_denoiser",
    "build_model",
    "channels_to_complex",
    "complex_to_channels",
    "count_parameters",
    "init_weights",
    "initialise",
]
