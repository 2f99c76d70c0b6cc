"""Config-declared shift suites: determinism, physics overrides, views, lesions, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from punmri.config import RunConfig, SuiteConfig, load_config, replace
from punmri.data.anatomy import training_splits
from punmri.data.sources import ImageSet
from punmri.errors import InputError
from punmri.evaluate.shifts import (
    SHIFT_SUITES,
    SUITE_GROUPS,
    build_suites,
    describe_shift,
    shift_suites_yaml,
    suite_physics,
)

BASE = [
    "data.source=phantom",
    "data.image_size=[24,20]",
    "data.max_train_slices=2",
    "data.max_val_slices=1",
    "data.max_test_slices=2",
]


def _config(*suites: SuiteConfig, extra: tuple[str, ...] = ()) -> RunConfig:
    cfg = load_config(None, [*BASE, *extra])
    return replace(cfg, **{"evaluate.suites": (SuiteConfig(), *suites)})


@pytest.fixture(scope="module")
def splits() -> dict[str, ImageSet]:
    return training_splits(load_config(None, BASE).data)


def _acceleration(suite) -> float:
    return float(np.mean([s.mask.size / s.mask.sum() for s in suite.samples]))


def test_two_builds_are_bitwise_identical(splits: dict[str, ImageSet]) -> None:
    cfg = _config(SuiteConfig(name="acc8", physics={"acceleration": 8}))
    a, b = build_suites(cfg, splits), build_suites(cfg, splits)
    assert [s.name for s in a] == ["id", "acc8"]
    for sa, sb in zip(a, b, strict=True):
        for x, y in zip(sa.samples, sb.samples, strict=True):
            assert x.kspace.tobytes() == y.kspace.tobytes()
            assert x.name == y.name
    # the test seed changes the measurements
    other = build_suites(replace(cfg, **{"evaluate.test_seed": 7}), splits)
    assert other[0].samples[0].kspace.tobytes() != a[0].samples[0].kspace.tobytes()


def test_physics_overrides_are_applied(splits: dict[str, ImageSet]) -> None:
    cfg = _config(
        SuiteConfig(name="acc8", physics={"acceleration": 8}),
        SuiteConfig(name="single-coil", physics={"coils": "1"}),
        SuiteConfig(name="snr20", physics={"snr_db": 20}),
        SuiteConfig(name="poisson2d", physics={"mask_kind": "poisson2d"}),
        SuiteConfig(name="noiseless", physics={"snr_db": None}),
    )
    suites = {s.name: s for s in build_suites(cfg, splits)}
    acc8 = suites["acc8"]
    assert acc8.physics.acceleration == 8.0 and isinstance(acc8.physics.acceleration, float)
    assert 6.0 <= _acceleration(acc8) <= 11.0 and _acceleration(acc8) > _acceleration(suites["id"])
    assert acc8.description == "acceleration 4 -> 8"
    assert suites["single-coil"].physics.coils == 1
    assert suites["single-coil"].samples[0].kspace.shape[0] == 1
    assert suites["id"].samples[0].kspace.shape[0] == 8
    assert suites["single-coil"].description == "coils 8 -> 1"
    assert suites["snr20"].physics.snr_db == 20.0
    assert suites["snr20"].description == "SNR 40 -> 20 dB"
    assert suites["noiseless"].description == "SNR 40 -> noiseless"
    # 2D Poisson-disc sampling is not constant along the readout direction
    mask = suites["poisson2d"].samples[0].mask
    assert not (mask == mask[:1]).all()
    assert suites["poisson2d"].description == "mask random -> poisson2d"
    assert suites["id"].description == "in distribution"
    assert [n for n, suite in suites.items() if suite.in_distribution] == ["id"]


def test_a_suite_with_the_training_settings_is_flagged_in_distribution(splits) -> None:
    # at 20 dB training the standard suite snr20 repeats the training distribution: a replicate
    same = SuiteConfig(name="snr20", physics={"snr_db": 20})
    described = SuiteConfig(name="mine", physics={"snr_db": 20}, description="my words")
    shifted = SuiteConfig(name="snr30", physics={"snr_db": 30})
    cfg = _config(same, described, shifted, extra=("physics.snr_db=20",))
    suites = {s.name: s for s in build_suites(cfg, splits)}
    assert suites["snr20"].description == "in distribution"
    assert suites["mine"].description == "my words"  # flagged by its settings, not its words
    flags = {name: suite.in_distribution for name, suite in suites.items()}
    assert flags == {"id": True, "snr20": True, "mine": True, "snr30": False}


def test_coronal_view_uses_other_slices(splits: dict[str, ImageSet]) -> None:
    cfg = _config(SuiteConfig(name="coronal", source="coronal"))
    idd, coronal = build_suites(cfg, splits)
    assert all(":coronal:" in s.name for s in coronal.samples)
    assert all(":axial:" in s.name for s in idd.samples)
    assert not np.allclose(idd.samples[0].target, coronal.samples[0].target)
    # cropped to the test slab (axial positions 29-32 of the phantom): no training voxels
    assert coronal.description == (
        "view axial -> coronal, test slab only (axial positions 29-32 of 40; a 4x48 band "
        "centred in 24x20 pixels, no training or validation voxels)"
    )
    for sample in coronal.samples:
        rows = np.flatnonzero(np.abs(sample.target).max(axis=1) > 0)
        assert rows.min() >= 10 and rows.max() <= 13  # the 4-row band, centred in 24 rows
    described = _config(SuiteConfig(name="coronal", source="coronal", description="mine"))
    assert build_suites(described, splits)[1].description == "mine"


def test_lesion_suite_has_roi(splits: dict[str, ImageSet]) -> None:
    cfg = _config(SuiteConfig(name="lesions", lesions=True))
    idd, lesions = build_suites(cfg, splits)
    assert lesions.description == "lesions"
    assert "roi" not in idd.samples[0].extras
    for sample, plain in zip(lesions.samples, idd.samples, strict=True):
        roi = sample.extras["roi"]
        assert roi.dtype == np.bool_ and roi.shape == sample.target.shape and roi.any()
        assert sample.name == plain.name


def test_extra_source_adds_a_suite(splits: dict[str, ImageSet], tmp_path: Path) -> None:
    path = tmp_path / "extra.npy"
    np.save(path, splits["test"].images)
    cfg = _config(extra=(f"data.paths=[{path}]",))
    suites = build_suites(cfg, splits, extra_sources=[str(path)])  # listed twice, used once
    assert [s.name for s in suites] == ["id", "extra"]
    assert suites[1].description == f"images from {path}"
    with pytest.raises(InputError, match="duplicate suite name 'extra'"):
        build_suites(_config(SuiteConfig(name="extra", lesions=True)), splits, [str(path)])


def test_bad_suites_raise_input_error(splits: dict[str, ImageSet]) -> None:
    with pytest.raises(InputError, match=r"accel.*accepted physics keys: mask_kind, acceleration"):
        build_suites(_config(SuiteConfig(name="x", physics={"accel": 8})), splits)
    with pytest.raises(InputError, match="acceleration: expected a number"):
        build_suites(_config(SuiteConfig(name="x", physics={"acceleration": "fast"})), splits)
    with pytest.raises(InputError, match="mask_kind"):
        build_suites(_config(SuiteConfig(name="x", physics={"mask_kind": "spiral"})), splits)
    with pytest.raises(InputError, match="duplicate suite name 'acc8'"):
        dup = SuiteConfig(name="acc8", physics={"acceleration": 8})
        build_suites(_config(dup, dup), splits)
    cfg = load_config(None, BASE)
    with pytest.raises(InputError, match=r"evaluate.suites\[0\].*in-distribution"):
        build_suites(replace(cfg, **{"evaluate.suites": (SuiteConfig(name="acc8"),)}), splits)
    with pytest.raises(InputError, match=r"evaluate.suites\[0\]"):
        first = SuiteConfig(physics={"coils": 1})
        build_suites(replace(cfg, **{"evaluate.suites": (first,)}), splits)
    with pytest.raises(InputError, match="training view"):
        build_suites(_config(SuiteConfig(name="ax", source="axial")), splits)


def test_suite_physics_converts_like_the_config() -> None:
    cfg = load_config(None, BASE)
    physics = suite_physics(cfg.physics, {"coils": 4.0, "snr_db": "30"}, "x")
    assert physics.coils == 4 and isinstance(physics.coils, int) and physics.snr_db == 30.0
    assert cfg.physics.coils == 8  # the run's physics is untouched
    text = describe_shift(cfg.physics, physics, "axial", "sagittal", True)
    assert text == "view axial -> sagittal, coils 8 -> 4, SNR 40 -> 30 dB, lesions"


def test_standard_suites_yaml_round_trips(tmp_path: Path) -> None:
    names = [s.name for s in SHIFT_SUITES]
    assert names[0] == "id" and len(set(names)) == len(names)
    grouped = [n for group in SUITE_GROUPS.values() for n in group]
    assert sorted(grouped) == sorted(names[1:])
    path = tmp_path / "shifts.yaml"
    path.write_text(shift_suites_yaml())
    assert load_config(path).evaluate.suites == SHIFT_SUITES


def test_score_adds_roi_metrics_on_lesion_suites(splits: dict[str, ImageSet]) -> None:
    from punmri.evaluate.runner import score_slice

    idd, lesions = build_suites(_config(SuiteConfig(name="lesions", lesions=True)), splits)
    for suite in (idd, lesions):
        preds = np.stack([0.9 * s.target for s in suite.samples])
        records = [
            score_slice("half", suite.name, s, p) for s, p in zip(suite.samples, preds, strict=True)
        ]
        assert [r.slice_name for r in records] == [s.name for s in suite.samples]
        if suite is idd:
            assert all(r.extra == {} for r in records)
            continue
        for r in records:
            assert set(r.extra) == {"roi_psnr", "roi_ssim", "lesion_contrast_error"}
            assert r.extra["lesion_contrast_error"] == pytest.approx(0.1, abs=1e-4)
            assert np.isfinite(r.extra["roi_psnr"]) and r.extra["roi_ssim"] <= 1


def test_h5_sources_go_through_the_kspace_hook(
    splits: dict[str, ImageSet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys
    import types

    calls = []
    idd_samples = build_suites(_config(), splits)[0].samples

    def fastmri_samples(path, cfg, seed, max_slices=0):
        calls.append((path, cfg.physics.acceleration, seed, max_slices))
        return idd_samples

    fake = types.ModuleType("punmri.data.kspace_sources")
    fake.fastmri_samples = fastmri_samples
    monkeypatch.setitem(sys.modules, "punmri.data.kspace_sources", fake)
    knee = SuiteConfig(name="knee", source="/data/knee.h5", physics={"acceleration": 8})
    suites = build_suites(_config(knee), splits)
    assert calls == [("/data/knee.h5", 8.0, 1234, 2)]
    assert suites[1].samples is idd_samples
    assert suites[1].description == "measured k-space from /data/knee.h5, acceleration 4 -> 8"
    with pytest.raises(InputError, match="lesions"):
        build_suites(_config(SuiteConfig(name="k", source="k.h5", lesions=True)), splits)
    with pytest.raises(InputError, match=r"physics.coils: has no effect on measured k-space"):
        build_suites(_config(SuiteConfig(name="k", source="k.h5", physics={"coils": 2})), splits)
    folder = tmp_path / "knees"
    folder.mkdir()
    (folder / "a.h5").write_bytes(b"")
    build_suites(_config(extra=(f"data.paths=[{folder}]",)), splits)
    assert calls[-1] == (str(folder), 4.0, 1234, 2)
