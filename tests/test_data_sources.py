"""Tests for punmri.data.volumes, punmri.data.sources and punmri.data.phantoms (tiny files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from punmri.config import DataConfig
from punmri.data.anatomy import (
    SLICE_AXIS,
    load_source_volume,
    other_view,
    slab_extent,
    view_crop_note,
)
from punmri.data.phantoms import phantom_volume, random_ellipses, shepp_logan
from punmri.data.sources import ImageSet, load_images
from punmri.data.volumes import (
    COLIN27_PATH,
    Volume,
    fit_to_shape,
    load_volume,
    normalize_magnitude,
    resize_to_shape,
    select_tissue_slices,
    slice_volume,
    split_slabs,
    tissue_fraction,
)
from punmri.errors import InputError


def _assert_unit(images: np.ndarray) -> None:
    assert images.dtype == np.float32
    assert np.all(np.isfinite(images))
    assert images.min() >= 0.0 and images.max() <= 1.0


def _write_nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    affine = np.diag([*zooms[:3], 1.0])
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path


def _write_dicom(path: Path, pixels: np.ndarray, instance: int, z: float, series: str) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series
    ds.Modality = "MR"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 2.0
    ds.RescaleIntercept = 10.0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)


# ---------------------------------------------------------------- volumes


def test_slab_split_disjoint_with_gap() -> None:
    indices = list(range(10, 60))
    slabs = split_slabs(indices, (0.7, 0.1, 0.2), gap=3)
    train, val, test = slabs["train"], slabs["val"], slabs["test"]
    assert train and val and test
    assert not (set(train) & set(val)) and not (set(val) & set(test))
    assert set(train) | set(val) | set(test) <= set(indices)
    for slab in (train, val, test):
        assert slab == list(range(slab[0], slab[-1] + 1))  # contiguous
    assert val[0] - train[-1] - 1 >= 3 and test[0] - val[-1] - 1 >= 3
    assert len(train) > len(test) > 0
    # gap counted in original index: sparse positions skip fewer kept slices
    sparse = split_slabs([0, 1, 2, 3, 10, 11, 20, 21, 22, 23], (0.5, 0.2, 0.3), gap=4)
    assert sparse["val"][0] - sparse["train"][-1] - 1 >= 4
    assert sparse["test"][0] - sparse["val"][-1] - 1 >= 4


def test_slab_split_errors() -> None:
    with pytest.raises(InputError, match="too few slices"):
        split_slabs(range(4), gap=1)
    with pytest.raises(InputError, match="fractions"):
        split_slabs(range(40), (0.5, -0.1, 0.6), gap=1)
    assert split_slabs(range(10), (0.8, 0.0, 0.2), gap=1)["val"] == []


def test_fit_resize_normalize() -> None:
    img = np.arange(30, dtype=np.float32).reshape(5, 6)
    assert fit_to_shape(img, (3, 8)).shape == (3, 8)
    np.testing.assert_array_equal(fit_to_shape(img, (3, 4)), img[1:4, 1:5])
    padded = fit_to_shape(img, (7, 6))
    assert padded.shape == (7, 6) and padded[0].sum() == 0 and padded[-1].sum() == 0
    assert resize_to_shape(np.ones((10, 20), np.float32), (16, 16)).shape == (16, 16)
    norm = normalize_magnitude((img + 1j * img).astype(np.complex64))
    _assert_unit(norm)
    assert norm.max() == 1.0
    assert normalize_magnitude(np.zeros((4, 4))).max() == 0.0
    with pytest.raises(InputError, match="NaN"):
        normalize_magnitude(np.full((3, 3), np.nan))


def test_nifti_volume_slicing_and_resampling(tmp_path: Path) -> None:
    vol = phantom_volume((16, 20, 12), np.random.default_rng(0))
    path = _write_nifti(tmp_path / "head.nii.gz", vol.data, (1.0, 1.0, 2.0))
    loaded = load_volume(path)
    assert isinstance(loaded, Volume) and loaded.shape == (16, 20, 12)
    assert loaded.voxel_size_mm == (1.0, 1.0, 2.0)
    iso = load_volume(path, resolution_mm=2.0)
    assert iso.shape == (9, 11, 12) and iso.voxel_size_mm == (2.0, 2.0, 2.0)
    assert slice_volume(loaded, "axial").shape == (12, 20, 16)
    assert slice_volume(loaded, "coronal").shape == (20, 12, 16)
    assert slice_volume(loaded, "sagittal").shape == (16, 12, 20)
    # axial display: anterior (high y) on the top row
    marker = np.zeros((4, 5, 3), np.float32)
    marker[0, 4, 1] = 1.0  # left-most x, most anterior y
    assert slice_volume(marker, "axial")[1, 0, 0] == 1.0
    with pytest.raises(InputError, match="view"):
        slice_volume(loaded, "oblique")  # type: ignore[arg-type]


def test_tissue_selection() -> None:
    vol = phantom_volume((16, 16, 16), np.random.default_rng(1))
    stack = slice_volume(vol, "axial")
    keep = select_tissue_slices(stack, 0.3)
    assert 0 < len(keep) < 16 and 0 not in keep and 15 not in keep
    assert tissue_fraction(np.zeros((4, 4))) == 0.0
    assert tissue_fraction(np.eye(4)) == pytest.approx(0.25)


@pytest.mark.skipif(not Path(COLIN27_PATH).exists(), reason="mricron-data not installed")
def test_colin27_at_2mm() -> None:
    vol = load_volume(COLIN27_PATH, resolution_mm=2.0)
    for got, want in zip(vol.shape, (91, 109, 91), strict=True):
        assert abs(got - want) <= 1
    assert vol.data.dtype == np.float32 and vol.data.max() > 0


def test_other_view_keeps_only_the_test_slab() -> None:
    rng = np.random.default_rng(4)
    for train_view, view in (("axial", "coronal"), ("axial", "sagittal"), ("sagittal", "axial")):
        cfg = DataConfig(source="phantom", image_size=(24, 20), view=train_view)
        volume = load_source_volume(cfg)
        first, last, n_positions = slab_extent(cfg, "test", volume)
        assert 0 < first <= last < n_positions - 1
        # scramble every voxel outside the test slab within its training-view slice: the slabs
        # (which depend on each slice's tissue fraction) stay, the other view must not change
        scrambled = volume.data.copy()
        slices = np.moveaxis(scrambled, SLICE_AXIS[train_view], 0)
        for k in [*range(first), *range(last + 1, n_positions)]:
            slices[k] = rng.permutation(slices[k].ravel()).reshape(slices[k].shape)
            np.testing.assert_array_equal(
                np.sort(slice_volume(scrambled, train_view)[k].ravel()), np.sort(slices[k].ravel())
            )
        other = dataclasses.replace(volume, data=scrambled)
        assert slab_extent(cfg, "test", other) == (first, last, n_positions)
        kept, again = other_view(cfg, view, volume), other_view(cfg, view, other)
        assert kept.names == again.names and len(kept) > 0
        np.testing.assert_array_equal(kept.images, again.images)
        _assert_unit(kept.images)
        note = view_crop_note(cfg, view, volume)
        assert f"{train_view} positions {first}-{last} of {n_positions}" in note
    # the uncropped view does change: it crosses the training slab
    assert not np.array_equal(slice_volume(volume, view), slice_volume(other, view))
    with pytest.raises(InputError, match="training view"):
        other_view(cfg, train_view, volume)


def test_missing_colin27_mentions_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import punmri.data.volumes as volumes

    fake = tmp_path / "ch2.nii.gz"
    monkeypatch.setattr(volumes, "COLIN27_PATH", str(fake))
    with pytest.raises(InputError, match="mricron-data") as err:
        load_volume(fake)
    assert str(fake) in str(err.value)


# ---------------------------------------------------------------- phantoms


def test_phantoms() -> None:
    sl = shepp_logan((32, 40))
    assert sl.shape == (32, 40)
    _assert_unit(sl)
    assert sl.max() == 1.0
    a = random_ellipses((24, 24), 5, np.random.default_rng(3))
    b = random_ellipses((24, 24), 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    _assert_unit(a)
    with pytest.raises(InputError, match="rng"):
        random_ellipses((8, 8), 2, 0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- sources


def test_load_nifti_npy_npz_png_tiff(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(4)
    vol = phantom_volume((16, 16, 10), rng).data * 300.0
    _write_nifti(tmp_path / "vol.nii.gz", vol)
    _write_nifti(tmp_path / "flat.nii", vol[:, :, 5])
    np.save(tmp_path / "stack.npy", (vol[:, :, :3].T + 1j).astype(np.complex64))
    np.savez(tmp_path / "arr.npz", images=vol[:, :, 4], other=np.ones(3))
    Image.fromarray((random_ellipses((16, 16), 3, rng) * 255).astype(np.uint8)).save(
        tmp_path / "a.png"
    )
    rgb = np.stack([shepp_logan((20, 12)) * 200] * 3, axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "b.tif")

    full = load_images(tmp_path / "vol.nii.gz")
    assert isinstance(full, ImageSet) and full.images.shape == (10, 16, 16)
    assert full.names[3] == "vol.nii.gz:axial:003"
    _assert_unit(full.images)
    assert len(load_images(tmp_path / "vol.nii.gz", min_tissue=0.3)) < 10

    everything = load_images(tmp_path, shape=(24, 24))
    assert everything.images.shape == (10 + 1 + 3 + 1 + 1 + 1, 24, 24)
    _assert_unit(everything.images)
    assert any(n.startswith("stack.npy:slice:") for n in everything.names)
    assert "arr.npz:images:000" in everything.names
    assert everything.names[0] == "a.png:image:000"  # folder is sorted by file name

    with pytest.raises(InputError, match="different sizes"):
        load_images([tmp_path / "a.png", tmp_path / "b.tif"])


def test_load_dicom_series(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    base = (shepp_logan((12, 10)) * 1000).astype(np.uint16)
    # file names in the opposite order to the instance numbers
    for k in range(3):
        pixels = base + np.uint16(100 * k)
        _write_dicom(folder / f"im{2 - k}.dcm", pixels, instance=k + 1, z=2.0 * k, series="1.2.9")
    out = load_images(folder)
    assert out.images.shape == (3, 12, 10)
    _assert_unit(out.images)
    assert out.names == ["im2.dcm:dicom:000", "im1.dcm:dicom:000", "im0.dcm:dicom:000"]
    # rescale applied before normalisation: background (0 stored) maps to 10 + 2 * 100 * k
    assert out.images[0, 0, 0] < out.images[2, 0, 0]


def test_input_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError, match="not found") as err:
        load_images(missing)
    assert str(missing) in str(err.value)

    odd = tmp_path / "scan.mha"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported") as err:
        load_images(odd)
    assert str(odd) in str(err.value) and ".nii.gz" in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no supported") as err:
        load_images(empty)
    assert str(empty) in str(err.value)

    corrupt = tmp_path / "bad.nii.gz"
    corrupt.write_bytes(np.random.default_rng(5).bytes(400))
    with pytest.raises(InputError, match="NIfTI") as err:
        load_images(corrupt)
    assert str(corrupt) in str(err.value)

    four_d = _write_nifti(tmp_path / "fmri.nii", np.ones((4, 4, 3, 2)))
    with pytest.raises(InputError, match="4D") as err:
        load_images(four_d)
    assert str(four_d) in str(err.value)

    ambiguous = tmp_path / "two.npz"
    np.savez(ambiguous, a=np.ones((4, 4)), b=np.ones((4, 4)))
    with pytest.raises(InputError, match="'a', 'b'") as err:
        load_images(ambiguous)
    assert str(ambiguous) in str(err.value)

    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((4, 4), np.inf))
    with pytest.raises(InputError, match="NaN or Inf") as err:
        load_images(nan)
    assert str(nan) in str(err.value)

    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"not a png")
    with pytest.raises(InputError, match="PNG") as err:
        load_images(bad_png)
    assert str(bad_png) in str(err.value)

    bad_dcm = tmp_path / "bad.dcm"
    bad_dcm.write_bytes(b"\x00" * 10)
    with pytest.raises(InputError) as err:
        load_images(bad_dcm)
    assert str(bad_dcm) in str(err.value)
