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


def test_identical_seeds_add_nothing_and_one_seed_is_the_slice_bootstrap() -> None:
    # seeds of a slice agree perfectly: 3 seeds carry no more information than 1
    rng = np.random.default_rng(1)
    per_slice = rng.normal(0.0, 1.0, size=(50, 1))
    one = bootstrap_ci(per_slice, seed=0)
    three = bootstrap_ci(np.repeat(per_slice, 3, axis=1), seed=0)
    assert three["ci_low"] == pytest.approx(one["ci_low"])
    assert three["ci_high"] == pytest.approx(one["ci_high"])
    assert one == bootstrap_ci(per_slice, seed=0, resample_seeds=False)
    assert one == bootstrap_ci(per_slice[:, 0], seed=0)


def test_seed_variation_widens_the_interval() -> None:
    # the same slices under 4 seeds whose networks differ by a constant offset each
    rng = np.random.default_rng(2)
    d = rng.normal(0.0, 0.3, size=(30, 1)) + np.array([[-1.0, -0.5, 0.5, 1.0]])
    slices_only = bootstrap_ci(d, seed=0, resample_seeds=False)
    both = bootstrap_ci(d, seed=0)
    assert both["mean"] == slices_only["mean"]
    assert both["ci_high"] - both["ci_low"] > 5 * (slices_only["ci_high"] - slices_only["ci_low"])
    # differences constant over slices: only the seed draw varies; with two seeds the replicate
    # means are 1.0 (p = 1/4), 1.05 (1/2) or 1.1 (1/4)
    ci = bootstrap_ci(np.tile([1.0, 1.1], (5, 1)), n_boot=400, seed=1)
    assert ci == {"mean": pytest.approx(1.05), "ci_low": 1.0, "ci_high": 1.1}


def test_suite_statistics_and_summary_line() -> None:
    stats = suite_statistics(_records(), ["pun"], n_boot=200)
    entry = stats["pun"]["id"]
    assert entry["n_slices"] == 3 and entry["n_seeds"] == 2
    assert entry["delta_psnr"]["mean"] == pytest.approx(1.05)
    # seed 0 gains 1.0 dB on every slice, seed 1 1.1 dB: the seeds are resampled, so the
    # interval spans the two (before the hierarchical bootstrap it was [1.05, 1.05])
    assert entry["delta_psnr"]["ci_low"] == pytest.approx(1.0)
    assert entry["delta_psnr"]["ci_high"] == pytest.approx(1.1)
    spread = entry["delta_psnr_seeds"]
    assert spread["values"] == pytest.approx([1.0, 1.1]) and spread["seeds"] == [0, 1]
    assert spread["std"] == pytest.approx(0.1 / math.sqrt(2))
    assert (spread["n"], spread["min"], spread["max"]) == (2, 1.0, pytest.approx(1.1))
    assert entry["slices"] == ["sl0", "sl1", "sl2"] and entry["seeds"] == [0, 1]
    assert entry["delta_ssim"]["mean"] == pytest.approx(-0.1)
    assert stats == suite_statistics(_records(), ["pun"], n_boot=200)
    line = summary_line(stats, "pun", n_boot=200)
    assert line["ood_suites"] == ["acc8"]
    assert line["id_delta_psnr"]["mean"] == pytest.approx(1.05)
    assert line["ood_delta_psnr"]["mean"] == pytest.approx(1.05)
    assert line["ood_delta_ssim"]["ci_high"] == pytest.approx(-0.1)
    assert line["id_delta_psnr_seeds"] == entry["delta_psnr_seeds"]
    assert line["ood_delta_psnr_seeds"]["values"] == pytest.approx([1.0, 1.1])
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


def test_summary_leaves_the_replicates_of_the_training_distribution_out_of_ood() -> None:
    records = []
    for suite, gain in (("id", 0.5), ("a", 1.0), ("b", 3.0), ("again", 0.5)):
        for i in range(4):
            records.append(_rec("dense", suite, f"s{i}", 30.0))
            records.append(_rec("pun", suite, f"s{i}", 30.0 + gain))
    stats = suite_statistics(records, ["pun"], n_boot=200)
    line = summary_line(stats, "pun", n_boot=200, replicates={"again"})
    assert line["ood_delta_psnr"]["mean"] == pytest.approx(2.0)  # (1 + 3) / 2, not (1+3+0.5)/3
    assert line["ood_suites"] == ["a", "b"]
    assert summary_line(stats, "pun", n_boot=200)["ood_delta_psnr"]["mean"] == pytest.approx(1.5)


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


def _ood_records(reverse_b: bool = False) -> list[SliceRecord]:
    """Two seeds; suites 'a' and 'b' re-simulate the same slices with opposite gains per slice and
    per seed (their mean is 1.0 dB on every slice and seed); 'view' has slices of its own."""
    gains = np.random.default_rng(3).normal(0.0, 1.0, size=(12, 2))
    records = []
    for suite, sign in (("id", 1.0), ("a", 1.0), ("b", -1.0)):
        order = range(11, -1, -1) if suite == "b" and reverse_b else range(12)
        for i in order:
            for s in (0, 1):
                records.append(_rec(f"dense#s{s}", suite, f"axial:{i:03d}", 30.0))
                records.append(
                    _rec(f"pun#s{s}", suite, f"axial:{i:03d}", 31.0 + sign * gains[i, s])
                )
    for i in range(5):
        for s in (0, 1):
            records.append(_rec(f"dense#s{s}", "view", f"coronal:{i:03d}", 30.0))
            records.append(_rec(f"pun#s{s}", "view", f"coronal:{i:03d}", 30.0 + i + s))
    return records


