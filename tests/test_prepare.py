"""Tests for punmri.data.prepare on tiny fastMRI-layout multi-coil files written here."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import punmri.data.prepare as prepare
from punmri.data.phantoms import random_ellipses
from punmri.data.prepare import (
    calibration_width,
    load_index,
    prepare_folder,
    remove_readout_oversampling,
)
from punmri.data.prepared_index import BadFile, PreparedIndex
from punmri.data.volumes import fit_to_shape
from punmri.errors import InputError
from punmri.physics.coils import simulated_coil_maps
from punmri.physics.fft import fft2c_numpy, ifft2c_numpy, rss_numpy

RECON = (24, 24)
WIDTH = 28
PAD = 2  # zero-padded phase-encode columns on each side: acquired [2, 26)


def _header(encoded: tuple[int, int], recon: tuple[int, int], pad: int) -> bytes:
    """ISMRMRD XML with encodedSpace, reconSpace and fastMRI-style encodingLimits."""
    width = encoded[1]
    stop = width - 2 * pad
    center = width // 2 - pad
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{encoded[0]}</x><y>{width}</y><z>1</z></matrixSize>
    </encodedSpace>
    <reconSpace><matrixSize><x>{recon[0]}</x><y>{recon[1]}</y><z>1</z></matrixSize></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{stop - 1}</maximum>
        <center>{center}</center></kspace_encoding_step_1>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>""".encode()


def make_fastmri_file(
    path: Path,
    *,
    slices: int = 3,
    coils: int = 4,
    recon: tuple[int, int] = RECON,
    width: int = WIDTH,
    pad: int = PAD,
    seed: int = 0,
    header: bytes | str | None = "fastmri",
    target: bool = True,
    mask: np.ndarray | None = None,
    noise: float = 1e-3,
) -> Path:
    """A fastMRI multi-coil training file (contract section 1) of random head-like phantoms.

    The object fills the central ``recon`` window of a ``(2 * recon_h, width)`` field of view
    (2x readout oversampling); columns outside ``[pad, width - pad)`` are exactly zero; complex
    noise of standard deviation ``noise`` (relative to the k-space peak) is added to the acquired
    columns. ``header="fastmri"`` writes a complete ISMRMRD header, ``None`` none, other values
    are stored as given. ``mask`` makes a test-split file: k-space multiplied by it, no target.
    """
    rng = np.random.default_rng(seed)
    encoded = (2 * recon[0], width)
    maps = simulated_coil_maps(encoded, coils)
    kspace = np.empty((slices, coils, *encoded), np.complex64)
    for index in range(slices):
        obj = random_ellipses((recon[0], recon[1] - 4), 4, rng).astype(np.complex64)
        yy, xx = np.mgrid[0 : obj.shape[0], 0 : obj.shape[1]] / max(obj.shape)
        obj = obj * np.exp(1j * np.pi * (0.3 * yy + 0.2 * xx + rng.uniform()))
        kspace[index] = fft2c_numpy(maps * fit_to_shape(obj, encoded))
    peak = np.abs(kspace).max()
    kspace += (noise * peak / np.sqrt(2)) * (
        rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    ).astype(np.complex64)
    kspace[..., :pad] = 0
    kspace[..., width - pad :] = 0
    if mask is not None:
        kspace = kspace * mask.astype(np.complex64)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("kspace", data=kspace)
        if header == "fastmri":
            fh.create_dataset("ismrmrd_header", data=np.bytes_(_header(encoded, recon, pad)))
        elif header is not None:
            fh.create_dataset("ismrmrd_header", data=header)
        if mask is not None:
            fh.create_dataset("mask", data=mask.astype(np.float32))
        elif target:
            rss = fit_to_shape(rss_numpy(ifft2c_numpy(kspace), axis=1), recon)
            fh.create_dataset("reconstruction_rss", data=rss.astype(np.float32))
            fh.attrs["max"] = float(rss.max())
            fh.attrs["norm"] = float(np.linalg.norm(rss))
        fh.attrs["acquisition"] = "CORPD_FBK"
        fh.attrs["patient_id"] = f"patient{seed}"
    return path


