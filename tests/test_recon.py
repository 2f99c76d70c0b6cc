"""Tests for punmri.recon on fastMRI files: native resolution, the file's own sampling and units."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import punmri.recon
from punmri.cli.main import main
from punmri.evaluate.baselines import zero_filled

from .conftest import TINY
from .test_kspace_sources import CROP, _write, stored_mask


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recon") / "run"
    assert main(["run", "--out", str(out), "--no-progress", *TINY]) == 0
    return out


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail if ``recon`` simulates an acquisition instead of using the file's k-space."""

    def refuse(*args, **kwargs):
        raise AssertionError("a fastMRI file must be reconstructed from its own k-space")

    monkeypatch.setattr(punmri.recon, "simulated_suite", refuse)
    monkeypatch.setattr(punmri.recon, "load_images", refuse)


def _recon(run, path, out) -> np.ndarray:
    assert main(["recon", "--run", str(run), "--input", str(path), "--out", str(out)]) == 0
    return np.load(out)


def test_fully_sampled_file_gives_the_reference_in_its_own_units(
    trained_run, tmp_path, no_simulation, monkeypatch
):
    path = _write(tmp_path / "knee.h5", n_slices=2, units=1e-4)
    images = _recon(trained_run, path, tmp_path / "knee.npy")
    assert images.shape == (2, *CROP) and images.dtype == np.complex64
    assert np.isfinite(images).all()
    # With the zero-filled image as the "network", fully sampled data give the reference back:
    # same geometry (native resolution, centre crop) and the file's units (the scale is undone).
    monkeypatch.setattr(punmri.recon, "model_recon", lambda model, device, *args: zero_filled)
    images = _recon(trained_run, path, tmp_path / "zero-filled.npy")
    with h5py.File(path, "r") as fh:
        rss = np.asarray(fh["reconstruction_rss"])
    assert images.shape == rss.shape
    assert np.linalg.norm(np.abs(images) - rss) / np.linalg.norm(rss) < 0.1


def test_test_split_file_uses_its_stored_mask(trained_run, tmp_path, no_simulation, monkeypatch):
    path = _write(tmp_path / "test.h5", n_slices=2, test_split=True, units=1e-4)
    seen = []
    original = punmri.recon.collate

    def spy(samples):
        seen.extend(samples)
        return original(samples)

    monkeypatch.setattr(punmri.recon, "collate", spy)
    images = _recon(trained_run, path, tmp_path / "test.npy")
    assert images.shape == (2, *CROP) and np.iscomplexobj(images)
    assert np.isfinite(images).all() and np.abs(images).max() > 0
    assert len(seen) == 2
    for sample in seen:
        assert sample.kspace.shape == (4, CROP[0], 40)  # readout oversampling removed
        np.testing.assert_array_equal(sample.mask[0], stored_mask() > 0)
    # The output is in the file's units (the image-scale factor is undone).
    assert 1e-6 < np.abs(images).max() < 1e-2


def test_eval_scores_a_fastmri_file_at_native_resolution(trained_run, tmp_path):
    path = _write(tmp_path / "knee.h5", n_slices=2, units=1e-4)
    out = tmp_path / "eval"
    args = ["eval", "--run", str(trained_run), "--data", str(path), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    knee = metrics["methods"]["zero-filled"]["suites"]["knee"]
    assert knee["n"] == 2 and np.isfinite(knee["psnr"]) and knee["psnr"] > 15
    refused = _write(tmp_path / "test.h5", n_slices=1, test_split=True)
    args = ["eval", "--run", str(trained_run), "--data", str(refused), "--out", str(out / "t")]
    assert main([*args, "--no-progress"]) == 2
