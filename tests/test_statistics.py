"""Paired statistics: seed-aware pairing, cluster bootstrap, summaries, pooled means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from punmri.errors import InputError
from punmri.evaluate.statistics import (
    bootstrap_ci,
    paired_differences,
    pooled_statistics,
    split_seed,
    suite_statistics,
    summary_line,
)
from punmri.evaluate.tables import SliceRecord


def _rec(method: str, suite: str, slice_name: str, psnr: float, ssim: float = 0.9) -> SliceRecord:
    return SliceRecord(method, suite, slice_name, psnr, ssim, 0.01, extra={"roi_psnr": psnr - 1})


def _records(seeds: tuple[int, ...] = (0, 1), ref_seeds: tuple[int, ...] = (0, 1)) -> list:
    """pun = dense + 1 + seed/10 dB on every slice, 'id' and 'acc8' suites, 3 slices each."""
    out = []
    for suite in ("id", "acc8"):
        for i in range(3):
            base = 30.0 + i - (suite == "acc8") * 3
            for s in ref_seeds:
                name = "dense" if len(ref_seeds) == 1 else f"dense#s{s}"
                out.append(_rec(name, suite, f"sl{i}", base + s))
            for s in seeds:
                name = "pun" if len(seeds) == 1 else f"pun#s{s}"
                out.append(_rec(name, suite, f"sl{i}", base + s + 1 + s / 10, ssim=0.8))
    return out


def test_split_seed() -> None:
    assert split_seed("pun#s12") == ("pun", 12)
    assert split_seed("pun@0.1#s0") == ("pun@0.1", 0)
    assert split_seed("cs-l1") == ("cs-l1", None)


def test_pairing_by_seed() -> None:
    diffs = paired_differences(_records(), "pun", "dense", metric="psnr")
    assert list(diffs) == ["id", "acc8"]
    assert diffs["id"].shape == (3, 2)
    np.testing.assert_allclose(diffs["id"], [[1.0, 1.1]] * 3)
    np.testing.assert_allclose(paired_differences(_records(), "pun", metric="ssim")["id"], -0.1)
    np.testing.assert_allclose(
        paired_differences(_records(), "pun", metric="roi_psnr")["id"][0], [1, 1.1]
    )
    only_one = paired_differences(_records(), "pun#s1", "dense")
    np.testing.assert_allclose(only_one["acc8"], [[1.1]] * 3)


def test_single_seed_reference_pairs_with_every_seed() -> None:
    diffs = paired_differences(_records(seeds=(0, 1), ref_seeds=(0,)), "pun", "dense")
    # dense (seed 0, plain name) is subtracted from both pun seeds
    np.testing.assert_allclose(diffs["id"], [[1.0, 2.1]] * 3)
    plain = paired_differences(_records(seeds=(0,), ref_seeds=(0, 1)), "pun", "dense")
    np.testing.assert_allclose(plain["id"], [[1.0, 0.0]] * 3)


def test_missing_partner_raises() -> None:
    records = _records()
    with pytest.raises(InputError, match=r"'pun'.*'acc8'.*slice 'sl2'"):
        paired_differences(
            [
                r
                for r in records
                if not (r.method == "dense#s1" and r.slice_name == "sl2" and r.suite == "acc8")
            ],
            "pun",
        )
    with pytest.raises(InputError, match=r"'pun'.*suite 'acc8'"):
        no_dense_acc8 = [
            r for r in records if not (r.method.startswith("dense") and r.suite == "acc8")
        ]
        paired_differences(no_dense_acc8, "pun")
    with pytest.raises(InputError, match=r"'pun': no records in suite 'acc8'"):
        no_pun_acc8 = [r for r in records if not (r.method.startswith("pun") and r.suite == "acc8")]
        paired_differences(no_pun_acc8, "pun")
    with pytest.raises(InputError, match="seed 2"):
        paired_differences(_records(seeds=(0, 2), ref_seeds=(0, 1)), "pun")
    with pytest.raises(InputError, match="'magnitude'"):
        paired_differences(records, "magnitude")
    with pytest.raises(InputError, match="duplicate"):
        paired_differences([*records, records[0]], "pun")
    with pytest.raises(InputError, match="lpips"):
        paired_differences(records, "pun", metric="lpips")


def test_bootstrap_constant_and_single() -> None:
    ci = bootstrap_ci(np.full((7, 3), 0.1))
    assert ci == {"mean": 0.1, "ci_low": 0.1, "ci_high": 0.1}
    assert bootstrap_ci(np.array([2.5])) == {"mean": 2.5, "ci_low": 2.5, "ci_high": 2.5}
    nan = bootstrap_ci(np.array([1.0, math.nan, 2.0]))
    assert math.isnan(nan["mean"]) and math.isnan(nan["ci_low"])
    with pytest.raises(InputError, match="diffs"):
        bootstrap_ci(np.zeros((0,)))
    with pytest.raises(InputError, match="level"):
        bootstrap_ci(np.ones(3), level=1.5)


def test_bootstrap_normal_sample_width_and_determinism() -> None:
    n = 400
    d = np.random.default_rng(0).normal(1.0, 1.0, size=n)
    ci = bootstrap_ci(d, n_boot=2000, seed=3)
    assert ci["ci_low"] < 1.0 < ci["ci_high"]
    width = ci["ci_high"] - ci["ci_low"]
    assert width == pytest.approx(2 * 1.96 / math.sqrt(n), rel=0.15)
    assert ci["mean"] == pytest.approx(d.mean())
    assert bootstrap_ci(d, n_boot=2000, seed=3) == ci
    assert bootstrap_ci(d, n_boot=2000, seed=4) != ci


def test_bootstrap_resamples_slices_not_seeds() -> None:
    # seeds of a slice agree perfectly: 3 seeds carry no more information than 1
    rng = np.random.default_rng(1)
    per_slice = rng.normal(0.0, 1.0, size=(50, 1))
    one = bootstrap_ci(per_slice, seed=0)
    three = bootstrap_ci(np.repeat(per_slice, 3, axis=1), seed=0)
    assert three["ci_low"] == pytest.approx(one["ci_low"])
    assert three["ci_high"] == pytest.approx(one["ci_high"])


def test_suite_statistics_and_summary_line() -> None:
    stats = suite_statistics(_records(), ["pun"], n_boot=200)
    entry = stats["pun"]["id"]
    assert entry["n_slices"] == 3 and entry["n_seeds"] == 2
    assert entry["delta_psnr"]["mean"] == pytest.approx(1.05)
    assert entry["delta_psnr"]["ci_low"] == pytest.approx(1.05)
    assert entry["delta_ssim"]["mean"] == pytest.approx(-0.1)
    assert stats == suite_statistics(_records(), ["pun"], n_boot=200)
    line = summary_line(stats, "pun", n_boot=200)
    assert line["ood_suites"] == ["acc8"]
    assert line["id_delta_psnr"]["mean"] == pytest.approx(1.05)
    assert line["ood_delta_psnr"]["mean"] == pytest.approx(1.05)
    assert line["ood_delta_ssim"]["ci_high"] == pytest.approx(-0.1)
    with pytest.raises(InputError, match="id_suite"):
        summary_line(stats, "pun", id_suite="nope")
    with pytest.raises(InputError, match="'dense'"):
        summary_line(stats, "dense")


def test_summary_ood_averages_suite_means() -> None:
    records = []
    for suite, n, gain in (("id", 4, 0.5), ("a", 2, 1.0), ("b", 8, 3.0)):
        for i in range(n):
            records.append(_rec("dense", suite, f"s{i}", 30.0))
            records.append(_rec("pun", suite, f"s{i}", 30.0 + gain + 0.1 * i))
    line = summary_line(suite_statistics(records, ["pun"], n_boot=300), "pun", n_boot=300)
    expected = ((1.0 + 0.05) + (3.0 + 0.35)) / 2  # equal weight per suite, not per slice
    assert line["ood_delta_psnr"]["mean"] == pytest.approx(expected)
    assert line["ood_delta_psnr"]["ci_low"] < expected < line["ood_delta_psnr"]["ci_high"]


def test_pooled_statistics_fold_seeds() -> None:
    stats = pooled_statistics(_records())
    pun = stats["pun"]["id"]
    values = [30 + i + s + 1 + s / 10 for i in range(3) for s in (0, 1)]
    assert pun["n"] == 6 and pun["n_seeds"] == 2
    assert pun["psnr_mean"] == pytest.approx(np.mean(values))
    assert pun["psnr_std"] == pytest.approx(np.std(values))
    assert pun["psnr_seed_std"] == pytest.approx(0.55)
    assert pun["ssim_mean"] == pytest.approx(0.8) and pun["ssim_seed_std"] == pytest.approx(0)
    assert set(stats) == {"pun", "dense"}
