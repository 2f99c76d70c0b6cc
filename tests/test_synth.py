"""Synthetic fastMRI datasets: layout, header, zero edge columns, targets, determinism."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from punmri.data.fastmri import read_fastmri, rss_target
from punmri.data.phantoms import phantom_volume
from punmri.data.synth import (
    MANIFEST_NAME,
    acquired_columns,
    split_counts,
    synthesize_fastmri,
)
from punmri.data.volumes import COLIN27_PATH
from punmri.errors import InputError
from punmri.physics.fft import ifft2c_numpy, rss_numpy

RECON = (32, 32)
WIDTH = 40
SMALL = dict(slices=3, coils=4, recon_size=RECON, width=WIDTH, progress=False)


def _h5(path: Path) -> dict[str, object]:
    """Every dataset and attribute of a file, as numpy values."""
    import h5py

    with h5py.File(path, "r") as fh:
        data: dict[str, object] = {key: fh[key][()] for key in fh}
        data.update({f"attr:{key}": value for key, value in fh.attrs.items()})
    return data


def _files(out: Path) -> list[Path]:
    return sorted(out.glob("*/*.h5"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three noise-free phantom subjects, one per split."""
    out = tmp_path_factory.mktemp("synth") / "clean"
    synthesize_fastmri(out, volumes=3, source="phantom", snr_db=None, splits=(1, 1, 1), **SMALL)
    return out


def test_every_file_reads_with_the_header_sizes(clean: Path) -> None:
    files = _files(clean)
    assert [f.parent.name for f in files] == ["test", "train", "val"]
    for path in files:
        slices = read_fastmri(path)
        assert len(slices) == 3
        first = slices[0]
        assert first.kspace.shape == (4, 2 * RECON[0], WIDTH)
        assert first.kspace.dtype == np.complex64
        assert first.target.shape == RECON
        assert first.attrs["target_source"] == "reconstruction_rss"
        assert first.attrs["encoded_size"] == (2 * RECON[0], WIDTH, 1)
        assert first.attrs["recon_size"] == (RECON[0], RECON[1], 1)
        assert first.attrs["acquisition"] == "AXT1"
        assert isinstance(first.attrs["patient_id"], str) and first.attrs["patient_id"]
    manifest = json.loads((clean / MANIFEST_NAME).read_text())
    assert [s["file"] for s in manifest["subjects"]] == [
        f"{split}/file_synth_AXT1_{k:03d}.h5" for k, split in enumerate(("train", "val", "test"))
    ]


def test_columns_outside_the_encoding_limits_are_exactly_zero(clean: Path) -> None:
    for path in _files(clean):
        data = _h5(path)
        root = ET.fromstring(data["ismrmrd_header"])
        ns = {"m": "http://www.ismrm.org/ISMRMRD"}
        limits = root.find("m:encoding/m:encodingLimits/m:kspace_encoding_step_1", ns)
        maximum = int(limits.findtext("m:maximum", namespaces=ns))
        center = int(limits.findtext("m:center", namespaces=ns))
        left, stop = acquired_columns(WIDTH, maximum, center)
        assert (left, stop) == (2, 38)  # 36 of 40 columns, centred
        kspace = data["kspace"]
        assert kspace.shape == (3, 4, 2 * RECON[0], WIDTH)
        assert np.all(kspace[..., :left] == 0) and np.all(kspace[..., stop:] == 0)
        energy = np.sum(np.abs(kspace[..., left:stop]) ** 2, axis=-2)  # (slices, coils, lines)
        assert np.all(energy > 0)


