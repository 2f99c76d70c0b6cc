"""Tests for punmri.data.fastmri on tiny fastMRI-like HDF5 files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from punmri.data.fastmri import FastMRISlice, is_fastmri_file, read_fastmri, rss_target
from punmri.data.phantoms import random_ellipses
from punmri.errors import InputError
from punmri.physics.fft import ifft2c_numpy
from punmri.physics.fft import ifft2c_numpy as ifft2c

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>40</x><y>24</y><z>1</z></matrixSize></encodedSpace>
    <reconSpace><matrixSize><x>20</x><y>16</y><z>1</z></matrixSize></reconSpace>
  </encoding>
</ismrmrdHeader>"""


def _fft2c(image: np.ndarray) -> np.ndarray:
    shifted = np.fft.ifftshift(image, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def _kspace(n_slices: int, coils: int, rng: np.random.Generator) -> np.ndarray:
    """(slices, coils, 40, 24) complex64 k-space of random phantoms under smooth coil maps."""
    yy, xx = np.mgrid[0:40, 0:24] / np.array([40.0, 24.0])[:, None, None]
    maps = np.stack(
        [np.exp(1j * np.pi * (k + 1) * (xx + yy) / 3) * (1 + k * xx) for k in range(coils)]
    )
    images = np.stack([random_ellipses((40, 24), 4, rng) for _ in range(n_slices)])
    return _fft2c(images[:, None] * maps[None]).astype(np.complex64)


def _write(path: Path, kspace: np.ndarray, target_key: str | None = None, **extra: object) -> Path:
    with h5py.File(path, "w") as fh:
        fh.create_dataset("kspace", data=kspace)
        if target_key is not None:  # exact RSS, computed independently of the module
            coils = kspace if kspace.ndim == 4 else kspace[:, None]
            images = np.fft.fftshift(
                np.fft.ifft2(np.fft.ifftshift(coils, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
            )
            rss = np.sqrt((np.abs(images) ** 2).sum(axis=1))
            fh.create_dataset(target_key, data=rss[:, 10:30, 4:20].astype(np.float32))
        fh.attrs["acquisition"] = "CORPD_FBK"
        fh.attrs["max"] = 1.5
        fh.attrs["patient_id"] = "abc"
        for key, value in extra.items():
            fh.create_dataset(key, data=value)
    return path


def test_ifft2c_is_orthonormal_and_centered() -> None:
    image = np.zeros((8, 6), np.complex64)
    image[4, 3] = 1.0
    kspace = _fft2c(image)
    assert np.allclose(np.abs(kspace), 1 / np.sqrt(48))
    np.testing.assert_allclose(ifft2c(kspace), image, atol=1e-6)


def test_ifft2c_and_rss_target_match_numpy_on_random_kspace() -> None:
    # The module reuses the physics transforms; results equal numpy's to float32 rounding.
    assert ifft2c is ifft2c_numpy
    rng = np.random.default_rng(3)
    kspace = (rng.standard_normal((4, 40, 24)) + 1j * rng.standard_normal((4, 40, 24))).astype(
        np.complex64
    )
    shifted = np.fft.ifftshift(kspace.astype(np.complex128), axes=(-2, -1))
    images = np.fft.fftshift(np.fft.ifft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))
    out = ifft2c(kspace)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, images, rtol=1e-5, atol=1e-6)
    assert ifft2c(kspace.astype(np.complex128)).dtype == np.complex128
    target = rss_target(kspace, (20, 16))
    expected = np.sqrt((np.abs(images) ** 2).sum(axis=0))[10:30, 4:20]
    assert target.dtype == np.float32 and target.shape == (20, 16)
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)
    assert rss_target(kspace.astype(np.complex128), (20, 16)).dtype == np.float32


def test_multicoil_stored_and_computed_targets_match(tmp_path: Path) -> None:
    kspace = _kspace(3, 4, np.random.default_rng(0))
    header = np.bytes_(HEADER.encode())
    mask = np.zeros(24, np.float32)
    mask[::2] = 1
    stored = _write(tmp_path / "multi.h5", kspace, "reconstruction_rss", ismrmrd_header=header)
    computed = _write(tmp_path / "raw.h5", kspace, None, ismrmrd_header=header, mask=mask)
    assert is_fastmri_file(stored) and is_fastmri_file(computed)

    with_target = read_fastmri(stored)
    without = read_fastmri(computed, slices=slice(1, 3))
    assert len(with_target) == 3 and len(without) == 2
    first = with_target[1]
    assert isinstance(first, FastMRISlice)
    assert first.kspace.shape == (4, 40, 24) and first.kspace.dtype == np.complex64
    assert first.target.shape == (20, 16) and first.target.dtype == np.float32
    assert first.crop == (20, 16) and first.name == "multi.h5:slice:001"
    assert first.attrs["recon_size"] == (20, 16, 1) and first.attrs["encoded_size"] == (40, 24, 1)
    assert first.attrs["acquisition"] == "CORPD_FBK" and first.attrs["max"] == 1.5
    assert first.attrs["target_source"] == "reconstruction_rss"
    assert without[0].attrs["target_source"] == "computed" and without[0].attrs["slice"] == 1
    np.testing.assert_allclose(without[0].target, first.target, rtol=1e-5, atol=1e-6)
    assert without[0].mask is not None and without[0].mask.shape == (24,)


def test_singlecoil_default_crop_is_clamped(tmp_path: Path) -> None:
    kspace = _kspace(2, 1, np.random.default_rng(1))[:, 0]
    path = _write(tmp_path / "single.h5", kspace)
    slices = read_fastmri(path)
    assert slices[0].kspace.shape == (1, 40, 24)
    assert slices[0].crop == (40, 24)  # 320x320 default clamped to the image
    np.testing.assert_allclose(slices[0].target, np.abs(ifft2c(kspace[0])), rtol=1e-5, atol=1e-6)
    esc = _write(tmp_path / "esc.h5", kspace, "reconstruction_esc")
    assert read_fastmri(esc)[1].target.shape == (20, 16)


def test_fastmri_errors_name_the_file(tmp_path: Path) -> None:
    kspace = _kspace(2, 2, np.random.default_rng(2))

    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(np.random.default_rng(3).bytes(512))
    assert not is_fastmri_file(corrupt)
    with pytest.raises(InputError, match="HDF5") as err:
        read_fastmri(corrupt)
    assert str(corrupt) in str(err.value)

    bad = kspace.copy()
    bad[1, 0, 3, 3] = np.nan
    nan = _write(tmp_path / "nan.h5", bad)
    assert len(read_fastmri(nan, slices=slice(0, 1))) == 1
    with pytest.raises(InputError, match="slice 1") as err:
        read_fastmri(nan)
    assert str(nan) in str(err.value)

    no_kspace = tmp_path / "nok.h5"
    with h5py.File(no_kspace, "w") as fh:
        fh.create_dataset("image", data=np.ones((2, 2)))
    assert not is_fastmri_file(no_kspace)
    with pytest.raises(InputError, match="kspace") as err:
        read_fastmri(no_kspace)
    assert str(no_kspace) in str(err.value)

    real = _write(tmp_path / "real.h5", np.abs(kspace))
    with pytest.raises(InputError, match="complex"):
        read_fastmri(real)
    flat = _write(tmp_path / "flat.h5", kspace[0, 0])
    with pytest.raises(InputError, match="shape"):
        read_fastmri(flat)
    with pytest.raises(InputError, match="not found"):
        read_fastmri(tmp_path / "missing.h5")
