"""Tests for punmri.evaluate.metrics (fastMRI-convention image metrics)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from punmri.errors import InputError
from punmri.evaluate.metrics import nmse, psnr, roi_metrics, slice_metrics, ssim
from punmri.evaluate.tables import (
    SliceRecord,
    aggregate,
    format_table,
    read_slice_csv,
    write_slice_csv,
)
from punmri.io import write_json_atomic


def _image(seed: int = 0, shape: tuple[int, int] = (32, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 1.0, size=shape)


def test_psnr_of_constant_error_matches_hand_computation() -> None:
    target = np.zeros((16, 16))
    target[0, 0] = 2.0  # data_range = target.max() = 2
    pred = target + 0.1  # MSE = 0.01
    assert psnr(target, pred) == pytest.approx(10 * math.log10(4 / 0.01))


def test_psnr_explicit_data_range_and_exact_prediction() -> None:
    target = _image()
    assert psnr(target, target + 0.1, data_range=1.0) == pytest.approx(20.0)
    assert psnr(target, target) == math.inf


def test_data_range_defaults_to_target_max_not_pred() -> None:
    target = _image(1)
    pred = 3 * target  # larger peak in pred must not change the range
    dr = float(target.max())
    assert psnr(target, pred) == pytest.approx(psnr(target, pred, data_range=dr))
    assert ssim(target, pred) == pytest.approx(ssim(target, pred, data_range=dr))
    assert psnr(target, pred) != pytest.approx(psnr(target, pred, data_range=3 * dr))


def test_ssim_identical_is_one_and_degrades() -> None:
    target = _image(2)
    assert ssim(target, target) == pytest.approx(1.0)
    noisy = target + np.random.default_rng(3).normal(0, 0.2, target.shape)
    assert ssim(target, noisy) < 0.9


def _volume_pair() -> tuple[np.ndarray, np.ndarray]:
    """A fixed magnitude volume ``(3, 40, 36)`` with slice peaks 1, 0.6 and 0.3, and a blurred,
    noisy magnitude reconstruction of it."""
    yy, xx = np.mgrid[0:40, 0:36]
    body = (yy - 20) ** 2 / 300 + (xx - 18) ** 2 / 250 < 1
    target = np.stack(
        [
            peak * (0.5 + 0.5 * np.sin(xx / (3 + k)) * np.cos(yy / 5)) * body
            for k, peak in enumerate((1.0, 0.6, 0.3))
        ]
    )
    noise = np.random.default_rng(0).normal(0, 0.03, target.shape)
    pred = np.abs(ndimage.uniform_filter(target, size=(1, 3, 3)) + noise)
    return target, pred


def test_ssim_matches_fastmri_reference_values() -> None:
    target, pred = _volume_pair()
    volume_max = float(target.max())
    # fastMRI's evaluate.ssim: skimage's structural_similarity with its defaults (7x7 uniform
    # window, K1 = 0.01, K2 = 0.03, sample covariance) and data_range = the target *volume* max,
    # averaged over slices. Here: that data_range passed explicitly, slice by slice.
    pairs = list(zip(target, pred, strict=True))
    reference = [structural_similarity(t, p, data_range=volume_max) for t, p in pairs]
    scores = [ssim(t, p, data_range=volume_max) for t, p in pairs]
    assert scores == pytest.approx(reference, rel=1e-12, abs=1e-12)
    assert float(np.mean(scores)) == pytest.approx(0.8471821241, abs=1e-6)
    # The default data_range is the target *slice* max (module docstring), which differs from the
    # volume convention for the dimmer slices.
    reference = [structural_similarity(t, p, data_range=t.max()) for t, p in pairs]
    scores = [ssim(t, p) for t, p in pairs]
    assert scores == pytest.approx(reference, rel=1e-12, abs=1e-12)
    assert scores[2] == pytest.approx(0.7073440263, abs=1e-6)
    assert scores[2] < ssim(target[2], pred[2], data_range=volume_max) - 0.05


def test_nmse_known_value() -> None:
    target = np.full((8, 8), 2.0)
    pred = np.full((8, 8), 1.0)
    assert nmse(target, pred) == pytest.approx(0.25)


def test_complex_input_uses_magnitude() -> None:
    target = _image(4)
    pred = _image(5)
    phase_t = np.exp(1j * np.linspace(0, 3, target.size).reshape(target.shape))
    phase_p = np.exp(-2j * np.linspace(0, 1, pred.size).reshape(pred.shape))
    real = slice_metrics(target, pred)
    cplx = slice_metrics(target * phase_t, pred * phase_p)
    for key in ("psnr", "ssim", "nmse"):
        assert cplx[key] == pytest.approx(real[key])


def test_slice_metrics_keys() -> None:
    out = slice_metrics(_image(6), _image(7))
    assert set(out) == {"psnr", "ssim", "nmse"}
    assert all(isinstance(v, float) for v in out.values())


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(InputError, match=r"\(32, 32\).*\(32, 31\)"):
        psnr(_image(), _image(shape=(32, 31)))


def test_target_nan_raises_pred_nan_gives_nan() -> None:
    target = _image()
    bad = target.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="slice_007"):
        slice_metrics(bad, target, name="slice_007")
    out = slice_metrics(target, bad)
    assert all(math.isnan(v) for v in out.values())
    assert math.isnan(psnr(target, bad)) and math.isnan(ssim(target, bad))


def _lesion_phantom() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:48, :48]
    image = np.full((48, 48), 0.5)
    roi = (yy - 20) ** 2 + (xx - 26) ** 2 <= 9
    image[roi] = 0.9
    return image, roi


def test_roi_metrics_perfect_and_erased_lesion() -> None:
    image, roi = _lesion_phantom()
    perfect = roi_metrics(image, image, roi)
    assert perfect["contrast_error"] == pytest.approx(0.0)
    assert perfect["ssim"] == pytest.approx(1.0)
    assert perfect["psnr"] == math.inf
    erased = image.copy()
    erased[roi] = 0.5
    out = roi_metrics(image, erased, roi)
    assert out["contrast_error"] == pytest.approx(1.0)
    # ROI PSNR uses the full-target data range (0.9) and only ROI pixels (error 0.4)
    assert out["psnr"] == pytest.approx(10 * math.log10(0.9**2 / 0.4**2))
    assert out["ssim"] < 1.0


def test_roi_metrics_small_box_near_border_and_bad_mask() -> None:
    image, _ = _lesion_phantom()
    roi = np.zeros_like(image, dtype=bool)
    roi[0, 47] = True
    out = roi_metrics(image, image * 0.9, roi, pad=0)  # box grown to 7x7 inside the image
    assert np.isfinite(out["ssim"])
    with pytest.raises(InputError, match="empty"):
        roi_metrics(image, image, np.zeros_like(roi))
    with pytest.raises(InputError, match="ROI mask shape"):
        roi_metrics(image, image, roi[:10])


# --- per-slice tables and aggregation (punmri.evaluate.tables) ---------------------------------


def _records() -> list[SliceRecord]:
    return [
        SliceRecord("zf", "knee-4x", "a", 30.0, 0.80, 0.02, {"roi_psnr": 25.0}),
        SliceRecord("zf", "knee-4x", "b,with comma", 32.0, 0.90, 0.04),
        SliceRecord("zf", "brain-8x", "c", 20.0, 0.50, 0.10),
        SliceRecord("cs", "knee-4x", "a", 34.0, 0.95, 0.01),
        SliceRecord("cs", "knee-4x", "b", float("nan"), float("nan"), float("nan")),
    ]


def test_aggregate_known_records() -> None:
    agg = aggregate(_records())
    knee = agg["methods"]["zf"]["suites"]["knee-4x"]
    assert knee == pytest.approx(
        {
            "psnr": 31.0,
            "ssim": 0.85,
            "nmse": 0.03,
            "psnr_std": 1.0,
            "ssim_std": 0.05,
            "n": 2,
            "roi_psnr": 25.0,  # extras: mean over the slices that have them
        }
    )
    assert agg["methods"]["zf"]["suites"]["brain-8x"]["n"] == 1
    assert "roi_psnr" not in agg["methods"]["zf"]["suites"]["brain-8x"]
    failed = agg["methods"]["cs"]["suites"]["knee-4x"]
    assert failed["n"] == 2 and failed["n_failed"] == 1
    assert failed["psnr"] == pytest.approx(34.0) and failed["psnr_std"] == 0.0
    assert set(agg) == {"methods"} and set(agg["methods"]["cs"]) == {"suites"}


def test_slice_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "slices.csv"
    records = _records()
    write_slice_csv(records, path)
    back = read_slice_csv(path)
    assert len(back) == len(records)
    for r, b in zip(records, back, strict=True):
        assert (b.method, b.suite, b.slice_name, b.extra) == (
            r.method,
            r.suite,
            r.slice_name,
            r.extra,
        )
        for m in ("psnr", "ssim", "nmse"):
            assert getattr(b, m) == getattr(r, m) or math.isnan(getattr(r, m))
    assert not (tmp_path / "out" / "slices.csv.tmp").exists()


def test_read_slice_csv_rejects_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,score\nx,1\n")
    with pytest.raises(InputError, match="header"):
        read_slice_csv(path)


def test_write_json_atomic_strict_and_sorted(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("old")
    write_json_atomic(path, {"b": float("nan"), "a": [1.5, float("inf")]})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    text = path.read_text()
    assert json.loads(text) == {"a": [1.5, None], "b": None}
    assert text.index('"a"') < text.index('"b"') and '\n  "a"' in text


def test_format_table_layout() -> None:
    agg = aggregate(_records())
    table = format_table(agg, "psnr").splitlines()
    assert table[0].split() == ["PSNR", "knee-4x", "brain-8x"]
    assert table[2].split() == ["zf", "31.00", "20.00"]
    assert table[3].split() == ["cs", "34.00*", "-"]
    assert len({len(line) for line in table[:2]}) == 1  # header and rule aligned
    assert "0.8500" in format_table(agg, "ssim")
    with pytest.raises(InputError, match="metric"):
        format_table(agg, "lpips")
