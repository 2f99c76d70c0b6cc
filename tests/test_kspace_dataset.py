"""KSpaceDataset over a tiny prepared cache written here (contract section 2), and bucketing."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from torch.utils.data import DataLoader

from punmri.data import kspace_dataset
from punmri.data.batches import collate
from punmri.data.kspace_dataset import BucketBatchSampler, KSpaceDataset, volume_rng
from punmri.errors import InputError
from punmri.physics.fft import fft2c_numpy, ifft2c_numpy, rss_numpy
from punmri.physics.sampling import fastmri_mask

H = 24
CROP = (24, 20)
# file -> (width, coils, slices, acquired, has_target, has_mask)
LAYOUT = {
    "train/a.h5": (28, 4, 3, (0, 28), True, False),
    "train/b.h5": (32, 4, 3, (3, 29), True, False),
    "val/c.h5": (28, 3, 2, (0, 28), False, False),
    "test/d.h5": (28, 4, 2, (0, 28), False, True),
}


def _smooth(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth complex random field over the last two axes (low-pass in k-space)."""
    k = np.zeros(shape, dtype=np.complex128)
    ch, cw = shape[-2] // 2, shape[-1] // 2
    block = (*shape[:-2], 5, 5)
    k[..., ch - 2 : ch + 3, cw - 2 : cw + 3] = rng.standard_normal(
        block
    ) + 1j * rng.standard_normal(block)
    return ifft2c_numpy(k)


def _volume(width: int, coils: int, slices: int, rng: np.random.Generator):
    """Images x (S, h, W), unit-norm maps (S, C, h, W) and k-space F(S_c x): exact by design."""
    image = (rng.uniform(0.2, 1.0, (slices, H, width)) * np.exp(1j * rng.uniform(-3, 3))).astype(
        np.complex64
    )
    maps = _smooth((slices, coils, H, width), rng) + 0.3
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=1, keepdims=True))
    maps = maps.astype(np.complex64)
    kspace = fft2c_numpy(maps * image[:, None]).astype(np.complex64)
    return image, maps, kspace


def _crop(x: np.ndarray) -> np.ndarray:
    top, left = (x.shape[-2] - CROP[0]) // 2, (x.shape[-1] - CROP[1]) // 2
    return x[..., top : top + CROP[0], left : left + CROP[1]]