def test_ood_mean_resamples_the_same_slices_and_seeds_in_every_suite() -> None:
    # 'a' and 'b' cancel slice by slice and seed by seed: drawn jointly, every replicate of their
    # mean is exactly the point estimate; drawn independently it would not be
    for reverse in (False, True):  # rows are matched by slice name, not by position
        records = [r for r in _ood_records(reverse) if r.suite != "view"]
        line = summary_line(suite_statistics(records, ["pun"], n_boot=300), "pun", n_boot=300)
        ood = line["ood_delta_psnr"]
        assert ood["mean"] == pytest.approx(1.0)
        assert ood["ci_low"] == pytest.approx(1.0) and ood["ci_high"] == pytest.approx(1.0)
        assert line["ood_delta_psnr_seeds"]["values"] == pytest.approx([1.0, 1.0])
    # a suite with other slices gets its own slice draw (in the same replicates)
    line = summary_line(suite_statistics(_ood_records(), ["pun"], n_boot=300), "pun", n_boot=300)
    assert line["ood_suites"] == ["a", "b", "view"]
    ood = line["ood_delta_psnr"]
    assert ood["mean"] == pytest.approx((1.0 + 1.0 + 2.5) / 3)
    assert ood["ci_high"] - ood["ci_low"] > 0.1
    # the per-seed OOD means: seed 0 gains (1 + 1 + 2) / 3, seed 1 (1 + 1 + 3) / 3
    assert line["ood_delta_psnr_seeds"]["values"] == pytest.approx([4 / 3, 5 / 3])


def test_ood_mean_needs_the_same_seeds_in_every_suite() -> None:
    records = [r for r in _ood_records() if not (r.suite == "view" and r.method.endswith("#s1"))]
    stats = suite_statistics(records, ["pun"], n_boot=50)
    with pytest.raises(InputError, match="same seeds"):
        summary_line(stats, "pun", n_boot=50)


# -- coverage on simulated studies ----------------------------------------------------------------
# A study: S seeds x N slices of paired differences d[i, s] = TRUE + seed[s] + slice[i] + noise,
# with a seed effect (training runs differ), a slice effect shared by every seed (the same image)
# and independent noise. An interval covers when it contains TRUE; nominal coverage is 95%.

TRUE = 0.5


def _coverage(
    n_seeds: int,
    seed_sd: float,
    slice_sd: float,
    noise_sd: float,
    interval,
    n_slices: int = 20,
    studies: int = 400,
) -> float:
    rng = np.random.default_rng(12345)
    hits = 0
    for k in range(studies):
        d = (
            TRUE
            + rng.normal(0.0, seed_sd, size=(1, n_seeds))
            + rng.normal(0.0, slice_sd, size=(n_slices, 1))
            + rng.normal(0.0, noise_sd, size=(n_slices, n_seeds))
        )
        low, high = interval(d, k)
        hits += low <= TRUE <= high
    return hits / studies


def _hierarchical(d: np.ndarray, k: int) -> tuple[float, float]:
    ci = bootstrap_ci(d, n_boot=200, seed=k)
    return ci["ci_low"], ci["ci_high"]


def _slices_only(d: np.ndarray, k: int) -> tuple[float, float]:
    ci = bootstrap_ci(d, n_boot=200, seed=k, resample_seeds=False)
    return ci["ci_low"], ci["ci_high"]


def _nested(d: np.ndarray, k: int) -> tuple[float, float]:
    """Slices drawn afresh for every drawn seed: the bootstrap this module does not use."""
    rng = np.random.default_rng(k)
    n, s = d.shape
    seeds = rng.integers(0, s, size=(200, s, 1))
    rows = rng.integers(0, n, size=(200, s, n))
    low, high = np.quantile(d[rows, seeds].mean(axis=(1, 2)), [0.025, 0.975])
    return float(low), float(high)


def test_hierarchical_bootstrap_has_nominal_coverage() -> None:
    # 3 seeds x 20 slices, seed effects of the size the BatchNorm-free networks show (sd 0.15 dB
    # between seeds' mean differences) beside slice effects and noise of 0.5 dB: 0.91 here
    # (0.93 over 1000 studies, 0.94 with 1000 replicates)
    assert 0.88 <= _coverage(3, 0.15, 0.5, 0.5, _hierarchical) <= 0.99
    # seed effects that dominate, with 20 seeds: 0.93 here (10 seeds: 0.89)
    assert 0.88 <= _coverage(20, 1.0, 0.3, 0.5, _hierarchical) <= 0.99


