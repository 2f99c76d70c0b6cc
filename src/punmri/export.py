"""Export a trained network as a self-contained TorchScript program (``punmri export``).

The program is the whole reconstruction, physics included: it takes plain tensors
``(kspace, maps, mask)`` and returns the complex image, so a process with nothing but ``torch``
installed can run it::

    import torch
    extra = {"punmri.json": ""}
    program = torch.jit.load("model.pt", _extra_files=extra)   # extra["punmri.json"]: settings
    image = program(kspace, maps, mask)                           # complex64 (B, H, W)

It is made with :func:`torch.jit.trace` (in float32, on the CPU, with the masks of a pruned
network folded into plain weights) and checked against the network: traced a second time at
another batch size and coil count, the graph must be the same and both outputs must match the
network's. The program is specialised to the image size ``H x W`` it was traced at (the
data-consistency FFTs and the denoisers' padding depend on it); batch size and coil count are
free. Its first step checks the inputs and stops with an error naming the expected shapes, so a
wrong size fails loudly instead of reconstructing garbage.

``OUT.json`` beside the program (and ``punmri.json`` inside it) records the run, the physics and
model settings, the learned data-consistency weight, the inputs' shapes and dtypes and the scale
convention (:data:`SCALE_CONVENTIONS`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .config import RunConfig
from .errors import InputError
from .io import atomic_write, json_safe, write_text_atomic
from .physics import SenseOperator

#: How k-space must be scaled for the program, by the run's ``data.source`` (the networks were
#: trained on images of order 1; measured data comes in arbitrary scanner units).
SCALE_CONVENTIONS = {
    "simulated": (
        "k-space is y = M * fft2c(S * x) (+ noise), with fft2c the centred orthonormal 2-D FFT "
        "(norm='ortho', DC at the array centre, fastMRI's fftshift(fft2(ifftshift(.)))), S coil "
        "maps normalised to sum_c |S_c|^2 = 1 and x the object, a magnitude image scaled to peak "
        "1 (99.9th percentile clipped) times a smooth phase. The output is on the scale of x. Data "
        "in other units come to about this scale when k-space is divided by the 99th percentile "
        "of |sum_c conj(S_c) ifft2c(y_c)| (the zero-filled image; about 0.8-1 for the simulated "
        "data at 4x); multiply the output by the same factor."
    ),
    "fastmri": (
        "k-space y (C, H, W) with readout oversampling removed, zero where not sampled, divided "
        "by s = 99th percentile of |sum_c conj(S_c) ifft2c(y_c)| (the zero-filled SENSE image of "
        "the undersampled data), fft2c the centred orthonormal 2-D FFT (norm='ortho', DC at the "
        "array centre); S are ESPIRiT maps (sigpy EspiritCalib, calibration width <= 24). "
        "Multiply the output by s to return to the data's units."
    ),
}


def check_inputs(
    kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raise unless ``kspace``/``maps`` are complex64 ``(B, C, height, width)`` and ``mask`` is a
    real ``(B, height, width)`` or ``(1, height, width)`` tensor; returns the three unchanged.

    Written in TorchScript's subset of Python: :func:`export_model` compiles it with
    :func:`torch.jit.script` so that the check lives inside the exported program.
    """
    if kspace.dim() != 4 or maps.dim() != 4 or mask.dim() != 3:
        raise ValueError(
            f"expected kspace (B, C, H, W), maps (B, C, H, W) and mask (B, H, W); got "
            f"{kspace.dim()}, {maps.dim()} and {mask.dim()} dimensions"
        )
    if kspace.dtype != torch.complex64 or maps.dtype != torch.complex64:
        raise ValueError("kspace and maps must be complex64 tensors")
    if mask.is_complex():
        raise ValueError("mask must be a real or bool tensor (nonzero = sampled)")
    if kspace.shape != maps.shape:
        raise ValueError(f"kspace shape {kspace.shape} differs from maps shape {maps.shape}")
    if kspace.shape[2] != height or kspace.shape[3] != width:
        raise ValueError(
            f"this program reconstructs {height} x {width} images only (it was traced at that "
            f"size); got k-space of {kspace.shape[2]} x {kspace.shape[3]}"
        )
    if mask.shape[1] != height or mask.shape[2] != width or mask.shape[0] not in [1, maps.shape[0]]:
        raise ValueError(
            f"mask shape {mask.shape} does not fit k-space {kspace.shape}: expected (B, H, W) or "
            "(1, H, W)"
        )
    return kspace, maps, mask


