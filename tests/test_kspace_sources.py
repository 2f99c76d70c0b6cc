"""Tests for punmri.data.kspace_sources on tiny fake fastMRI files with known coil data."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from punmri.config import RunConfig, load_config
from punmri.data.kspace_sources import (
    calib_width,
    fastmri_samples,
    is_kspace_source,
    resize_coil_images,
)
from punmri.data.phantoms import random_ellipses
from punmri.data.simulate import simulate
from punmri.errors import InputError
from punmri.physics import SenseOperator

SHAPE = (64, 40)
"""Stored k-space size (readout H, phase encode W) of the fake files."""
CROP = (32, 32)
"""Reconstruction crop stored in the fake files."""
RUN = ["data.image_size=[24,20]", "physics.coils=4", "physics.mask_kind=gaussian1d"]


def _cfg(*extra: str) -> RunConfig:
    return load_config(None, [*RUN, *extra])


def _fft2c(image: np.ndarray) -> np.ndarray:
    shifted = np.fft.ifftshift(image, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def _ifft2c(kspace: np.ndarray) -> np.ndarray:
    shifted = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def _phantom(index: int) -> np.ndarray:
    """(64, 40) complex object inside the central 32x32 crop: ellipse, bright insert, phase."""
    yy, xx = np.mgrid[-1 : 1 : SHAPE[0] * 1j, -1 : 1 : SHAPE[1] * 1j]
    body = ((yy / 0.4) ** 2 + (xx / 0.6) ** 2 < 1).astype(float)
    insert = ((yy - 0.1 * index) / 0.15) ** 2 + ((xx - 0.2) / 0.2) ** 2 < 1
    return body * (1 + 0.5 * insert) * np.exp(1j * (0.5 * xx + 0.2 * index))


def _coil_maps(coils: int) -> np.ndarray:
    """(coils, 64, 40) smooth Gaussian coil profiles around the object with linear phase."""
    yy, xx = np.mgrid[-1 : 1 : SHAPE[0] * 1j, -1 : 1 : SHAPE[1] * 1j]
    angles = 2 * np.pi * np.arange(coils) / coils
    return np.stack(
        [
            np.exp(-((yy - 0.8 * np.sin(a)) ** 2) - (xx - 0.8 * np.cos(a)) ** 2)
            * np.exp(1j * (a + xx))
            for a in angles
        ]
    )


def _write(path: Path, n_slices: int = 2, coils: int = 4) -> Path:
    """A fastMRI-like file: multi-coil when ``coils > 1``, else single-coil (no coil axis)."""
    objects = np.stack([_phantom(i) for i in range(n_slices)])
    images = objects[:, None] * _coil_maps(coils)[None] if coils > 1 else objects[:, None]
    kspace = _fft2c(images).astype(np.complex64)
    rss = np.sqrt((np.abs(images) ** 2).sum(axis=1))
    top, left = (SHAPE[0] - CROP[0]) // 2, (SHAPE[1] - CROP[1]) // 2
    target = rss[:, top : top + CROP[0], left : left + CROP[1]].astype(np.float32)
    with h5py.File(path, "w") as fh:
        if coils > 1:
            fh.create_dataset("kspace", data=kspace)
            fh.create_dataset("reconstruction_rss", data=target)
            fh.attrs["acquisition"] = "CORPD_FBK"
        else:
            fh.create_dataset("kspace", data=kspace[:, 0])
            fh.create_dataset("reconstruction_esc", data=target)
            fh.attrs["acquisition"] = "CORPDFS_FBK"
        fh.attrs["max"] = float(target.max())
        fh.attrs["patient_id"] = "fake"
    return path


def test_multicoil_samples_match_the_run_geometry(tmp_path: Path) -> None:
    samples = fastmri_samples(_write(tmp_path / "multi.h5"), _cfg(), seed=3)
    assert [s.name for s in samples] == ["multi.h5:slice:000", "multi.h5:slice:001"]
    for s in samples:
        assert s.target.shape == (24, 20) and s.target.dtype == np.complex64
        assert s.kspace.shape == (4, 24, 20) and s.kspace.dtype == np.complex64
        assert s.maps.shape == (4, 24, 20) and s.maps.dtype == np.complex64
        assert s.mask.shape == (24, 20) and s.mask.dtype == bool
        assert np.abs(s.target).max() == pytest.approx(1.0, abs=1e-6)
        assert s.mask.size / s.mask.sum() == pytest.approx(4.0, rel=0.05)
        assert np.all(s.kspace[:, ~s.mask] == 0)
        assert np.all(np.abs(s.kspace[:, s.mask]).sum(axis=0) > 0)
        norm = (np.abs(s.maps) ** 2).sum(axis=0)
        assert np.allclose(norm[norm > 0.5], 1.0, atol=1e-3)  # unit-norm ESPIRiT maps


def test_fully_sampled_sense_reproduces_the_target(tmp_path: Path) -> None:
    (sample,) = fastmri_samples(
        _write(tmp_path / "f.h5", n_slices=1), _cfg("physics.acceleration=1"), seed=0
    )
    assert sample.mask.all()
    op = SenseOperator(torch.from_numpy(sample.maps[None]), torch.from_numpy(sample.mask[None]))
    zero_filled = op.adjoint(torch.from_numpy(sample.kspace[None]))[0].numpy()
    target = sample.target
    assert np.linalg.norm(zero_filled - target) / np.linalg.norm(target) < 0.05
    # The measured data agree with the SENSE model of the target, and |target| is about the RSS.
    model = op.forward(torch.from_numpy(target[None]))[0].numpy()
    assert np.linalg.norm(model - sample.kspace) / np.linalg.norm(sample.kspace) < 0.1
    rss = np.sqrt((np.abs(_ifft2c(sample.kspace)) ** 2).sum(axis=0))
    assert np.linalg.norm(np.abs(target) - rss) / np.linalg.norm(rss) < 0.1


def test_masks_are_deterministic_per_slice(tmp_path: Path) -> None:
    path = _write(tmp_path / "multi.h5", n_slices=3)
    first = fastmri_samples(path, _cfg(), seed=7)
    again = fastmri_samples(path, _cfg(), seed=7)
    other = fastmri_samples(path, _cfg(), seed=8)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.kspace, b.kspace)
    assert any(not np.array_equal(a.mask, b.mask) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(first[0].mask, first[1].mask)
    # A slice keeps its mask when read on its own (max_slices picks slices 0 and 2).
    capped = fastmri_samples(path, _cfg(), seed=7, max_slices=2)
    assert [s.name for s in capped] == ["multi.h5:slice:000", "multi.h5:slice:002"]
    assert np.array_equal(capped[1].mask, first[2].mask)


def test_single_coil_file_uses_maps_of_ones(tmp_path: Path) -> None:
    path = _write(tmp_path / "single.h5", n_slices=1, coils=1)
    (sample,) = fastmri_samples(path, _cfg("physics.acceleration=1"), seed=0)
    assert sample.kspace.shape == (1, 24, 20) and np.all(sample.maps == 1)
    np.testing.assert_allclose(_ifft2c(sample.kspace)[0], sample.target, atol=1e-5)
    assert np.abs(sample.target).max() == pytest.approx(1.0, abs=1e-6)
    # Phase survives: the object carries a linear phase along W.
    assert np.ptp(np.angle(sample.target[np.abs(sample.target) > 0.5])) > 0.2


def test_folder_input_and_source_detection(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    _write(folder / "b.h5", n_slices=2)
    _write(folder / "a.h5", n_slices=1, coils=1)
    (folder / "notes.txt").write_text("not k-space")
    samples = fastmri_samples(folder, _cfg(), seed=0, max_slices=1)
    assert [s.name for s in samples] == ["a.h5:slice:000", "b.h5:slice:000"]
    assert [s.kspace.shape[0] for s in samples] == [1, 4]
    assert is_kspace_source(folder) and is_kspace_source(folder / "b.h5")
    assert not is_kspace_source(folder / "notes.txt")
    assert not is_kspace_source(tmp_path / "missing.h5")
    (tmp_path / "empty").mkdir()
    assert not is_kspace_source(tmp_path / "empty")


def test_bad_inputs_raise_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("this is not HDF5")
    with pytest.raises(InputError, match=r"bad\.h5.*HDF5"):
        fastmri_samples(bad, _cfg(), seed=0)
    with pytest.raises(InputError, match="not found"):
        fastmri_samples(tmp_path / "missing.h5", _cfg(), seed=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .h5 files"):
        fastmri_samples(empty, _cfg(), seed=0)
    with pytest.raises(InputError, match="max_slices"):
        fastmri_samples(_write(tmp_path / "ok.h5", n_slices=1), _cfg(), seed=0, max_slices=-1)


def test_resize_keeps_aspect_ratio_and_calib_width_scales() -> None:
    images = np.ones((2, 32, 32), np.complex64) * (1 + 1j)
    out = resize_coil_images(images, (24, 20))
    assert out.shape == (2, 24, 20) and out.dtype == np.complex64
    assert np.all(out[:, :2] == 0) and np.all(out[:, -2:] == 0)  # 20x20 padded to 24 rows
    np.testing.assert_allclose(out[:, 2:-2], 1 + 1j, atol=1e-6)
    assert calib_width((112, 96)) == 24 and calib_width((24, 20)) == 12
    assert calib_width((320, 320)) == 24


def test_simulated_kspace_is_the_masked_centred_fft_of_the_coil_images() -> None:
    # punmri.data.simulate: y = M fft2c(S x), noise-free here, against numpy's transform.
    image = random_ellipses((24, 20), 4, np.random.default_rng(0)).astype(np.float32)
    cfg = _cfg("physics.snr_db=null", "physics.acceleration=4")
    sample = simulate(image, cfg.physics, np.random.default_rng(1))
    assert sample.kspace.dtype == np.complex64 and sample.kspace.shape == (4, 24, 20)
    assert 0 < sample.mask.mean() < 1
    expected = _fft2c(sample.maps.astype(np.complex128) * sample.target[None]) * sample.mask
    np.testing.assert_allclose(sample.kspace, expected, rtol=1e-5, atol=1e-6)