def _folder(root: Path, n: int = 2, **kwargs: object) -> Path:
    """``n`` files, the second one in a subfolder."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / ("sub" if i % 2 else "") / f"file{i}.h5"
        path.parent.mkdir(exist_ok=True)
        make_fastmri_file(path, seed=i, **kwargs)  # type: ignore[arg-type]
    return root


def _cache_contents(cache: Path) -> dict[str, object]:
    """Every dataset and the relevant attributes of every cache file, plus the index files."""
    index = json.loads((cache / "index.json").read_text())
    out: dict[str, object] = {"files": index["files"], "bad": index["bad"]}
    for entry in index["files"]:
        with h5py.File(cache / entry["cache"], "r") as fh:
            for key in fh:
                out[f"{entry['cache']}/{key}"] = fh[key][()]
            out[f"{entry['cache']}@stamp"] = fh.attrs["stamp"].tolist()
            out[f"{entry['cache']}@source"] = fh.attrs["source"]
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


def test_removing_readout_oversampling_keeps_the_recon_fov_image() -> None:
    rng = np.random.default_rng(0)
    kspace = (
        rng.standard_normal((2, 3, 48, 28)) + 1j * rng.standard_normal((2, 3, 48, 28))
    ).astype(np.complex64)
    kspace[..., :2] = 0
    out = remove_readout_oversampling(kspace, 24)
    assert out.shape == (2, 3, 24, 28) and out.dtype == np.complex64
    expected = ifft2c_numpy(kspace)[..., 12:36, :]  # the 2-D helpers, independently
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ifft2c_numpy(out), expected, atol=1e-5 * scale, rtol=0)
    assert np.all(out[..., :2] == 0)  # zero-padded columns stay exactly zero
    # odd sizes follow the same (H - h) // 2 crop
    odd = remove_readout_oversampling(kspace[0, 0, :45], 21)
    np.testing.assert_allclose(
        ifft2c_numpy(odd), ifft2c_numpy(kspace[0, 0, :45])[12:33], atol=1e-5 * scale, rtol=0
    )
    np.testing.assert_array_equal(remove_readout_oversampling(kspace, 48), kspace)
    with pytest.raises(InputError, match="between 1 and H_enc = 48"):
        remove_readout_oversampling(kspace, 50)


def test_calibration_width_is_the_centred_sampled_block() -> None:
    sampled = np.zeros(28, bool)
    sampled[2:26] = True
    assert calibration_width(sampled) == 24
    assert calibration_width(sampled, limit=10) == 10
    sampled[:] = False
    sampled[10:18] = True  # centre 14: [10, 18) holds n=8 centred as 14 - 4 = 10
    assert calibration_width(sampled) == 8
    sampled[14] = False
    assert calibration_width(sampled) == 0


def test_prepare_writes_the_contract_cache(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    index = prepare_folder(root, progress=False)
    cache = root / ".punmri-cache"
    assert isinstance(index, PreparedIndex) and index.cache == cache.resolve()
    assert [e.file for e in index.files] == ["file0.h5", "sub/file1.h5"] and index.bad == ()
    assert index.slices == 6

    data = json.loads((cache / "index.json").read_text())
    assert data["format"] == "punmri-prepared" and data["version"] == 1
    assert data["root"] == str(root.resolve()) and data["bad"] == []
    entry = data["files"][1]
    assert set(entry) == {
        "file", "cache", "slices", "coils", "kspace_shape", "crop", "acquired", "acquisition",
        "max", "has_target", "has_mask", "stamp",
    }  # fmt: skip
    source = root / "sub/file1.h5"
    assert entry["file"] == entry["cache"] == "sub/file1.h5"
    assert entry["slices"] == 3 and entry["coils"] == 4
    assert entry["kspace_shape"] == [24, 28] and entry["crop"] == [24, 24]
    assert entry["acquired"] == [2, 26] and entry["acquisition"] == "CORPD_FBK"
    assert entry["has_target"] is True and entry["has_mask"] is False
    assert entry["stamp"] == [source.stat().st_size, source.stat().st_mtime_ns]
    assert load_index(root) == index

    with h5py.File(source, "r") as src, h5py.File(cache / "sub/file1.h5", "r") as fh:
        assert entry["max"] == pytest.approx(float(src.attrs["max"]))
        assert fh.attrs["source"] == "sub/file1.h5"
        assert fh.attrs["stamp"].tolist() == entry["stamp"]
        kspace, maps, target = fh["kspace"][()], fh["maps"][()], fh["target"][()]
        assert kspace.shape == maps.shape == (3, 4, 24, 28)
        assert kspace.dtype == maps.dtype == np.complex64 and target.dtype == np.float32
        stored = src["reconstruction_rss"][()]
        np.testing.assert_array_equal(target, stored)
        assert np.all(kspace[..., :2] == 0) and np.all(kspace[..., 26:] == 0)
        assert "mask" not in fh

    # the cached k-space reproduces the stored target: rss of ifft2c, centre-cropped to 24x24
    rss = fit_to_shape(rss_numpy(ifft2c_numpy(kspace), axis=1), (24, 24))
    assert np.linalg.norm(rss - stored) / np.linalg.norm(stored) < 1e-3

    # ESPIRiT maps: unit norm over coils inside the object
    norm = np.sqrt((np.abs(maps) ** 2).sum(axis=1))
    image = rss_numpy(ifft2c_numpy(kspace), axis=1)
    inside = image > 0.2 * image.max(axis=(1, 2), keepdims=True)
    assert inside.sum() > 100
    np.testing.assert_allclose(norm[inside], 1.0, atol=1e-3)
    # and they explain the coil images there: x_c ~= S_c * sum_c conj(S_c) x_c
    coils = ifft2c_numpy(kspace)
    combined = (np.conj(maps) * coils).sum(axis=1, keepdims=True)
    residual = np.abs(coils - maps * combined).sum(axis=1)[inside]
    assert residual.mean() < 0.1 * image[inside].mean()


def test_test_split_file_keeps_its_mask_and_undersampling(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    mask = np.zeros(WIDTH, np.float32)
    mask[4:24:3] = 1
    mask[9:19] = 1  # 10 fully sampled centre columns -> calibration width 10
    make_fastmri_file(root / "test.h5", mask=mask)
    entry = prepare_folder(root, progress=False).files[0]
    assert entry.has_mask and not entry.has_target and entry.max is None
    with h5py.File(root / ".punmri-cache/test.h5", "r") as fh:
        np.testing.assert_array_equal(fh["mask"][()], mask)
        assert "target" not in fh
        kspace = fh["kspace"][()]
    assert np.all(kspace[..., mask == 0] == 0) and np.all(kspace[..., mask == 1] != 0)


def _not_hdf5(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(2048))


def _truncated(path: Path) -> None:
    make_fastmri_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_kspace(path: Path) -> None:
    with h5py.File(path, "w") as fh:
        fh.create_dataset("image", data=np.ones((2, 4, 4), np.float32))


def _single_coil(path: Path) -> None:
    make_fastmri_file(path, coils=1)
    with h5py.File(path, "a") as fh:
        kspace = fh["kspace"][:, 0]
        del fh["kspace"]
        fh.create_dataset("kspace", data=kspace)


def _five_dims(path: Path) -> None:
    with h5py.File(path, "w") as fh:
        fh.create_dataset("kspace", data=np.ones((1, 2, 2, 8, 8), np.complex64))


def _nan(path: Path) -> None:
    make_fastmri_file(path)
    with h5py.File(path, "a") as fh:
        fh["kspace"][2, 1, 20, 10] = np.nan


def _too_small(path: Path) -> None:
    make_fastmri_file(path, target=False)
    with h5py.File(path, "a") as fh:
        del fh["ismrmrd_header"]
        fh.create_dataset("ismrmrd_header", data=np.bytes_(_header((48, 28), (40, 40), PAD)))


BAD_FILES = {
    "not HDF5": (_not_hdf5, "cannot open as HDF5"),
    "truncated": (_truncated, "HDF5|truncated"),
    "missing kspace": (_no_kspace, "no 'kspace' dataset"),
    "single-coil": (_single_coil, "single-coil .* not supported for training.*--skip-bad"),
    "wrong ndim": (_five_dims, r"shape \(1, 2, 2, 8, 8\); expected multi-coil"),
    "NaN": (_nan, "slice 2 of 'kspace' contains NaN or Inf"),
    "too small": (_too_small, "48x28 .* smaller than the reconstruction size 40x40"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gives_one_line_naming_it_and_skip_bad_goes_on(tmp_path: Path, case: str) -> None:
    make_bad, pattern = BAD_FILES[case]
    root = tmp_path / "data"
    root.mkdir()
    make_fastmri_file(root / "a_good.h5", slices=1)
    bad = root / "b_bad.h5"
    make_bad(bad)

    with pytest.raises(InputError, match=pattern) as err:
        prepare_folder(root, progress=False)
    message = str(err.value)
    assert str(bad) in message and "\n" not in message
    cache = root / ".punmri-cache"
    assert (cache / "a_good.h5").is_file()  # what was prepared before the bad file is kept
    assert not (cache / "index.json").exists() and not (cache / "b_bad.h5").exists()

    index = prepare_folder(root, skip_bad=True, progress=False)
    assert [e.file for e in index.files] == ["a_good.h5"]
    assert len(index.bad) == 1 and index.bad[0].file == "b_bad.h5"
    assert str(bad) in index.bad[0].error and "\n" not in index.bad[0].error
    assert json.loads((cache / "index.json").read_text())["bad"] == [
        {"file": "b_bad.h5", "error": index.bad[0].error}
    ]
    assert load_index(root).bad == (BadFile("b_bad.h5", index.bad[0].error),)


@pytest.mark.parametrize("header", [None, b"<ismrmrdHeader><encoding>", "<a>no geometry</a>"])
def test_header_fallback_warns_once_per_file(tmp_path: Path, header: object) -> None:
    root = tmp_path / "data"
    root.mkdir()
    path = make_fastmri_file(root / "nohead.h5", header=header)  # type: ignore[arg-type]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = prepare_folder(root, progress=False)
    ours = [w for w in caught if str(path) in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, UserWarning)
    assert "\n" not in str(ours[0].message)
    entry = index.files[0]
    assert entry.crop == (24, 24)  # from reconstruction_rss
    assert entry.acquired == (0, WIDTH)  # no encoding limits: every column

    # without a target the fallback is fastMRI's 320x320, too large for this file: a bad file
    make_fastmri_file(root / "small.h5", header=None, target=False)
    with pytest.raises(InputError, match="smaller than the reconstruction size 320x320"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepare_folder(root, progress=False)


def test_killed_prepare_resumes_to_the_uninterrupted_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folder(tmp_path / "data", n=3, slices=2)
    reference = prepare_folder(root, cache=tmp_path / "reference", progress=False)

    real = prepare._slice_maps
    calls: list[int] = []

    def dies_on_second_file(kspace: np.ndarray, calib: int) -> np.ndarray:
        calls.append(1)
        if len(calls) > 2:  # 2 slices per file: the first slice of the second file
            raise KeyboardInterrupt("killed")
        return real(kspace, calib)

    cache = tmp_path / "cache"
    monkeypatch.setattr(prepare, "_slice_maps", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(root, cache=cache, progress=False)
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == [
        "file0.h5"
    ]  # no temp file, no half-written cache file, no index
    with pytest.raises(InputError, match="not prepared"):
        load_index(root, cache=cache)

    def counts(kspace: np.ndarray, calib: int) -> np.ndarray:
        calls.append(1)
        return real(kspace, calib)

    calls.clear()
    monkeypatch.setattr(prepare, "_slice_maps", counts)
    resumed = prepare_folder(root, cache=cache, progress=False)
    assert len(calls) == 4  # files 2 and 3 only
    assert resumed.files == reference.files
    _assert_same(_cache_contents(cache), _cache_contents(tmp_path / "reference"))

    calls.clear()
    prepare_folder(root, cache=cache, progress=False)  # everything up to date: nothing to do
    assert calls == []


def test_changed_deleted_and_new_sources(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", n=3, slices=1)
    cache = root / ".punmri-cache"
    prepare_folder(root, progress=False)
    kept = (cache / "sub/file1.h5").stat().st_mtime_ns

    changed = root / "file0.h5"
    before = changed.stat().st_mtime_ns
    make_fastmri_file(changed, slices=2, seed=7)  # new content
    os.utime(changed, ns=(before + 10**9, before + 10**9))
    with pytest.raises(InputError, match="stale prepared index: file0.h5 changed"):
        load_index(root)

    index = prepare_folder(root, progress=False)
    entry = index.files[0]
    assert entry.file == "file0.h5" and entry.slices == 2
    assert entry.stamp == (changed.stat().st_size, changed.stat().st_mtime_ns)
    with h5py.File(changed, "r") as src, h5py.File(cache / "file0.h5", "r") as fh:
        np.testing.assert_array_equal(fh["target"][()], src["reconstruction_rss"][()])
    assert (cache / "sub/file1.h5").stat().st_mtime_ns == kept  # untouched file not redone

    (root / "file2.h5").unlink()
    stray = cache / f".file0.h5.{'0' * 32}.tmp"  # what a prepare killed by SIGKILL leaves
    stray.write_bytes(b"half a file")
    with pytest.raises(InputError, match="file2.h5 was deleted"):
        load_index(root)
    index = prepare_folder(root, progress=False)
    assert [e.file for e in index.files] == ["file0.h5", "sub/file1.h5"]
    assert not (cache / "file2.h5").exists()  # stale cache file removed
    assert not stray.exists()

    make_fastmri_file(root / "sub/new.h5", slices=1)
    with pytest.raises(InputError, match="sub/new.h5 is new"):
        load_index(root)


def test_two_workers_give_the_same_cache_as_one(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", n=3, slices=1)
    (root / "broken.h5").write_bytes(b"not an hdf5 file")
    one = prepare_folder(root, cache=tmp_path / "one", skip_bad=True, progress=False)
    two = prepare_folder(root, cache=tmp_path / "two", workers=2, skip_bad=True, progress=False)
    assert one.files == two.files and one.bad == two.bad and len(one.bad) == 1
    _assert_same(_cache_contents(tmp_path / "one"), _cache_contents(tmp_path / "two"))


def test_folder_and_index_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder not found"):
        prepare_folder(tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .h5 files"):
        prepare_folder(tmp_path / "empty", progress=False)
    with pytest.raises(InputError, match="workers"):
        prepare_folder(tmp_path / "empty", workers=0, progress=False)
    with pytest.raises(InputError, match=r"not prepared .*index.json not found.*punmri data"):
        load_index(tmp_path / "empty")
    index = tmp_path / "empty/.punmri-cache/index.json"
    index.parent.mkdir()
    index.write_text("{broken")
    with pytest.raises(InputError, match="unreadable prepared index"):
        load_index(tmp_path / "empty")
    index.write_text(json.dumps({"format": "punmri-prepared", "version": 99}))
    with pytest.raises(InputError, match="version 99"):
        load_index(tmp_path / "empty")