def test_target_is_the_rss_crop_and_the_object_fills_the_central_half(clean: Path) -> None:
    h = RECON[0]
    for path in _files(clean):
        data = _h5(path)
        image = rss_numpy(ifft2c_numpy(data["kspace"]), axis=1)  # (slices, 2h, W)
        crop = image[:, h // 2 : h // 2 + h, (WIDTH - RECON[1]) // 2 :][:, :, : RECON[1]]
        stored = data["reconstruction_rss"]
        assert stored.dtype == np.float32 and stored.shape == (3, *RECON)
        np.testing.assert_allclose(stored, crop, rtol=0, atol=1e-5 * float(stored.max()))
        assert data["attr:max"] == pytest.approx(float(stored.max()))
        assert data["attr:norm"] == pytest.approx(float(np.linalg.norm(stored)), rel=1e-6)
        outside = np.concatenate([image[:, : h // 2], image[:, h // 2 + h :]], axis=1)
        assert outside.max() < 1e-5 * image.max()
        assert image[:, h // 2 : h // 2 + h].max() == image.max()


def test_noisy_target_is_computed_from_the_stored_kspace(tmp_path: Path) -> None:
    out = tmp_path / "noisy"
    synthesize_fastmri(out, volumes=1, source="phantom", snr_db=20.0, splits=(1, 0, 0), **SMALL)
    (path,) = _files(out)
    data = _h5(path)
    kspace, stored = data["kspace"], data["reconstruction_rss"]
    for s in range(kspace.shape[0]):
        np.testing.assert_array_equal(stored[s], rss_target(kspace[s], RECON))
    # Noise fills the oversampled rows too, but never the zero-padded edge columns.
    image = rss_numpy(ifft2c_numpy(kspace), axis=1)
    assert image[:, :4].max() > 1e-3 * image.max()
    assert np.all(kspace[..., :2] == 0) and np.all(kspace[..., 38:] == 0)


def test_subjects_differ_and_reused_sources_are_augmented(tmp_path: Path) -> None:
    import nibabel as nib

    volume = phantom_volume((24, 28, 20), np.random.default_rng(3), n=6)
    nifti = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(volume.data, np.eye(4)), str(nifti))
    out = tmp_path / "aug"
    summary = synthesize_fastmri(
        out, volumes=3, source=nifti, snr_db=None, splits=(0.6, 0.2, 0.2), **SMALL
    )
    assert {k: len(v) for k, v in summary.files.items()} == {"train": 1, "val": 1, "test": 1}
    targets = [_h5(out / f)["reconstruction_rss"] for v in summary.files.values() for f in v]
    for a in range(3):
        for b in range(a + 1, 3):
            diff = np.linalg.norm(targets[a] - targets[b]) / np.linalg.norm(targets[a])
            assert diff > 0.1, (a, b, diff)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [s["augmented"] for s in manifest["subjects"]] == [False, True, True]


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    kwargs = dict(volumes=2, source="phantom", snr_db=25.0, splits=(1, 1, 0), **SMALL)
    first = synthesize_fastmri(tmp_path / "a", seed=5, **kwargs)
    synthesize_fastmri(tmp_path / "b", seed=5, **kwargs)
    synthesize_fastmri(tmp_path / "c", seed=6, **kwargs)
    for split in ("train", "val"):
        for rel in first.files[split]:
            a, b, c = (_h5(tmp_path / d / rel) for d in "abc")
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            assert not np.array_equal(a["kspace"], c["kspace"])


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "val").mkdir()  # empty folders (a run that failed early) do not count
    synthesize_fastmri(out, volumes=1, source="phantom", splits=(1, 0, 0), **SMALL)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty.*overwrite"):
        synthesize_fastmri(out, volumes=1, source="phantom", splits=(1, 0, 0), **SMALL)
    synthesize_fastmri(out, volumes=2, source="phantom", splits=(1, 1, 0), overwrite=True, **SMALL)
    assert len(_files(out)) == 2
    # Overwriting with fewer subjects removes the earlier synthetic files, nothing else.
    synthesize_fastmri(out, volumes=1, source="phantom", splits=(1, 0, 0), overwrite=True, **SMALL)
    assert [f.relative_to(out).as_posix() for f in _files(out)] == ["train/file_synth_AXT1_000.h5"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert not list(out.rglob("*.tmp"))


def test_split_counts_from_counts_and_fractions() -> None:
    assert split_counts(10, (0.6, 0.2, 0.2)) == (6, 2, 2)
    assert split_counts(2, (0.6, 0.2, 0.2)) == (1, 1, 0)
    assert split_counts(3, (0.8, 0.1, 0.1)) == (1, 1, 1)
    assert split_counts(5, (1.0, 0.0, 0.0)) == (5, 0, 0)
    assert split_counts(7, (0.5, 0.25, 0.25)) == (3, 2, 2)
    assert split_counts(1, (0.0, 0.5, 0.5)) == (0, 1, 0)
    assert split_counts(4, (2, 1, 1)) == (2, 1, 1)
    with pytest.raises(InputError, match="sum to 3, but volumes=4"):
        split_counts(4, (1, 1, 1))
    with pytest.raises(InputError, match="3 values"):
        split_counts(4, (0.5, 0.5))


def test_bad_arguments_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="width: expected at least recon_w=32"):
        synthesize_fastmri(tmp_path / "w", volumes=1, source="phantom", width=30, recon_size=RECON)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .nii"):
        synthesize_fastmri(tmp_path / "s", volumes=1, source=empty, **SMALL)
    with pytest.raises(InputError, match="missing.nii: NIfTI file not found"):
        synthesize_fastmri(tmp_path / "m", volumes=1, source=tmp_path / "missing.nii", **SMALL)
    assert not (tmp_path / "m").exists()  # nothing is created before the inputs check out
    with pytest.raises(InputError, match="coils: expected a positive integer"):
        synthesize_fastmri(tmp_path / "c", volumes=1, source="phantom", coils=0, recon_size=RECON)


@pytest.mark.skipif(not Path(COLIN27_PATH).is_file(), reason="Colin27 (mricron-data) missing")
def test_colin27_subjects(tmp_path: Path) -> None:
    out = tmp_path / "colin"
    summary = synthesize_fastmri(
        out, volumes=2, slices=2, coils=2, recon_size=RECON, width=WIDTH, splits=(1, 1, 0),
        progress=False,
    )  # fmt: skip
    assert summary.sources == [COLIN27_PATH, COLIN27_PATH]
    first, second = (
        read_fastmri(out / f[0]) for f in (summary.files["train"], summary.files["val"])
    )
    assert first[0].target.shape == RECON
    assert not np.allclose(first[0].target, second[0].target)