class ReconstructionProgram(nn.Module):
    """A trained MoDL with its SENSE physics, called on plain tensors.

    ``program(kspace, maps, mask)`` builds the SENSE operator ``A = M F S`` and runs the network.

    Args:
        model: the network ``model(y, op)`` (:class:`~punmri.models.MoDL`), float32, without
            mask parametrizations when it is to be traced.
        image_size: ``(H, W)`` the program accepts (traced programs are specialised to it).
        check: the input check (:func:`check_inputs`, or its TorchScript compilation).

    Inputs:
        kspace: complex64 ``(B, C, H, W)``, the measured k-space with the centred orthonormal FFT
            convention (DC at the array centre), zero where not sampled, scaled as the run's data
            (:data:`SCALE_CONVENTIONS`; dimensionless image-scale units, not scanner units).
        maps: complex64 ``(B, C, H, W)`` coil sensitivities (``C = 1``: maps of ones).
        mask: float32 (or bool) ``(B, H, W)`` or ``(1, H, W)``, nonzero = sampled.

    Returns:
        complex64 ``(B, H, W)`` reconstructed images in the units of the scaled k-space.
    """

    def __init__(
        self, model: nn.Module, image_size: tuple[int, int], check: Any = check_inputs
    ) -> None:
        super().__init__()
        self.model = model
        self.height, self.width = (int(s) for s in image_size)
        self.check = check

    def forward(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kspace, maps, mask = self.check(kspace, maps, mask, self.height, self.width)
        return self.model(kspace, SenseOperator(maps, mask))


def _find_spec(cfg: RunConfig, run_dir: Path, method: str, seed: int | None) -> Any:
    """The :class:`~punmri.specs.ModelSpec` of ``method`` (any name
    :meth:`~punmri.specs.ModelSpec.answers_to` accepts) and ``seed`` (default: its first)."""
    from .pipeline import model_specs

    specs = model_specs(cfg)
    names = list(dict.fromkeys(s.name for s in specs))
    matching = [s for s in specs if s.answers_to(method)]
    if not matching:
        raise InputError(f"--method {method!r} was not trained in {run_dir}; choose one of {names}")
    seed = matching[0].seed if seed is None else seed  # the method's first seed by default
    for spec in matching:
        if spec.seed == seed:
            return spec
    seeds = [s.seed for s in matching]
    raise InputError(f"--seed {seed}: {method} of {run_dir} has seeds {seeds}; choose one of them")


def _example(
    cfg: RunConfig, size: tuple[int, int], batch: int, coils: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A simulated acquisition of phantoms, batch tensors ``(kspace, maps, mask)``, to trace on."""
    from .data.batches import collate
    from .data.phantoms import random_ellipses
    from .data.simulate import simulate

    rng = np.random.default_rng(seed)
    physics = dataclasses.replace(cfg.physics, coils=coils)
    samples = [simulate(random_ellipses(size, 5, rng), physics, rng) for _ in range(batch)]
    b = collate(samples)
    return b.kspace, b.maps, b.mask


def _export_ready(model: nn.Module) -> nn.Module:
    """A float32, CPU, eval-mode copy of ``model`` without autograd, mask parametrizations,
    early CG exits or autocast (the implicit-gradient solve, equal in inference, replaced by the
    plain one: a Python autograd function cannot be traced)."""
    from .pruning import remove
    from .pruning.apply import masked_tensors

    out = copy.deepcopy(model).cpu().float().eval()
    if masked_tensors(out):
        remove(out)
    for p in out.parameters():
        p.requires_grad_(False)
    for attr, value in (("precision", "fp32"), ("cg_tol", None), ("dc_backward", "unrolled")):
        if hasattr(out, attr):
            setattr(out, attr, value)
    return out


#: Largest relative difference ``max |traced - network| / max |network|`` accepted at export.
TRACE_TOLERANCE = 1e-5


def _trace(
    program: ReconstructionProgram, examples: list[tuple[torch.Tensor, ...]]
) -> tuple[Any, float]:
    """``torch.jit.trace`` of ``program`` on ``examples[0]``, checked on every example: traced
    again on each, the graph must be the same (so batch size and coil count are not baked in),
    and its output must match the eager program's within :data:`TRACE_TOLERANCE`.

    Returns:
        the traced program and the largest relative difference seen.

    Raises:
        InputError: when a check fails.
    """
    with warnings.catch_warnings(), torch.no_grad():
        # Shape comparisons become constants: intended, as the input check pins H and W. Output
        # mismatches are only warnings in torch's own check: compared below instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
        check = torch.jit.script(check_inputs)
        program = ReconstructionProgram(program.model, (program.height, program.width), check)
        try:
            traced = torch.jit.trace(program, examples[0], check_inputs=examples)
        except torch.jit.TracingCheckError as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"the traced program differs from the network: {first}") from exc
        worst = 0.0
        for example in examples:
            expected = program(*example)
            scale = float(expected.abs().max().clamp_min(torch.finfo(torch.float32).tiny))
            worst = max(worst, float((traced(*example) - expected).abs().max()) / scale)
    if not worst <= TRACE_TOLERANCE:
        raise InputError(
            f"the traced program differs from the network by {worst:.3g} (relative; tolerance "
            f"{TRACE_TOLERANCE:g}); it cannot be exported as TorchScript"
        )
    return traced, worst


def export_model(
    run_dir: str | Path,
    method: str = "dense",
    seed: int | None = None,
    out: str | Path = "model.pt",
    overwrite: bool = False,
    image_size: tuple[int, int] | None = None,
) -> dict:
    """Write the trained ``method`` (seed ``seed``, default the method's first) of ``run_dir`` as a
    TorchScript program ``out`` and its settings as ``out`` + ``.json``; return the settings.

    The program (:class:`ReconstructionProgram`, traced) reconstructs ``image_size`` ``(H, W)``
    images only: the run's ``data.image_size`` by default; a fastMRI run (``data.source:
    fastmri``), whose files have their own sizes, needs it given (the k-space size after readout
    oversampling is removed). Batch size and coil count are free.

    Raises:
        InputError: a missing run, an unknown method or seed, an unfinished network, an existing
            ``out`` (without ``overwrite``), or a fastMRI run without ``image_size``.
    """
    from .methods import channel_widths, model_config
    from .pipeline import load_run_config, load_trained

    run_dir, out = Path(run_dir), Path(out)
    meta_path = out.with_name(out.name + ".json")
    existing = [p for p in (out, meta_path) if p.exists()]
    if existing and not overwrite:
        raise InputError(f"--out {existing[0]} exists; pass --overwrite to replace it")
    if not run_dir.is_dir():
        raise InputError(f"--run {run_dir}: no such run directory")
    cfg = load_run_config(run_dir)
    spec = _find_spec(cfg, run_dir, method, seed)
    measured = cfg.data.source == "fastmri"
    if image_size is None and measured:
        raise InputError(
            f"{run_dir} is a fastMRI run (its files have their own sizes): pass --shape H W, the "
            "k-space size after readout oversampling is removed (e.g. 320 368)"
        )
    size = tuple(int(s) for s in (image_size or cfg.data.image_size))
    if len(size) != 2 or min(size) < 8:
        raise InputError(f"--shape {list(size)}: expected two sizes H W, each >= 8")
    trained = load_trained(cfg, spec, run_dir)
    model = _export_ready(trained.model)
    coils = cfg.physics.coils
    examples = [_example(cfg, size, 1, coils, 0), _example(cfg, size, 2, coils + 1, 1)]
    traced, difference = _trace(ReconstructionProgram(model, size), examples)

    h, w = size
    info = {
        "format": "torchscript",
        "punmri_version": __version__,
        "torch_version": torch.__version__,
        "run_dir": str(run_dir.resolve()),
        "method": spec.name,
        "seed": spec.seed,
        "density": spec.density,
        "data_source": cfg.data.source,
        "physics": dataclasses.asdict(cfg.physics),
        "model": {
            **dataclasses.asdict(model_config(cfg, spec)),
            "lam": float(model.lam),
            "precision": "fp32",
            "trained_precision": cfg.train.precision,
            "pruned": trained.masks is not None,
            "channel_widths": channel_widths(spec.directory(run_dir)),
        },
        "image_size": [h, w],
        "shape_note": (
            f"traced at H x W = {h} x {w}: the program accepts only that size (any other is "
            "refused); batch size B and coil count C are free"
        ),
        "trace_check": {
            "inputs": [list(example[0].shape) for example in examples],
            "max_relative_difference": difference,
        },
        "inputs": {
            "kspace": {"shape": ["B", "C", h, w], "dtype": "complex64"},
            "maps": {"shape": ["B", "C", h, w], "dtype": "complex64"},
            "mask": {"shape": ["B or 1", h, w], "dtype": "float32 or bool, nonzero = sampled"},
        },
        "output": {"shape": ["B", h, w], "dtype": "complex64"},
        "scale": SCALE_CONVENTIONS["fastmri" if measured else "simulated"],
        "usage": (
            "import torch; extra = {'punmri.json': ''}; "
            "program = torch.jit.load(PATH, _extra_files=extra); "
            "image = program(kspace, maps, mask)"
        ),
    }
    text = json.dumps(json_safe(info), indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_text_atomic(meta_path, text)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
        atomic_write(
            out, lambda fh: torch.jit.save(traced, fh, _extra_files={"punmri.json": text}), "wb"
        )
    return json.loads(text)


__all__ = ["SCALE_CONVENTIONS", "ReconstructionProgram", "check_inputs", "export_model"]
