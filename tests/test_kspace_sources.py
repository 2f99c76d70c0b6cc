"""Tests for punmri.data.kspace_sources on tiny fake fastMRI files with known coil data."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from punmri.config import RunConfig, load_config
from punmri.data.fastmri import TARGET_KEYS, read_fastmri
from punmri.data.kspace_sources import acquired_sample, fastmri_samples, is_kspace_source
from punmri.data.phantoms import random_ellipses
from punmri.data.prepare import remove_readout_oversampling
from punmri.data.simulate import simulate
from punmri.data.synth import ismrmrd_header
from punmri.data.volumes import fit_to_shape
from punmri.errors import InputError
from punmri.physics import SenseOperator, sampling_mask

SHAPE = (64, 40)
"""Stored k-space size (readout H_enc, 2x oversampled; phase encode W) of the fake files."""
CROP = (32, 32)
"""Reconstruction size of the fake files (header reconSpace and stored reconstruction)."""
ACQUIRED = (4, 37)
"""Acquired phase-encode columns [left, stop) of the fake files; the others are zero padding."""
NATIVE = (32, 40)
"""(h, W): k-space size once the readout oversampling is removed."""
RUN = ["data.image_size=[24,20]", "physics.coils=8"]


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


def stored_mask() -> np.ndarray:
    """(40,) float32 sampling mask of a fake test-split file: 12 centre columns, every third."""
    mask = np.zeros(SHAPE[1], np.float32)
    mask[ACQUIRED[0] : ACQUIRED[1] : 3] = 1
    mask[14:26] = 1
    return mask


def _write(
    path: Path, n_slices: int = 2, coils: int = 4, test_split: bool = False, units: float = 1.0
) -> Path:
    """A fastMRI-like file: multi-coil when ``coils > 1``, else single-coil (no coil axis).

    k-space (slices, [coils,] 64, 40), readout 2x oversampled, zero outside :data:`ACQUIRED`,
    times ``units``; ISMRMRD header with recon size :data:`CROP`. A ``test_split`` file holds
    :func:`stored_mask` (k-space zero elsewhere) and no reconstruction; others hold the RSS (ESC)
    crop of their k-space.
    """
    objects = np.stack([_phantom(i) for i in range(n_slices)])
    images = objects[:, None] * _coil_maps(coils)[None] if coils > 1 else objects[:, None]
    kspace = _fft2c(images) * units
    kspace[..., : ACQUIRED[0]] = 0
    kspace[..., ACQUIRED[1] :] = 0
    rss = np.sqrt((np.abs(_ifft2c(kspace)) ** 2).sum(axis=1))
    top, left = (SHAPE[0] - CROP[0]) // 2, (SHAPE[1] - CROP[1]) // 2
    target = rss[:, top : top + CROP[0], left : left + CROP[1]].astype(np.float32)
    if test_split:
        kspace = kspace * stored_mask()
    kspace = kspace.astype(np.complex64)
    lines = ACQUIRED[1] - ACQUIRED[0]
    header = ismrmrd_header(SHAPE, CROP, lines, n_slices, coils, pixel_mm=0.5, slice_mm=3.0)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("ismrmrd_header", data=np.bytes_(header))
        fh.create_dataset("kspace", data=kspace if coils > 1 else kspace[:, 0])
        if test_split:
            fh.create_dataset("mask", data=stored_mask())
        else:
            fh.create_dataset(TARGET_KEYS[coils > 1], data=target)
            fh.attrs["max"] = float(target.max())
        fh.attrs["acquisition"] = "CORPD_FBK" if coils > 1 else "CORPDFS_FBK"
        fh.attrs["patient_id"] = "fake"
    return path


def _stored(path: Path) -> tuple[np.ndarray, float]:
    """The stored reconstruction (slices, h, w) and ``max`` attribute of a fake file."""
    with h5py.File(path, "r") as fh:
        key = next(k for k in TARGET_KEYS.values() if k in fh)
        return np.asarray(fh[key]), float(fh.attrs["max"])


def _sampled_columns(sample) -> np.ndarray:
    """(W,) bool column mask of a sample, after checking every row has the same one."""
    assert np.all(sample.mask == sample.mask[:1])
    return sample.mask[0]


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_multicoil_samples_have_the_native_geometry(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path / "multi.h5")
    samples = fastmri_samples(path, _cfg(f"physics.mask_kind={kind}"), seed=3)
    assert [s.name for s in samples] == ["multi.h5:slice:000", "multi.h5:slice:001"]
    rss, peak = _stored(path)
    for i, s in enumerate(samples):
        assert s.target.shape == NATIVE and s.target.dtype == np.complex64
        assert s.kspace.shape == (4, *NATIVE) and s.kspace.dtype == np.complex64
        assert s.maps.shape == (4, *NATIVE) and s.maps.dtype == np.complex64
        assert s.mask.shape == NATIVE and s.mask.dtype == bool
        cols = _sampled_columns(s)
        assert not cols[: ACQUIRED[0]].any() and not cols[ACQUIRED[1] :].any()  # padding
        lines = ACQUIRED[1] - ACQUIRED[0]  # 4x over the acquired columns, not all of W
        if kind == "equispaced":
            assert cols.sum() == pytest.approx(lines / 4, abs=1)
        assert 3 <= cols.sum() < lines / 2
        assert cols[NATIVE[1] // 2]  # the k-space centre is always sampled
        assert np.all(s.kspace[:, ~s.mask] == 0)
        assert np.all(np.abs(s.kspace[:, s.mask]).sum(axis=0) > 0)
        norm = (np.abs(s.maps) ** 2).sum(axis=0)
        assert np.allclose(norm[norm > 0.5], 1.0, atol=1e-3)  # unit-norm ESPIRiT maps
        # Scored against the stored reference, in the file's units, with the file's max.
        np.testing.assert_array_equal(s.extras["rss"], rss[i])
        assert s.extras["volume"] == "multi.h5" and s.extras["max"] == pytest.approx(peak)
        # Image-scale units: the zero-filled image's 99th percentile magnitude is 1.
        zero_filled = np.sum(np.conj(s.maps) * _ifft2c(s.kspace), axis=0)
        assert np.percentile(np.abs(zero_filled), 99) == pytest.approx(1.0, rel=1e-4)
        assert s.extras["scale"] > 0


def test_other_mask_kinds_sample_the_native_grid(tmp_path: Path) -> None:
    path = _write(tmp_path / "multi.h5", n_slices=1)
    (line,) = fastmri_samples(path, _cfg("physics.mask_kind=gaussian1d"), seed=0)
    (disc,) = fastmri_samples(path, _cfg("physics.mask_kind=poisson2d"), seed=0)
    expected = sampling_mask("gaussian1d", NATIVE, 4.0, seed=0).mask
    assert line.mask.shape == disc.mask.shape == NATIVE
    assert line.mask.mean() == pytest.approx(expected.mean(), abs=0.05)
    _sampled_columns(line)
    assert not np.all(disc.mask == disc.mask[:1])  # a 2D pattern
    assert np.all(line.kspace[:, ~line.mask] == 0) and np.all(disc.kspace[:, ~disc.mask] == 0)


def test_fully_sampled_sense_reproduces_the_target(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.h5", n_slices=1)
    (sample,) = fastmri_samples(path, _cfg("physics.acceleration=1"), seed=0)
    cols = _sampled_columns(sample)
    assert np.array_equal(np.flatnonzero(cols), np.arange(*ACQUIRED))
    # The k-space is the file's, without readout oversampling, in image-scale units.
    with h5py.File(path, "r") as fh:
        raw = np.asarray(fh["kspace"][0])
    scale = sample.extras["scale"]
    native = remove_readout_oversampling(raw, CROP[0])
    np.testing.assert_allclose(sample.kspace * scale, native, rtol=1e-4, atol=1e-5)
    op = SenseOperator(torch.from_numpy(sample.maps[None]), torch.from_numpy(sample.mask[None]))
    zero_filled = op.adjoint(torch.from_numpy(sample.kspace[None]))[0].numpy()
    target = sample.target
    assert np.linalg.norm(zero_filled - target) / np.linalg.norm(target) < 1e-4
    # The measured data agree with the SENSE model of the target, and |target| is about the RSS.
    model = op.forward(torch.from_numpy(target[None]))[0].numpy()
    assert np.linalg.norm(model - sample.kspace) / np.linalg.norm(sample.kspace) < 0.1
    rss = sample.extras["rss"]
    crop = fit_to_shape(np.abs(target), rss.shape) * scale
    assert np.linalg.norm(crop - rss) / np.linalg.norm(rss) < 0.1


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
    assert sample.kspace.shape == (1, *NATIVE) and np.all(sample.maps == 1)
    np.testing.assert_allclose(_ifft2c(sample.kspace)[0], sample.target, atol=1e-5)
    np.testing.assert_array_equal(sample.extras["rss"], _stored(path)[0][0])
    # Phase survives: the object carries a linear phase along W.
    bright = np.abs(sample.target) > 0.5 * np.abs(sample.target).max()
    assert np.ptp(np.angle(sample.target[bright])) > 0.2


def test_test_split_files_are_refused_and_served_as_acquired(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.h5", test_split=True)
    message = r"test\.h5: has no reference reconstruction \(a test-split file\); use punmri recon"
    with pytest.raises(InputError, match=message):
        fastmri_samples(path, _cfg(), seed=0)
    # Without its stored mask it is still refused: the computed target has undersampled gaps.
    with h5py.File(path, "a") as fh:
        del fh["mask"]
    with pytest.raises(InputError, match=message):
        fastmri_samples(path, _cfg(), seed=0)
    # A fully sampled file without a stored reconstruction is scored on the computed RSS.
    full = _write(tmp_path / "full.h5", n_slices=1)
    rss = _stored(full)[0][0]
    with h5py.File(full, "a") as fh:
        del fh["reconstruction_rss"]
        del fh.attrs["max"]
    (sample,) = fastmri_samples(full, _cfg(), seed=0)
    np.testing.assert_allclose(sample.extras["rss"], rss, rtol=1e-5, atol=1e-6)
    assert sample.extras["max"] is None  # no ``max`` attribute: the volume's own maximum


def test_acquired_sample_keeps_the_files_own_sampling(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.h5", n_slices=1, test_split=True, units=1e-4)
    (slice_,) = read_fastmri(path)
    sample = acquired_sample(slice_)
    assert sample.kspace.shape == sample.maps.shape == (4, *NATIVE)
    np.testing.assert_array_equal(_sampled_columns(sample), stored_mask() > 0)
    assert np.all(sample.kspace[:, ~sample.mask] == 0)
    # The scale follows the data's units (it is undone after reconstruction).
    (unit_slice,) = read_fastmri(_write(tmp_path / "unit.h5", n_slices=1, test_split=True))
    unit = acquired_sample(unit_slice)
    assert sample.extras["scale"] / unit.extras["scale"] == pytest.approx(1e-4, rel=1e-3)
    np.testing.assert_allclose(sample.kspace, unit.kspace, rtol=1e-3, atol=1e-5)
    full = _write(tmp_path / "full.h5", n_slices=1)
    (slice_,) = read_fastmri(full)
    cols = _sampled_columns(acquired_sample(slice_))
    assert np.array_equal(np.flatnonzero(cols), np.arange(*ACQUIRED))


def test_folder_input_and_source_detection(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    _write(folder / "b.h5", n_slices=2)
    _write(folder / "a.h5", n_slices=1, coils=1)
    (folder / "notes.txt").write_text("not k-space")
    samples = fastmri_samples(folder, _cfg(), seed=0, max_slices=1)
    assert [s.name for s in samples] == ["a.h5:slice:000", "b.h5:slice:000"]
    assert [s.kspace.shape[0] for s in samples] == [1, 4]
    assert [s.extras["volume"] for s in samples] == ["a.h5", "b.h5"]
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
    blank = _write(tmp_path / "blank.h5", n_slices=1)
    with h5py.File(blank, "a") as fh:
        fh["kspace"][...] = 0
    with pytest.raises(InputError, match="all zero"):
        fastmri_samples(blank, _cfg(), seed=0)


def test_simulated_kspace_is_the_masked_centred_fft_of_the_coil_images() -> None:
    # punmri.data.simulate: y = M fft2c(S x), noise-free here, against numpy's transform.
    image = random_ellipses((24, 20), 4, np.random.default_rng(0)).astype(np.float32)
    cfg = _cfg("physics.snr_db=null", "physics.acceleration=4", "physics.coils=4")
    sample = simulate(image, cfg.physics, np.random.default_rng(1))
    assert sample.kspace.dtype == np.complex64 and sample.kspace.shape == (4, 24, 20)
    assert 0 < sample.mask.mean() < 1
    expected = _fft2c(sample.maps.astype(np.complex128) * sample.target[None]) * sample.mask
    np.testing.assert_allclose(sample.kspace, expected, rtol=1e-5, atol=1e-6)
