"""Reconstruct one input with a trained run: simulated images or fastMRI raw k-space."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.batches import batches, collate
from .data.fastmri import is_fastmri_file, read_fastmri
from .data.kspace_sources import acquired_sample, slice_count
from .data.sources import load_images
from .errors import InputError
from .evaluate.runner import ReconFn, model_recon
from .evaluate.suites import simulated_suite
from .io import atomic_write
from .pipeline import load_run_config, load_trained
from .specs import ModelSpec
from .train import resolve_device

OUTPUT_SUFFIXES = (".npy", ".png", ".nii", ".nii.gz")


def _fastmri_recon(path: Path, recon: ReconFn) -> np.ndarray:
    """Reconstruct every slice of a fastMRI file as acquired, one slice at a time.

    Each slice is served by :func:`~punmri.data.kspace_sources.acquired_sample` (native
    resolution without readout oversampling, the file's own sampling, ESPIRiT maps, image-scale
    units); the reconstruction is brought back to the file's units and centre-cropped to the
    file's reconstruction size.

    Returns:
        (slices, crop_h, crop_w) complex64 images.
    """
    images = []
    for index in range(slice_count(path)):
        (slice_,) = read_fastmri(path, slice(index, index + 1))
        sample = acquired_sample(slice_)
        batch = collate([sample])
        image = recon(batch.kspace, batch.maps, batch.mask).numpy()[0]
        scaled = image * np.float32(sample.extras["scale"])
        images.append(_center_crop(scaled, slice_.crop).astype(np.complex64))
    return np.stack(images)


def _center_crop(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[..., top : top + ch, left : left + cw]


def save_images(images: np.ndarray, out: Path) -> None:
    """Save complex or magnitude images ``(N, H, W)``: ``.npy`` keeps complex values, ``.png``
    writes a magnitude montage, ``.nii``/``.nii.gz`` a magnitude volume ``(H, W, N)``."""
    name = out.name.lower()
    if name.endswith(".npy"):
        atomic_write(out, lambda fh: np.save(fh, images), "wb")
    elif name.endswith(".png"):
        from .report.figures import montage

        montage(np.abs(images), out, columns=min(6, len(images)))
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        vol = np.moveaxis(np.abs(images).astype(np.float32), 0, -1)
        tmp = out.with_name(f".tmp.{out.name}")
        nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp)
        tmp.replace(out)
    else:
        raise InputError(f"--out {out}: unsupported output type; use one of {OUTPUT_SUFFIXES}")


def reconstruct_file(
    run_dir: str | Path,
    input_path: str | Path,
    out: str | Path,
    method: str = "dense",
    overwrite: bool = False,
) -> np.ndarray:
    """Reconstruct ``input_path`` with the trained ``method`` of ``run_dir`` and save to ``out``.

    A fastMRI ``.h5`` file (test-split files included) is reconstructed from its own k-space at
    native resolution: readout oversampling removed, ESPIRiT maps, its own sampling pattern (the
    stored ``mask`` or the columns that hold data), in the file's units, cropped to the file's
    reconstruction size. Any other image source is simulated with the run's physics first.
    Returns the complex reconstructions ``(N, H, W)``.
    """
    run_dir, input_path, out = Path(run_dir), Path(input_path), Path(out)
    if not out.name.lower().endswith(OUTPUT_SUFFIXES):
        raise InputError(f"--out {out}: unsupported output type; use one of {OUTPUT_SUFFIXES}")
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it")
    cfg = load_run_config(run_dir)
    if method not in cfg.methods:
        raise InputError(f"--method {method!r} was not trained in {run_dir}: {list(cfg.methods)}")
    trained = load_trained(cfg, ModelSpec(method, cfg.seeds[0]), run_dir)
    device = resolve_device(cfg.train.device)
    recon = model_recon(trained.model, device, cfg.evaluate.cg_tol, cfg.train.precision)
    if is_fastmri_file(input_path):
        images = _fastmri_recon(input_path, recon)
    else:
        image_set = load_images(input_path, shape=cfg.data.image_size)
        suite = simulated_suite("recon", image_set, cfg.physics, cfg.evaluate.test_seed)
        images = np.concatenate(
            [recon(b.kspace, b.maps, b.mask).numpy() for b in batches(suite.samples, 8)]
        )
    save_images(images, out)
    return images