def write_cache(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Prepared cache under ``root/.punmri-cache`` per the contract; returns the arrays."""
    cache = root / ".punmri-cache"
    rng = np.random.default_rng(0)
    truth: dict[str, dict[str, np.ndarray]] = {}
    entries = []
    for name, (width, coils, slices, acquired, has_target, has_mask) in LAYOUT.items():
        image, maps, kspace = _volume(width, coils, slices, rng)
        left, stop = acquired
        kspace[..., :left] = 0
        kspace[..., stop:] = 0
        full = kspace.copy()
        mask = None
        if has_mask:
            mask = fastmri_mask(width, "equispaced", 0.25, 2, np.random.default_rng(5))
            kspace = kspace * mask
        path = cache / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as fh:
            fh["kspace"] = kspace
            fh["maps"] = maps
            if has_target:
                fh["target"] = _crop(rss_numpy(ifft2c_numpy(kspace), axis=1)).astype(np.float32)
            if mask is not None:
                fh["mask"] = mask
            fh.attrs["source"] = name
            fh.attrs["stamp"] = [1, 2]
        truth[name] = {"image": image, "maps": maps, "kspace": kspace, "full": full, "mask": mask}
        entries.append(
            {
                "file": name,
                "cache": name,
                "slices": slices,
                "coils": coils,
                "kspace_shape": [H, width],
                "crop": list(CROP),
                "acquired": list(acquired),
                "acquisition": "AXT1",
                "max": 1.0,
                "has_target": has_target,
                "has_mask": has_mask,
                "stamp": [1, 2],
            }
        )
    index = {
        "format": "punmri-prepared",
        "version": 1,
        "root": str(root),
        "files": entries,
        "bad": [{"file": "train/broken.h5", "error": "not HDF5"}],
    }
    (cache / "index.json").write_text(json.dumps(index))
    return truth


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("prepared")
    return root, write_cache(root)


def _masks(dataset: KSpaceDataset, epoch: int = 0) -> list[np.ndarray]:
    """Column mask of every item (widths differ across files)."""
    return [dataset.sample(i, epoch).mask[0] for i in range(len(dataset))]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_items_have_the_contract_shapes_and_dtypes(prepared) -> None:
    root, _ = prepared
    data = KSpaceDataset(root)
    assert len(data) == sum(v[2] for v in LAYOUT.values())
    assert [b.file for b in data.bad] == ["train/broken.h5"]
    for i in range(len(data)):
        item = data[i]
        c, h, w = data.kspace_shape(i)
        assert item.kspace.shape == item.maps.shape == (c, h, w)
        assert item.kspace.dtype == item.maps.dtype == np.complex64
        assert item.mask.shape == (h, w) and item.mask.dtype == np.float32
        assert np.all(item.mask == item.mask[:1])  # columns broadcast over rows
        assert item.target.shape == (h, w) and item.target.dtype == np.complex64
        assert item.extras["rss"].shape == CROP and item.extras["rss"].dtype == np.float32
        assert item.name == data.name(i) == f"{item.extras['volume']}:slice:{item.name[-3:]}"
        left, stop = data.entry(i).acquired
        np.testing.assert_array_equal(item.extras["acquired"], [left, stop])
    assert data[0].name == "train/a.h5:slice:000"


def test_target_is_the_sense_combination_and_matches_the_rss(prepared) -> None:
    root, truth = prepared
    data = KSpaceDataset(root)
    for i in range(len(data)):
        entry = data.entry(i)
        if entry.acquired != (0, entry.kspace_shape[1]) or entry.has_mask:
            continue  # zero-padded or undersampled files do not give back the image exactly
        item = data[i]
        image = truth[entry.file]["image"][int(item.name[-3:])]
        np.testing.assert_allclose(item.target, image, atol=2e-5)
        # has_target False (val/c.h5): the RSS is computed from the k-space instead of read.
        np.testing.assert_allclose(_crop(np.abs(item.target)), item.extras["rss"], atol=2e-5)


def test_mask_is_applied_to_the_kspace(prepared) -> None:
    root, truth = prepared
    data = KSpaceDataset(root, accelerations=(3,), center_fractions=(0.1,))
    for i in range(len(data)):
        item = data.sample(i, epoch=2)
        full = truth[data.entry(i).file]["full"][int(item.name[-3:])]
        cols = item.mask[0].astype(bool)
        assert not cols.all()
        assert np.all(item.kspace[..., ~cols] == 0)
        if not data.entry(i).has_mask:
            np.testing.assert_array_equal(item.kspace[..., cols], full[..., cols])


def test_padded_columns_are_never_sampled(prepared) -> None:
    root, _ = prepared
    data = KSpaceDataset(root, split=["train/b.h5"], accelerations=(2,))
    for epoch in range(5):
        for mask in _masks(data, epoch):
            assert not mask[:3].any() and not mask[29:].any()
            assert mask[3:29].any()


def test_masks_are_identical_across_instances_and_depend_on_the_seed(prepared) -> None:
    root, _ = prepared
    for fixed in (False, True):
        a = _masks(KSpaceDataset(root, fixed_masks=fixed, seed=4), 1)
        b = _masks(KSpaceDataset(root, fixed_masks=fixed, seed=4), 1)
        c = _masks(KSpaceDataset(root, fixed_masks=fixed, seed=5), 1)
        assert _same(a, b)
        assert not _same(a, c)


def test_fixed_masks_are_per_volume(prepared) -> None:
    root, truth = prepared
    data = KSpaceDataset(root, fixed_masks=True, seed=7, mask_kind="equispaced")
    subset = KSpaceDataset(root, split="val", fixed_masks=True, seed=7, mask_kind="equispaced")
    for i in range(len(data)):
        entry = data.entry(i)
        mask = data.sample(i, epoch=0).mask[0]
        np.testing.assert_array_equal(mask, data.sample(i, epoch=9).mask[0])  # epoch ignored
        if entry.has_mask:
            np.testing.assert_array_equal(mask, truth[entry.file]["mask"])
            continue
        expected = fastmri_mask(
            entry.kspace_shape[1],
            "equispaced",
            (0.08,),
            (4,),
            volume_rng(7, entry.file),
            entry.acquired,
        )
        np.testing.assert_array_equal(mask, expected)  # the same for every slice of a volume
    # ... and independent of which other files the dataset holds (index positions differ).
    first_val = next(i for i in range(len(data)) if data.entry(i).file == "val/c.h5")
    np.testing.assert_array_equal(subset[0].mask, data[first_val].mask)
    assert volume_rng(7, "val/c.h5").integers(1 << 30) == volume_rng(7, "c.h5").integers(1 << 30)


def test_training_masks_change_with_the_epoch(prepared) -> None:
    root, truth = prepared
    data = KSpaceDataset(root)
    e0, e1 = _masks(data, 0), _masks(data, 1)
    trained = [i for i in range(len(data)) if not data.entry(i).has_mask]
    assert all(not np.array_equal(e0[i], e1[i]) for i in trained)
    assert len({e0[i].tobytes() for i in trained}) == len(trained)  # per slice too
    data.set_epoch(1)
    assert _same([data[i].mask[0] for i in range(len(data))], e1)
    stored = [i for i in range(len(data)) if data.entry(i).has_mask]
    for i in stored:  # the test-split file keeps its own mask whatever the epoch
        np.testing.assert_array_equal(e0[i], truth["test/d.h5"]["mask"])
        np.testing.assert_array_equal(e1[i], e0[i])


def _loader_batches(data: KSpaceDataset, workers: int) -> list:
    sampler = BucketBatchSampler(data, batch_size=2, shuffle=True, seed=1)
    sampler.set_epoch(3)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    return list(loader)


@pytest.mark.parametrize("fixed", [False, True])
def test_dataloader_workers_give_the_same_batches(prepared, fixed: bool) -> None:
    root, _ = prepared
    data = KSpaceDataset(
        root, fixed_masks=fixed, accelerations=(4, 2), center_fractions=(0.08, 0.2)
    )
    data.set_epoch(3)
    serial = _loader_batches(data, 0)  # opens files in this process first; workers must reopen
    assert data._handles
    parallel = _loader_batches(data, 2)
    assert [b.names for b in serial] == [b.names for b in parallel]
    for a, b in zip(serial, parallel, strict=True):
        assert a.mask.equal(b.mask) and a.kspace.equal(b.kspace) and a.target.equal(b.target)
    expected = {data.name(i): data.sample(i, 3).mask for i in range(len(data))}
    for batch in parallel:
        for name, mask in zip(batch.names, batch.mask, strict=True):
            np.testing.assert_array_equal(mask.numpy(), expected[name])


def test_bucketing_never_mixes_shapes_and_is_deterministic(prepared) -> None:
    root, _ = prepared
    data = KSpaceDataset(root)
    for drop_last in (False, True):
        sampler = BucketBatchSampler(data, batch_size=2, shuffle=True, seed=0, drop_last=drop_last)
        assert len(sampler.shapes) == 3  # (4, 24, 28), (4, 24, 32), (3, 24, 28)
        seen = []
        for epoch in range(4):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler)
            assert batches == sampler.batches(epoch)
            for batch in batches:
                assert len({data.kspace_shape(i) for i in batch}) == 1
                assert len(batch) == 2 or not drop_last
            flat = sorted(i for batch in batches for i in batch)
            if not drop_last:
                assert flat == list(range(len(data)))
            seen.append(batches)
        assert any(seen[0] != other for other in seen[1:])  # reshuffled per epoch
    ordered = BucketBatchSampler(data, batch_size=2, shuffle=False)
    assert ordered.batches(0) == ordered.batches(5)
    assert [batch[0] for batch in ordered] == sorted(batch[0] for batch in ordered)
    assert sorted(i for batch in ordered for i in batch) == list(range(len(data)))
    assert all(batch == sorted(batch) for batch in ordered)
    with pytest.raises(InputError, match="batch_size"):
        BucketBatchSampler(data, batch_size=0)


def test_files_open_lazily_and_reopen_in_a_new_process(prepared, monkeypatch) -> None:
    root, _ = prepared
    data = KSpaceDataset(root)
    assert len(data._handles) == 0 and data._handles_pid is None
    assert data.kspace_shape(len(data) - 1) == (4, 24, 28)  # from the index, nothing opened
    assert len(data._handles) == 0
    data[0]
    first = data._handles[0]
    assert data._handles_pid == os.getpid() and list(data._handles) == [0]
    data[1]
    assert data._handles[0] is first  # reused in the same process
    monkeypatch.setattr(kspace_dataset.os, "getpid", lambda: -12345)
    data[0]
    assert data._handles_pid == -12345 and data._handles[0] is not first
    monkeypatch.undo()
    clone = pickle.loads(pickle.dumps(data))
    assert len(clone._handles) == 0
    np.testing.assert_array_equal(clone[4].kspace, data[4].kspace)
    first.close()
    data.close()


def test_open_files_are_bounded(prepared) -> None:
    root, _ = prepared
    data = KSpaceDataset(root, max_open_files=1)
    handles = []
    for i in range(len(data)):
        data[i]
        assert len(data._handles) == 1
        handles.append(data._handles[next(iter(data._handles))])
    assert not handles[0].id.valid  # evicted files are closed
    data.close()


def test_split_selects_files(prepared) -> None:
    root, _ = prepared
    assert [e.file for e in KSpaceDataset(root, split="train").files] == [
        "train/a.h5",
        "train/b.h5",
    ]
    assert len(KSpaceDataset(root, split=["val/c.h5"])) == 2
    with pytest.raises(InputError, match="no prepared file below"):
        KSpaceDataset(root, split="multicoil_val")
    with pytest.raises(InputError, match="not in"):
        KSpaceDataset(root, split=["val/missing.h5"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask_kind": "poisson2d"}, "mask_kind"),
        ({"center_fractions": (0.08, 0.04)}, "same length"),
        ({"center_fractions": (0.5,)}, "lower the centre fraction"),
        ({"accelerations": ("x",)}, "accelerations"),
        ({"seed": -1}, "seed"),
        ({"max_open_files": 0}, "max_open_files"),
    ],
)
def test_bad_settings_raise_input_errors(prepared, kwargs: dict, message: str) -> None:
    root, _ = prepared
    with pytest.raises(InputError, match=message):
        KSpaceDataset(root, **kwargs)


def test_unprepared_or_stale_caches_raise_input_errors(prepared, tmp_path: Path) -> None:
    root, _ = prepared
    with pytest.raises(InputError, match="punmri data prepare"):
        KSpaceDataset(tmp_path)
    # A source file that changed since it was prepared.
    copy = tmp_path / "copy"
    write_cache(copy)
    source = copy / "train" / "a.h5"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"changed")
    with pytest.raises(InputError, match="changed since it was prepared"):
        KSpaceDataset(copy)
    assert len(KSpaceDataset(copy, check_stamps=False)) == 10
    # An index whose shapes disagree with the cache file.
    index_path = copy / ".punmri-cache" / "index.json"
    index = json.loads(index_path.read_text())
    index["files"][0]["coils"] = 5
    index_path.write_text(json.dumps(index))
    data = KSpaceDataset(copy, check_stamps=False)
    with pytest.raises(InputError, match="stale"):
        data[0]
    index["version"] = 2
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match="version"):
        KSpaceDataset(copy, check_stamps=False)
    data.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("acquired", [0, 99], r"files\[0\]: inconsistent sizes"),
        ("kspace_shape", [24], r"files\[0\]\.kspace_shape: expected a list of two integers"),
        ("slices", 0, r"files\[0\]\.slices: expected a positive integer"),
        ("has_mask", "no", r"files\[0\]\.has_mask: expected bool"),
        ("max", "big", r"files\[0\]\.max: expected a number or null"),
        ("stamp", None, r"files\[0\]\.stamp: expected a list of two integers"),
        ("cache", None, r"files\[0\]\.cache: expected str"),
        ("coils", "missing", r"files\[0\]: missing \['coils'\]"),
    ],
)
def test_malformed_index_fields_are_named(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    write_cache(tmp_path)
    index_path = tmp_path / ".punmri-cache" / "index.json"
    index = json.loads(index_path.read_text())
    if value == "missing":
        del index["files"][0][field]
    else:
        index["files"][0][field] = value
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match=f"index.json: {message}") as caught:
        KSpaceDataset(tmp_path, check_stamps=False)
    assert "punmri data prepare" in str(caught.value)


def test_malformed_bad_list_is_refused(tmp_path: Path) -> None:
    write_cache(tmp_path)
    index_path = tmp_path / ".punmri-cache" / "index.json"
    index = json.loads(index_path.read_text())
    index["bad"] = [{"file": "x.h5"}]
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"index.json: bad\[0\]"):
        KSpaceDataset(tmp_path)
    index["bad"] = None
    index_path.write_text(json.dumps(index))
    with pytest.raises(InputError, match="'bad' must be a list"):
        KSpaceDataset(tmp_path)