def test_slice_bootstrap_under_covers_when_seeds_differ() -> None:
    # the interval of earlier versions keeps the trained seeds fixed: 0.82 with small seed
    # effects and 0.41 with large ones, where the hierarchical bootstrap has 0.91 and 0.93
    assert _coverage(3, 0.15, 0.5, 0.5, _slices_only) < 0.86
    assert _coverage(20, 1.0, 0.3, 0.5, _slices_only) < 0.5
    # with 3 seeds no percentile bootstrap reaches 95% when seeds dominate: its replicates cannot
    # leave the range of the 3 per-seed means, which holds TRUE with probability 1 - 2 / 2**3;
    # 0.78 here (0.76 over 1000 studies; 5 seeds: 0.84), the slice bootstrap 0.23
    hierarchical = _coverage(3, 1.0, 0.3, 0.5, _hierarchical)
    assert 0.65 <= hierarchical <= 0.80
    assert _coverage(3, 1.0, 0.3, 0.5, _slices_only) < 0.3 < hierarchical


def test_slices_are_drawn_once_per_replicate_not_per_seed() -> None:
    # every seed is tested on the same slices: a slice's gain is shared by all seeds, and drawing
    # slices afresh per seed (nested) averages it away: 0.92 against 0.70 here
    assert _coverage(3, 0.0, 1.0, 0.3, _hierarchical) >= 0.88
    assert _coverage(3, 0.0, 1.0, 0.3, _nested) < 0.8


# -- the spread and the one-subject statement in the report ---------------------------------------


def test_report_shows_the_seed_spread_beside_each_interval() -> None:
    from punmri.config import load_config
    from punmri.report.console import summary_text
    from punmri.report.markdown import fmt_spread, one_subject_note, summary_table

    stats = suite_statistics(_records(), ["pun"], n_boot=200)
    line = summary_line(stats, "pun", n_boot=200)
    metrics = {
        "methods": {"dense": {"suites": {}}, "pun": {"suites": {}}},
        "summary": {"pun": line},
    }
    row = summary_table(metrics).splitlines()[2]
    assert row.startswith("| pun | +1.05 [+1.00, +1.10] | +1.00..+1.10 (sd 0.07) | +1.05 ")
    assert row.endswith("| -0.1000 [-0.1000, -0.1000] | -0.1000..-0.1000 (sd 0.0000) |")
    assert "+1.05 [+1.00, +1.10]  +1.00..+1.10" in summary_text(metrics)
    single = summary_line(suite_statistics(_records((0,), (0,)), ["pun"], n_boot=9), "pun")
    assert fmt_spread(single["id_delta_psnr_seeds"]) == "-"  # one seed: no spread
    assert fmt_spread({"n": 2, "min": None, "max": 1.0, "std": None}) == "-"  # nan read back
    assert "one subject" in one_subject_note(load_config(None, []))
    assert "`colin27`" in one_subject_note(load_config(None, []))
    assert one_subject_note(load_config(None, ["data.source=fastmri", "data.root=x"])) == ""


def test_metrics_flag_the_replicate_suites_and_every_ood_mean_leaves_them_out(tmp_path) -> None:
    from punmri.config import load_config, to_dict
    from punmri.evaluate.suites import Suite
    from punmri.evaluate.summary import replicate_suites, summarize
    from punmri.evaluate.tables import write_slice_csv
    from punmri.report.console import summary_text
    from punmri.report.regimes import RegimeRun, harder_suites

    cfg = load_config(None, ["physics.snr_db=20"])
    gains = {"id": 0.5, "snr30": 1.0, "acc8": 3.0, "snr20": 0.5}
    zero_filled = {"id": 20.0, "snr30": 20.5, "acc8": 18.0, "snr20": 18.0}
    records = []
    for suite, gain in gains.items():
        for i in range(4):
            records.append(_rec("zero-filled", suite, f"s{i}", zero_filled[suite]))
            records.append(_rec("dense", suite, f"s{i}", 30.0))
            records.append(_rec("pun", suite, f"s{i}", 30.0 + gain))
    suites = [Suite(n, [], cfg.physics, "x", n in ("id", "snr20")) for n in gains]
    metrics = summarize(records, [], cfg, suites)
    assert metrics["suites"]["snr20"]["in_distribution"] is True
    assert metrics["suites"]["acc8"]["in_distribution"] is False
    assert replicate_suites(metrics) == {"snr20"}
    assert metrics["summary"]["pun"]["ood_delta_psnr"]["mean"] == pytest.approx(2.0)
    assert metrics["summary"]["pun"]["ood_suites"] == ["snr30", "acc8"]
    assert "OOD = mean over 2 shifted suites (snr20: the training distribution, left out)" in (
        summary_text(metrics)
    )
    assert harder_suites(metrics) == {"acc8"}  # snr20 has a lower zero-filled PSNR but no shift
    # the results document reads the run without the replicate's slices
    (tmp_path / "eval").mkdir()
    write_slice_csv(records, tmp_path / "eval" / "slices.csv")
    metrics["config"] = {**to_dict(cfg), "methods": ["dense", "pun"]}
    run = RegimeRun.load(tmp_path, metrics)
    assert {r.suite for r in run.records} == {"id", "snr30", "acc8"}
